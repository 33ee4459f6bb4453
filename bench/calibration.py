"""Benchmark: how often split-aware scoring calls a split where none is, and finds the ones there.

    .venv/bin/python bench/calibration.py [--null 200] [--planted 200] [--seed 1]

Simulates cohorts whose truth is planted (SCORING.md section 10) and sends them through the
product's own path: a long-form vote file, `import_votes`, `scores_compute` and the labels the
`scores` command prints. Each cohort is a top-level culture; cohorts go in studies of
`--per-study` cultures each (GRASP compares every pair of a study's raters, so one study of
all 400 cohorts, 9,000 raters, would measure GRASP rather than the labels).
- Null cohorts, no rater heterogeneity: coin-flip items, items of varied difficulty, and
  uniform answers; half of them with raters answering a random subset of the items (60-90%);
  16 to 30 raters, 20 to 40 items.
- Planted cohorts: two consistent factions, the minority 0.2 to 0.5 of 16 to 30 raters, each
  faction answering its side with probability 0.7 to 0.95 (ties among the rest).
Prints one JSON object: `false_split_rate` (null cohorts labelled split), `power` by minority
share and consistency band (planted cohorts labelled split), `faction_size_error` (mean
absolute difference, in raters, between the fitted and the planted minority where two
factions were found), `seconds` (import and scoring), and the machine.
Targets: false split rate at most 0.05; power at least 0.95 for minority >= 0.25 and
consistency >= 0.8; size error below one rater.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _support

SLUG = "bench-calibration"
NULL_KINDS = ("coin", "varied", "uniform")


def _setup() -> None:
    _support.environment_defaults(database="polyphony_bench_calibration", broker_db=12)
    _support.database_create(fresh=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _cohorts(null: int, planted: int, seed: int):
    """Return {path: answers}, and what was planted per path."""
    import numpy as np

    from ratings.results.statistics import simulate

    rng = np.random.default_rng(seed)
    cohorts, truth = {}, {}
    for index in range(null):
        n_raters, n_items = int(rng.integers(16, 31)), int(rng.integers(20, 41))
        kind = NULL_KINDS[index % len(NULL_KINDS)]
        answered = 1.0 if index % 2 == 0 else float(rng.uniform(0.6, 0.9))
        path = f"null{index:03d}"
        cohorts[path] = simulate.null_cohort(
            rng, n_raters=n_raters, n_items=n_items, kind=kind, answered_share=answered
        ).answers
        truth[path] = {"kind": "null", "null": kind, "subset": answered < 1}
    for index in range(planted):
        n_raters, n_items = int(rng.integers(16, 31)), int(rng.integers(20, 41))
        minority = float(rng.uniform(0.2, 0.5))
        consistency = float(rng.uniform(0.7, 0.95))
        membership = simulate.planted_membership(rng, n_raters, (1 - minority, minority))
        path = f"planted{index:03d}"
        cohorts[path] = simulate.faction_answers(
            rng,
            membership,
            n_items=n_items,
            directions=(1, -1),
            consistency=consistency,
            tie_share=0.3,
        )
        truth[path] = {
            "kind": "planted",
            "minority_share": minority,
            "minority": int(min(np.bincount(membership, minlength=2))),
            "consistency": consistency,
        }
    return cohorts, truth


def _band(value: float, edges: tuple[float, ...]) -> str:
    for low, high in itertools.pairwise(edges):
        if low <= value < high:
            return f"{low:.2f}-{high:.2f}"
    return f">={edges[-1]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--null", type=int, default=200)
    parser.add_argument("--planted", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--per-study", type=int, default=20)
    args = parser.parse_args()
    _setup()
    from ratings.exports.imports import votes_import
    from ratings.models import Study
    from ratings.results.selectors import score_rows
    from ratings.results.services import scores_compute
    from ratings.results.statistics import simulate

    cohorts, truth = _cohorts(args.null, args.planted, args.seed)
    paths = list(cohorts)
    rows = {}
    import_s = score_s = 0.0
    votes = 0
    for first in range(0, len(paths), args.per_study):
        chunk = {path: cohorts[path] for path in paths[first : first + args.per_study]}
        slug = f"{SLUG}-{first // args.per_study:03d}"
        started = time.monotonic()
        votes_import(study_slug=slug, lines=simulate.long_form_lines(chunk), source_name=slug)
        imported = time.monotonic()
        study = Study.objects.get(slug=slug)
        Study.objects.filter(pk=study.pk).update(
            score_permutations=args.permutations, score_bootstrap=1000
        )
        study.refresh_from_db()
        run = scores_compute(study=study, seed=args.seed)
        import_s += imported - started
        score_s += time.monotonic() - imported
        votes += run.votes_covered
        rows.update(
            (row.cohort, row)
            for row in score_rows(run=run)
            if row.criterion == "representation" and row.cohort in chunk
        )

    null_paths = [path for path, what in truth.items() if what["kind"] == "null"]
    false_splits = [path for path in null_paths if rows[path].label == "split"]
    by_kind = {
        kind: sum(1 for p in false_splits if truth[p]["null"] == kind) for kind in NULL_KINDS
    }
    power: dict[str, dict[str, list[int]]] = {}
    errors = []
    strong = [0, 0]
    for path, what in truth.items():
        if what["kind"] != "planted":
            continue
        row = rows[path]
        share = _band(what["minority_share"], (0.2, 0.25, 0.35, 0.5))
        consistency = _band(what["consistency"], (0.7, 0.8, 0.9, 0.95))
        cell = power.setdefault(share, {}).setdefault(consistency, [0, 0])
        cell[0] += row.label == "split"
        cell[1] += 1
        if what["minority_share"] >= 0.25 and what["consistency"] >= 0.8:
            strong[0] += row.label == "split"
            strong[1] += 1
        if len(row.factions) == 2:
            errors.append(abs(row.factions[1].n_raters - what["minority"]))
    print(
        json.dumps(
            {
                "null_cohorts": len(null_paths),
                "planted_cohorts": args.planted,
                "false_split_rate": len(false_splits) / max(1, len(null_paths)),
                "false_splits_by_null_kind": by_kind,
                "power": {
                    share: {band: round(hit / n, 3) for band, (hit, n) in bands.items()}
                    for share, bands in sorted(power.items())
                },
                "power_minority_ge_0.25_consistency_ge_0.8": round(
                    strong[0] / max(1, strong[1]), 3
                ),
                "planted_with_two_factions": len(errors),
                "faction_size_error": round(sum(errors) / max(1, len(errors)), 3),
                "votes": votes,
                "studies": -(-len(paths) // args.per_study),
                "import_s": round(import_s, 1),
                "score_s": round(score_s, 1),
                "seconds": round(import_s + score_s, 1),
                "machine": _support.machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
