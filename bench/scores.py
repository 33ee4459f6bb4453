"""Benchmark: every split-aware score of a million-vote study, and its exports against COPY.

    .venv/bin/python bench/scores.py [--votes 1000000] [--permutations 1000] [--bootstrap 1000]

Loads a synthetic study into its own PostgreSQL database (made afresh and migrated; COPY, not
ORM inserts): 10 cultures x 5 sub-cultures (50 leaf cohorts, 60 with the cultures), 40 raters
per sub-culture, 4 criteria, 2 variants, each pair rated by 5 raters of its sub-culture, with a
few flagged raters and repeat attention checks. Each sub-culture and criterion is planted as a
split (half the raters lean a, half b), a consensus, or noise.

Then it times, on the same data:
- `score_s`: `scores_compute` (every cohort at every level x criterion x variant pair, with
  the study's permutation tests and rater bootstraps, stored), and `score_load_s`, its read
  of the votes alone;
- `csv_export_s`, `parquet_export_s`: `ratings.exports.export_stream(table="votes_long")`
  drained, each in a child process whose peak RSS is `export_peak_rss_mb`;
- `copy_s`: `COPY (the same long-form query) TO STDOUT` drained by psycopg, the floor.

Prints one JSON object. Uses DATABASE_URL (default .../polyphony_bench_scores).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _support

SLUG = "bench-scores"
CULTURES = 10
SUB_CULTURES = 5
RATERS_PER_LEAF = 40
RATERS_PER_PAIR = 5
CRITERIA = ("alignment", "representation", "stereotype", "offensiveness")
# Per sub-culture and criterion: a split, a consensus, or noise, in these proportions.
SCENARIOS = (("split", 0.2), ("consensus", 0.5), ("noise", 0.3))
FLAGGED_SHARE = 0.02
REPEAT_SHARE = 0.005
SKIP_SHARE = 0.03
POOL = 600  # pair k shows images k // POOL and k % POOL of two pools: distinct pairs


def _setup() -> None:
    _support.environment_defaults(database="polyphony_bench_scores", broker_db=12)
    import django

    django.setup()


def _copy_in(table: str, columns: list[str], data) -> None:
    """COPY a pyarrow table into `table` as CSV, without foreign-key triggers per row."""
    import pyarrow.csv as pa_csv
    from django.db import connection

    buffer = io.BytesIO()
    pa_csv.write_csv(data, buffer, write_options=pa_csv.WriteOptions(include_header=False))
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        # Rows consistent by construction: no deferred foreign-key check per row (a queue of
        # millions of trigger events). Needs a superuser, as the default URL is.
        cursor.execute("SET session_replication_role = replica")
        with cursor.copy(
            f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)"
        ) as copy:
            view = buffer.getbuffer()
            for start in range(0, len(view), 1 << 22):
                copy.write(view[start : start + (1 << 22)])
        cursor.execute("SET session_replication_role = DEFAULT")
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )


def load(*, votes: int, seed: int) -> dict:
    """Make the study and COPY its pairs, votes and answers; return what was loaded."""
    import numpy as np
    import pyarrow as pa
    from django.contrib.auth.models import User
    from django.utils import timezone

    from generation.models import Image, ModelVariant, Prompt, PromptBatch
    from ratings.models import Answer, Cohort, Pair, Participation, Rater, Study, Vote
    from ratings.studies import cohort_ensure, study_create

    rng = np.random.default_rng(seed)
    leaves = [f"culture{c:02d}:sub{s}" for c in range(CULTURES) for s in range(SUB_CULTURES)]
    for path in leaves:
        cohort_ensure(path=path)
    study = study_create(name="Bench scores", slug=SLUG, cohort_paths=leaves)
    Study.objects.filter(pk=study.pk).update(score_permutations=1000, score_bootstrap=1000)
    criteria = {c.key: c.pk for c in study.criteria.all()}
    base = ModelVariant.objects.create(name="bench-base", role="base", base_checkpoint="bench")
    tuned = ModelVariant.objects.create(
        name="bench-lora", role="finetuned", base_checkpoint="bench", lora_path="bench.safetensors"
    )
    batch = PromptBatch.objects.create(study=study, seeds_per_prompt=1)
    leaf_cohorts = [Cohort.objects.get(path=path) for path in leaves]

    # Raters: 40 per sub-culture, a few flagged.
    n_raters = len(leaves) * RATERS_PER_LEAF
    users = User.objects.bulk_create(
        User(username=f"bench-{i}", password="!") for i in range(n_raters)
    )
    raters = Rater.objects.bulk_create(Rater(user=user) for user in users)
    rater_ids = np.array([rater.pk for rater in raters])
    rater_leaf = np.repeat(np.arange(len(leaves)), RATERS_PER_LEAF)
    Rater.cohorts.through.objects.bulk_create(
        Rater.cohorts.through(rater_id=rater.pk, cohort_id=leaf_cohorts[rater_leaf[i]].pk)
        for i, rater in enumerate(raters)
    )
    flagged = rng.random(n_raters) < FLAGGED_SHARE
    now = timezone.now()
    Participation.objects.bulk_create(
        Participation(study=study, rater=rater, consented_at=now, flagged=bool(flagged[i]))
        for i, rater in enumerate(raters)
    )

    # Pairs: each rated by 5 raters of its sub-culture; prompts shared by 20 pairs.
    n_regular = int(votes * (1 - REPEAT_SHARE))
    n_pairs = n_regular // RATERS_PER_PAIR
    pair_leaf = np.arange(n_pairs) * len(leaves) // n_pairs
    n_prompts = (n_pairs + 19) // 20
    prompts = Prompt.objects.bulk_create(
        Prompt(
            batch=batch,
            text=f"bench prompt {i}",
            cohort=leaf_cohorts[pair_leaf[min(i * 20, n_pairs - 1)]],
            category="food",
        )
        for i in range(n_prompts)
    )
    pool_prompt = prompts[0]
    images = {
        variant.pk: [
            image.pk
            for image in Image.objects.bulk_create(
                Image(
                    prompt=pool_prompt,
                    variant=variant,
                    seed=i,
                    status=Image.Status.DONE,
                    file=f"images/{variant.pk}-{i}.png",
                    fingerprint=f"{variant.pk:02d}{i:062d}",
                    queued_at=now,
                )
                for i in range(POOL)
            )
        ]
        for variant in (base, tuned)
    }
    first_pair = (Pair.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    pair_ids = first_pair + np.arange(n_pairs)
    prompt_ids = np.array([prompt.pk for prompt in prompts])
    _copy_in(
        Pair._meta.db_table,
        [
            "id",
            "study_id",
            "prompt_id",
            "seed",
            "image_a_id",
            "image_b_id",
            "variant_a_id",
            "variant_b_id",
            "is_attention_check",
            "external_id",
            "created_at",
        ],
        pa.table(
            {
                "id": pair_ids,
                "study_id": np.full(n_pairs, study.pk),
                "prompt_id": prompt_ids[np.arange(n_pairs) // 20],
                "seed": np.arange(n_pairs),
                "image_a_id": np.array(images[base.pk])[np.arange(n_pairs) // POOL % POOL],
                "image_b_id": np.array(images[tuned.pk])[np.arange(n_pairs) % POOL],
                "variant_a_id": np.full(n_pairs, base.pk),
                "variant_b_id": np.full(n_pairs, tuned.pk),
                "is_attention_check": np.zeros(n_pairs, dtype=bool),
                "external_id": pa.array([""] * n_pairs),
                "created_at": pa.array([now] * n_pairs, pa.timestamp("us", tz="UTC")),
            }
        ),
    )

    # Votes: the 5 raters of each pair, drawn among its sub-culture's 40.
    draws = rng.random((n_pairs, RATERS_PER_LEAF)).argsort(axis=1)[:, :RATERS_PER_PAIR]
    vote_rater = (pair_leaf[:, None] * RATERS_PER_LEAF + draws).ravel()
    vote_pair = np.repeat(np.arange(n_pairs), RATERS_PER_PAIR)
    # Repeat checks: a second vote on a pair a rater already voted on.
    repeats = rng.choice(len(vote_rater), size=votes - len(vote_rater), replace=False)
    vote_rater = np.r_[vote_rater, vote_rater[repeats]]
    vote_pair = np.r_[vote_pair, vote_pair[repeats]]
    is_repeat = np.r_[np.zeros(n_regular, dtype=bool), np.ones(len(repeats), dtype=bool)]
    n_votes = len(vote_rater)
    first_vote = (Vote.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    vote_ids = first_vote + np.arange(n_votes)
    leaf_paths = np.array([json.dumps([path]) for path in leaves], dtype=object)
    created = np.datetime64(now.replace(tzinfo=None), "us") - rng.integers(
        0, 30 * 86400 * 10**6, n_votes
    ).astype("timedelta64[us]")
    _copy_in(
        Vote._meta.db_table,
        [
            "id",
            "study_id",
            "pair_id",
            "rater_id",
            "shown_left",
            "source",
            "cohort_paths",
            "time_on_task_ms",
            "comment",
            "kind",
            "check_passed",
            "too_fast",
            "created_at",
        ],
        pa.table(
            {
                "id": vote_ids,
                "study_id": np.full(n_votes, study.pk),
                "pair_id": pair_ids[vote_pair],
                "rater_id": rater_ids[vote_rater],
                "shown_left": np.where(rng.random(n_votes) < 0.5, "a", "b"),
                "source": np.full(n_votes, "browser"),
                "cohort_paths": pa.array(leaf_paths[rater_leaf[vote_rater]], pa.string()),
                "time_on_task_ms": rng.integers(2000, 60000, n_votes),
                "comment": pa.array([""] * n_votes),
                "kind": np.where(is_repeat, "repeat", "pair"),
                "check_passed": pa.array(np.where(is_repeat, True, None), pa.bool_()),
                "too_fast": np.zeros(n_votes, dtype=bool),
                "created_at": pa.array(created, pa.timestamp("us")).cast(
                    pa.timestamp("us", tz="UTC")
                ),
            }
        ),
    )

    # Answers: per sub-culture and criterion, a planted scenario.
    n_scenarios = len(SCENARIOS)
    kinds = rng.choice(
        n_scenarios, size=(len(leaves), len(CRITERIA)), p=[share for _, share in SCENARIOS]
    )
    rater_lean = np.where(np.arange(n_raters) % 2 == 0, 1, -1)  # for the split scenario
    choices = np.array(["a", "tie", "b", "skip"])
    columns = {"id": [], "vote_id": [], "criterion_id": [], "choice": []}
    first_answer = (Answer.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    for index, key in enumerate(CRITERIA):
        kind = kinds[rater_leaf[vote_rater], index]
        lean = rater_lean[vote_rater]
        # Probabilities of a, tie, b per vote.
        p_b = np.select([kind == 0, kind == 1], [np.where(lean > 0, 0.85, 0.05), 0.8], 1 / 3)
        p_a = np.select([kind == 0, kind == 1], [np.where(lean > 0, 0.05, 0.85), 0.1], 1 / 3)
        u = rng.random(n_votes)
        code = np.where(u < p_a, 0, np.where(u < 1 - p_b, 1, 2))
        code[rng.random(n_votes) < SKIP_SHARE] = 3
        columns["id"].append(first_answer + index * n_votes + np.arange(n_votes))
        columns["vote_id"].append(vote_ids)
        columns["criterion_id"].append(np.full(n_votes, criteria[key]))
        columns["choice"].append(choices[code])
    order = np.argsort(np.concatenate(columns["vote_id"]), kind="stable")
    _copy_in(
        Answer._meta.db_table,
        ["id", "vote_id", "criterion_id", "choice"],
        pa.table({name: np.concatenate(parts)[order] for name, parts in columns.items()}),
    )
    planted = sorted(
        (leaves[leaf], key)
        for leaf, index in zip(*np.nonzero(kinds == 0), strict=True)
        for key in [CRITERIA[index]]
    )
    return {
        "votes": int(n_votes),
        "scored_votes": int((~is_repeat & ~flagged[vote_rater]).sum()),
        "answers": int(n_votes * len(CRITERIA)),
        "pairs": int(n_pairs),
        "raters": int(n_raters),
        "flagged_raters": int(flagged.sum()),
        "cohorts": len(leaves) + CULTURES,
        "planted_splits": planted,
    }


def _analyze() -> None:
    from django.db import connection

    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")


def _peak_rss_mb() -> float:
    """Return this process's peak resident memory in MB (VmHWM: its own address space).

    Not ru_maxrss: Linux carries a forked parent's peak across exec into the child's.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _export_child(fmt: str) -> None:
    """Drain one export in this process and print its time, size and rows (run by the parent)."""
    _setup()
    from ratings.exports.tables import export_stream
    from ratings.models import Study

    study = Study.objects.get(slug=SLUG)
    baseline = _peak_rss_mb()
    started = time.perf_counter()
    size = lines = 0
    for chunk in export_stream(study=study, table="votes_long", fmt=fmt):
        size += len(chunk)
        lines += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "bytes": size,
                "lines": lines,
                "baseline_rss_mb": baseline,
                "peak_rss_mb": _peak_rss_mb(),
            }
        )
    )


def _export(fmt: str) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--export-child", fmt],
        stdout=subprocess.PIPE,
        env=os.environ,
        check=True,
    ).stdout
    return json.loads(output)


def _copy_floor() -> tuple[float, int]:
    """Drain COPY of the export's own long-form query; return (seconds, rows)."""
    from django.db import connection

    from ratings.exports.votes import votes_long_query
    from ratings.models import Study

    query = votes_long_query(study=Study.objects.get(slug=SLUG))
    sql = f"COPY ({query.select(typed=False)}) TO STDOUT WITH (FORMAT csv)"
    connection.ensure_connection()
    started = time.perf_counter()
    rows = 0
    with connection.connection.cursor() as cursor, cursor.copy(sql, query.params) as copy:
        while copy.read():
            rows += 1
    return time.perf_counter() - started, rows


def _scores_side_by_side(study, run, score_s, phases, rows, load_s) -> dict:
    """Time the pure statistics of the same votes with and without factions, in one process."""
    from ratings.models import Faction
    from ratings.results.loading import study_votes, votes_load
    from ratings.results.statistics.study import study_scores

    criteria = list(study.criteria.all())
    votes, _ = study_votes(
        study=study,
        loaded=votes_load(study=study, criteria=criteria, include_flagged=False),
        criteria=criteria,
    )
    seconds = {}
    for name, max_p in (("without_factions", None), ("with_factions", study.split_max_p)):
        started = time.perf_counter()
        result = study_scores(
            votes,
            permutations=study.score_permutations,
            bootstrap=study.score_bootstrap,
            seed=0,
            gai_min_raters=study.min_cohort_size,
            factions_max_p=max_p,
            factions_min_raters=study.min_cohort_size,
        )
        seconds[name] = round(time.perf_counter() - started, 2)
    _, _, _, read_s, statistics_s, store_s = phases
    return {
        "score_s": round(score_s, 2),
        "score_phases_s": {
            "read_votes": round(read_s, 2),
            "statistics": round(statistics_s, 2),
            "store": round(store_s, 2),
        },
        "statistics_side_by_side_s": seconds,
        "factions_share_of_statistics": round(
            1 - seconds["without_factions"] / seconds["with_factions"], 3
        ),
        "cells": len(rows),
        "cells_with_factions": len(result.factions),
        "stored_cells_with_factions": Faction.objects.filter(score__run=run, position=0).count(),
        "load_s": round(load_s, 1),
        "machine": _support.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scores-only",
        action="store_true",
        help="skip the exports; time the statistics with and without factions side by side",
    )
    parser.add_argument("--export-child", choices=("csv", "parquet"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        _export_child(args.export_child)
        return

    _support.environment_defaults(database="polyphony_bench_scores", broker_db=12)
    _support.database_create(fresh=True)
    _setup()
    from collections import Counter

    from django.core.management import call_command

    from ratings.models import Faction, FactionMember, Study
    from ratings.results.loading import votes_load
    from ratings.results.selectors import score_rows
    from ratings.results.services import scores_compute

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    loaded = load(votes=args.votes, seed=args.seed)
    _analyze()
    load_s = time.perf_counter() - started

    study = Study.objects.get(slug=SLUG)
    Study.objects.filter(pk=study.pk).update(
        score_permutations=args.permutations, score_bootstrap=args.bootstrap
    )
    study.refresh_from_db()
    criteria = list(study.criteria.all())
    started = time.perf_counter()
    votes_load(study=study, criteria=criteria, include_flagged=False)
    score_load_s = time.perf_counter() - started
    # scores_compute logs how long it read, computed and stored: keep those numbers.
    phases: list[tuple] = []

    class _Phases(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.msg.startswith("Scored study"):
                phases.append(record.args)

    logging.getLogger("ratings.results.services").addHandler(_Phases())
    started = time.perf_counter()
    run = scores_compute(study=study)
    score_s = time.perf_counter() - started
    _, _, _, run_load_s, run_statistics_s, run_store_s = phases[-1]
    rows = score_rows(run=run)
    labels = Counter((row.depth, row.label) for row in rows)
    planted = {tuple(cell) for cell in loaded.pop("planted_splits")}
    found = {(row.cohort, row.criterion) for row in rows if row.depth == 2 and row.label == "split"}

    if args.scores_only:
        print(json.dumps(_scores_side_by_side(study, run, score_s, phases[-1], rows, load_s)))
        return
    csv = _export("csv")
    parquet = _export("parquet")
    copy_s, copy_rows = _copy_floor()
    export_rows = csv.pop("lines") - 1  # less the header
    parquet.pop("lines")  # newlines mean nothing in Parquet
    result = {
        "score_s": round(score_s, 2),
        "score_phases_s": {
            "read_votes": round(run_load_s, 2),
            "statistics": round(run_statistics_s, 2),
            "store": round(run_store_s, 2),
        },
        "score_load_alone_s": round(score_load_s, 2),
        "csv_export_s": round(csv["seconds"], 2),
        "parquet_export_s": round(parquet["seconds"], 2),
        "export_peak_rss_mb": round(max(csv["peak_rss_mb"], parquet["peak_rss_mb"]), 1),
        "copy_s": round(copy_s, 2),
        "csv_rows_per_s": round(export_rows / csv["seconds"]),
        "copy_rows_per_s": round(copy_rows / copy_s),
        "csv_vs_copy": round(copy_s / csv["seconds"], 3),
        "exports": {
            "csv": {key: round(value, 2) for key, value in csv.items()},
            "parquet": {key: round(value, 2) for key, value in parquet.items()},
        },
        "rows": {**loaded, "export_rows": export_rows, "copy_rows": copy_rows},
        "run": {
            "votes_covered": run.votes_covered,
            "cells": len(rows),
            "labels_by_depth": {
                f"depth {depth}": {
                    label: count for (d, label), count in labels.items() if d == depth
                }
                for depth in sorted({depth for depth, _ in labels})
            },
            "cells_with_factions": Faction.objects.filter(score__run=run, position=0).count(),
            "faction_members": FactionMember.objects.filter(faction__score__run=run).count(),
            "planted_splits": len(planted),
            "planted_splits_labelled_split": len(planted & found),
            "sub_culture_splits_not_planted": len(found - planted),
            "permutations": run.permutations,
            "bootstrap": run.bootstrap,
        },
        "load_s": round(load_s, 1),
        "machine": _support.machine(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
