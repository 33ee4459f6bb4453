"""Split-aware scores of a study: load its votes, compute every cell, store and read the rows.

The statistics are pure code in `ratings.scoring`; this module is the Django side. A
computation reads the study's votes in one snapshot (on PostgreSQL as packed binary columns,
not per-row ORM objects), scores every cohort at every level of the hierarchy, criterion and
variant pair, and stores a ScoreRun with its Score, CoherenceScore and StrengthScore rows in one
transaction. Showing scores reads the stored rows; it never recomputes them. New votes mark a
study's scores stale, which schedules one debounced recomputation on the `default` queue.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ratings.cohorts import cohort_path_ancestors
from ratings.models import (
    Answer,
    AssignmentKind,
    CoherenceScore,
    Cohort,
    Criterion,
    Pair,
    Participation,
    Score,
    ScoreRun,
    StrengthScore,
    Study,
    Vote,
)

if TYPE_CHECKING:
    import numpy as np

    from ratings.scoring import StudyScores, StudyVotes, Thresholds

logger = logging.getLogger(__name__)

# The criteria that cross-criterion coherence reads (SCORING.md section 6), by key.
COHERENCE_KEYS = ("stereotype", "offensiveness", "representation")
# The position of each answer in a packed code: a, tie, b, skip.
_CHOICE_CODES = {"a": 0, "tie": 1, "b": 2, "skip": 3}


# Reading: what pages, exports and the command show. Never computes.


def scores_latest(*, study: Study, include_flagged: bool | None = None) -> ScoreRun | None:
    """Return the study's newest finished score run, or None if none has finished.

    `include_flagged` narrows to runs with (True) or without (False) flagged raters' votes.
    """
    runs = ScoreRun.objects.filter(study=study, status=ScoreRun.Status.DONE)
    if include_flagged is not None:
        runs = runs.filter(include_flagged=include_flagged)
    return runs.order_by("-computed_at", "-pk").first()


def study_thresholds(*, study: Study) -> Thresholds:
    """Return the label rules with this study's settings (k and the split thresholds)."""
    from ratings.scoring import Thresholds

    return Thresholds(
        k=study.min_cohort_size,
        split_min_ndfu=study.split_min_ndfu,
        split_max_agreement=study.split_max_agreement,
        split_min_share=study.split_min_share,
        split_max_p=study.split_max_p,
        contested_max_top_share=study.contested_max_top_share,
    )


# The statistics of a row beyond its counts, in the order the command prints them.
STATISTIC_FIELDS = (
    "share_b",
    "share_b_low",
    "share_b_high",
    "share_b_ties_half",
    "share_b_ties_half_low",
    "share_b_ties_half_high",
    "alpha",
    "ndfu",
    "agreement",
    "heterogeneity_p",
    "cohesion_in",
    "cohesion_cross",
    "gai",
    "gai_p",
    "gai_q",
)


@dataclass(frozen=True)
class ScoreRow:
    """One stored cell with its label, derived now from the study's current thresholds."""

    cohort: str
    depth: int
    criterion: str
    variant_a: str
    variant_b: str
    n_raters: int
    n_votes: int
    count_a: int
    count_tie: int
    count_b: int
    count_skip: int
    statistics: dict[str, float | None]
    label: str

    @property
    def insufficient(self) -> bool:
        return self.label == "insufficient"

    def public(self) -> dict[str, Any]:
        """Return the row as shown to researchers: a row below k shows its label only."""
        row: dict[str, Any] = {
            "cohort": self.cohort,
            "criterion": self.criterion,
            "variant_a": self.variant_a,
            "variant_b": self.variant_b,
        }
        if self.insufficient:
            # Nothing that would reveal how few raters or votes the cohort has.
            row["label"] = self.label
            return row
        row.update(
            n_raters=self.n_raters,
            n_votes=self.n_votes,
            counts={
                "a": self.count_a,
                "b": self.count_b,
                "tie": self.count_tie,
                "skip": self.count_skip,
            },
            label=self.label,
        )
        row.update(self.statistics)
        return row


def score_rows(*, run: ScoreRun) -> list[ScoreRow]:
    """Return a run's cells, labelled, ordered by cohort path, criterion and variant pair."""
    from ratings.scoring import score_label

    thresholds = study_thresholds(study=run.study)
    rows = []
    stored = (
        Score.objects.filter(run=run)
        .select_related("cohort", "criterion", "variant_a", "variant_b")
        .order_by("cohort__path", "criterion__position", "criterion__id", "variant_a__name")
    )
    for score in stored:
        rows.append(
            ScoreRow(
                cohort=score.cohort.path,
                depth=score.cohort.depth,
                criterion=score.criterion.key,
                variant_a=score.variant_a.name,
                variant_b=score.variant_b.name,
                n_raters=score.n_raters,
                n_votes=score.n_votes,
                count_a=score.count_a,
                count_tie=score.count_tie,
                count_b=score.count_b,
                count_skip=score.count_skip,
                statistics={name: getattr(score, name) for name in STATISTIC_FIELDS},
                label=score_label(
                    n_raters=score.n_raters,
                    histogram=(score.count_a, score.count_tie, score.count_b),
                    ndfu=score.ndfu,
                    agreement=score.agreement,
                    heterogeneity_p=score.heterogeneity_p,
                    thresholds=thresholds,
                ),
            )
        )
    return rows


def scores_report(*, study: Study, run: ScoreRun) -> dict[str, Any]:
    """Return the `scores` command's JSON object: study, k, and one public row per cell."""
    return {
        "study": study.slug,
        "k": study.min_cohort_size,
        "scores": [row.public() for row in score_rows(run=run)],
    }


# Loading a study's votes as arrays.


@dataclass
class _LoadedVotes:
    """The scored votes of a study, one entry per vote, sorted by vote id."""

    vote_ids: np.ndarray
    rater_ids: np.ndarray
    pair_ids: np.ndarray
    variant_a_ids: np.ndarray
    variant_b_ids: np.ndarray
    label_set: np.ndarray  # index into label_sets
    label_sets: list[tuple[str, ...]]
    codes: np.ndarray  # (votes, criteria): a -1, tie 0, b 1, skip 2, missing 3


# Votes per packed query: each result is a bytea, which PostgreSQL caps at 1 GB; a chunk of
# this many vote ids stays far below that.
_VOTE_ID_CHUNK = 1 << 22
# Answers are packed into one int8 each: vote id << 13 | criterion position << 8 | the first
# byte of the choice ("a", "tie", "b", "skip").
_MAX_CRITERIA = 31
_CHOICE_BYTES = {ord("a"): 0, ord("t"): 1, ord("b"): 2, ord("s"): 3}


def _votes_load_postgresql(
    *, study: Study, criteria: Sequence[Criterion], include_flagged: bool
) -> _LoadedVotes:
    """Read the votes as packed big-endian columns, a few million votes per query.

    Each query returns bytea of fixed-width records (string_agg of int8send ...): a million
    votes cross as a few dozen megabytes that numpy reads without a Python object per value,
    and no query sorts. Votes come grouped by their cohort labels (so each set of labels is
    turned into text once, not once per vote); pairs and flags are small and joined in numpy.
    Runs inside the caller's transaction, whose snapshot all reads share.
    """
    import numpy as np

    if len(criteria) > _MAX_CRITERIA:
        raise ValueError(f"Scores handle at most {_MAX_CRITERIA} criteria per study.")
    votes_table, answers_table = Vote._meta.db_table, Answer._meta.db_table
    criterion_ids = [criterion.pk for criterion in criteria]
    label_index: dict[str, int] = {}
    vote_parts, label_parts, answer_parts = [], [], []
    with connection.cursor() as cursor:
        # Compiling these scans costs more than it saves; the grouping holds every group's
        # bytes in memory at once.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute(
            f"SELECT min(id), max(id) FROM {votes_table} WHERE study_id = %s", [study.pk]
        )
        lowest, highest = cursor.fetchone()
        for low in range(lowest or 0, (highest or -1) + 1, _VOTE_ID_CHUNK):
            params = {
                "study": study.pk,
                "kind": AssignmentKind.PAIR,
                "low": low,
                "high": low + _VOTE_ID_CHUNK - 1,
                "criteria": criterion_ids,
            }
            cursor.execute(
                f"""
                SELECT v.cohort_paths::text,
                    string_agg(int8send(v.id) || int8send(v.rater_id) || int8send(v.pair_id),
                        ''::bytea)
                FROM {votes_table} v
                WHERE v.study_id = %(study)s AND v.kind = %(kind)s
                    AND v.id BETWEEN %(low)s AND %(high)s
                GROUP BY v.cohort_paths
                """,
                params,
            )
            for text, packed in cursor.fetchall():
                vote_parts.append(bytes(packed))
                label = label_index.setdefault(text, len(label_index))
                label_parts.append(np.full(len(packed) // 24, label, dtype=np.int64))
            cursor.execute(
                f"""
                SELECT string_agg(int8send(
                    (a.vote_id << 13)
                    | ((array_position(%(criteria)s::bigint[], a.criterion_id) - 1)::int8 << 8)
                    | ascii(a.choice)), ''::bytea)
                FROM {answers_table} a
                WHERE a.criterion_id = ANY(%(criteria)s::bigint[])
                    AND a.vote_id BETWEEN %(low)s AND %(high)s
                """,
                params,
            )
            (packed,) = cursor.fetchone()
            answer_parts.append(bytes(packed) if packed is not None else b"")
        cursor.execute(
            f"""
            SELECT string_agg(int8send(id) || int8send(variant_a_id) || int8send(variant_b_id),
                ''::bytea)
            FROM {Pair._meta.db_table} WHERE study_id = %s AND NOT is_attention_check
            """,
            [study.pk],
        )
        (packed_pairs,) = cursor.fetchone()
        flagged = []
        if not include_flagged:
            cursor.execute(
                f"SELECT rater_id FROM {Participation._meta.db_table} "
                "WHERE study_id = %s AND flagged",
                [study.pk],
            )
            flagged = [rater for (rater,) in cursor.fetchall()]

    votes = np.frombuffer(
        b"".join(vote_parts), dtype=np.dtype([("id", ">i8"), ("rater", ">i8"), ("pair", ">i8")])
    )
    label_set = np.concatenate(label_parts) if label_parts else np.zeros(0, dtype=np.int64)
    pairs = np.frombuffer(
        bytes(packed_pairs or b""),
        dtype=np.dtype([("id", ">i8"), ("variant_a", ">i8"), ("variant_b", ">i8")]),
    )
    if not len(pairs):  # no pair to score at all: every vote is on an attention check
        pairs = np.zeros(1, dtype=pairs.dtype)
    pair_ids = pairs["id"].astype(np.int64)
    pair_order = np.argsort(pair_ids)
    at = np.minimum(np.searchsorted(pair_ids, votes["pair"], sorter=pair_order), len(pairs) - 1)
    pair_row = pair_order[at]
    # Votes on attention-check pairs find no pair; flagged raters' votes are dropped.
    kept = pair_ids[pair_row] == votes["pair"]
    kept &= ~np.isin(votes["rater"], np.array(flagged, dtype=np.int64))

    answers = np.frombuffer(b"".join(answer_parts), dtype=">i8").astype(np.int64)
    choice_lookup = np.full(256, -1, dtype=np.int64)
    for byte, code in _CHOICE_BYTES.items():
        choice_lookup[byte] = code
    choice = choice_lookup[answers & 0xFF]
    known = choice >= 0
    # Label sets in a fixed order (sorted), whatever order the groups came in.
    texts = sorted(label_index)
    renumber = np.zeros(max(len(texts), 1), dtype=np.int64)
    renumber[[label_index[text] for text in texts]] = np.arange(len(texts))
    label_set = renumber[label_set]
    return _loaded(
        vote_ids=votes["id"][kept],
        rater_ids=votes["rater"][kept],
        pair_ids=votes["pair"][kept],
        variant_a_ids=pairs["variant_a"][pair_row][kept],
        variant_b_ids=pairs["variant_b"][pair_row][kept],
        label_set=label_set[kept],
        label_sets=[tuple(json.loads(text)) for text in texts],
        answer_votes=(answers >> 13)[known],
        answer_codes=(((answers >> 8) & 31) * 8 + choice)[known],
        n_criteria=len(criteria),
    )


def _loaded(
    *,
    vote_ids: np.ndarray,
    rater_ids: np.ndarray,
    pair_ids: np.ndarray,
    variant_a_ids: np.ndarray,
    variant_b_ids: np.ndarray,
    label_set: np.ndarray,
    label_sets: list[tuple[str, ...]],
    answer_votes: np.ndarray,
    answer_codes: np.ndarray,
    n_criteria: int,
) -> _LoadedVotes:
    """Sort the votes by id and put each answer (criterion * 8 + choice) in its vote's row."""
    import numpy as np

    from ratings.scoring import MISSING

    order = np.argsort(vote_ids, kind="stable")
    vote_ids = vote_ids[order].astype(np.int64)
    codes = np.full((len(vote_ids), n_criteria), MISSING, dtype=np.int8)
    answer_votes = answer_votes.astype(np.int64)
    answer_codes = answer_codes.astype(np.int64)
    row = np.searchsorted(vote_ids, answer_votes)
    row = np.minimum(row, max(len(vote_ids) - 1, 0))
    # Answers of votes that are not scored (attention checks, flagged raters) find no row.
    found = (vote_ids[row] == answer_votes) if len(vote_ids) else np.zeros(0, dtype=bool)
    codes[row[found], answer_codes[found] // 8] = answer_codes[found] % 8 - 1
    return _LoadedVotes(
        vote_ids=vote_ids,
        rater_ids=rater_ids[order].astype(np.int64),
        pair_ids=pair_ids[order].astype(np.int64),
        variant_a_ids=variant_a_ids[order].astype(np.int64),
        variant_b_ids=variant_b_ids[order].astype(np.int64),
        label_set=label_set[order].astype(np.int64),
        label_sets=label_sets,
        codes=codes,
    )


def _votes_load(
    *, study: Study, criteria: Sequence[Criterion], include_flagged: bool
) -> _LoadedVotes:
    """Read the study's scored votes in one snapshot.

    Outside any transaction the reads share a REPEATABLE READ snapshot. Inside a caller's
    transaction (where the isolation can no longer be set) they run in order, votes before
    the pairs and answers they need, so a vote that lands between two reads is read whole or
    not at all.
    """
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return _votes_load_postgresql(
            study=study, criteria=criteria, include_flagged=include_flagged
        )


# Computing and storing.


@dataclass(frozen=True)
class _Catalog:
    """What the dense indices of a StudyVotes stand for."""

    criteria: list[Criterion]
    cohorts: list[Cohort]
    variant_ids: list[int]
    variant_pairs: list[tuple[int, int]]  # as variant ids, in their scored orientation


def _study_votes(
    *, study: Study, loaded: _LoadedVotes, criteria: list[Criterion]
) -> tuple[StudyVotes, _Catalog]:
    """Turn loaded votes into the dense arrays the statistics read, with their catalog.

    Variant pairs are scored in one orientation: where pairs of the same two variants were
    formed both ways round (imported items may be), the orientation with more votes wins and
    the others' a and b answers are swapped, so that "b" always means the same variant.
    """
    import numpy as np

    from ratings.scoring import A, B, StudyVotes

    # Cohorts: the study's own and every label (with its ancestors) that votes carry.
    paths = set(study.cohorts.values_list("path", flat=True))
    for label_set in loaded.label_sets:
        for path in label_set:
            paths.update(cohort_path_ancestors(path))
    cohorts = list(Cohort.objects.filter(path__in=paths).order_by("path"))
    cohort_index = {cohort.path: index for index, cohort in enumerate(cohorts)}
    membership = np.zeros((max(len(loaded.label_sets), 1), len(cohorts)), dtype=bool)
    for row, label_set in enumerate(loaded.label_sets):
        for path in label_set:
            for ancestor in cohort_path_ancestors(path):
                if ancestor in cohort_index:
                    membership[row, cohort_index[ancestor]] = True

    variant_ids = np.unique(np.r_[loaded.variant_a_ids, loaded.variant_b_ids]).tolist()
    variant_index = {variant: index for index, variant in enumerate(variant_ids)}
    first = np.minimum(loaded.variant_a_ids, loaded.variant_b_ids)
    second = np.maximum(loaded.variant_a_ids, loaded.variant_b_ids)
    span = int(second.max()) + 1 if len(second) else 1
    pair_keys, pair_of_vote = np.unique(first * span + second, return_inverse=True)
    unordered = np.stack([pair_keys // span, pair_keys % span], axis=1)
    pair_of_vote = pair_of_vote.ravel()
    straight = loaded.variant_a_ids == first  # a is the smaller id
    votes_straight = np.bincount(pair_of_vote[straight], minlength=len(unordered))
    votes_all = np.bincount(pair_of_vote, minlength=len(unordered))
    keep_straight = votes_straight * 2 >= votes_all  # ties: the smaller id as a
    variant_pairs = [
        (int(low), int(high)) if keep_straight[index] else (int(high), int(low))
        for index, (low, high) in enumerate(unordered)
    ]
    flipped = straight != keep_straight[pair_of_vote]
    codes = loaded.codes.copy()
    decisive = (codes == A) | (codes == B)
    codes[flipped[:, None] & decisive] *= -1

    _, rater = np.unique(loaded.rater_ids, return_inverse=True)
    _, item = np.unique(loaded.pair_ids, return_inverse=True)
    votes = StudyVotes(
        rater=rater.astype(np.intp),
        item=item.astype(np.intp),
        variant_pair=pair_of_vote.astype(np.intp),
        label_set=np.maximum(loaded.label_set, 0).astype(np.intp),
        codes=codes,
        membership=membership,
        variant_pairs=[(variant_index[a], variant_index[b]) for a, b in variant_pairs],
        criterion_keys=[criterion.pk for criterion in criteria],
        cohort_keys=[cohort.pk for cohort in cohorts],
        variant_keys=variant_ids,
    )
    catalog = _Catalog(
        criteria=criteria, cohorts=cohorts, variant_ids=variant_ids, variant_pairs=variant_pairs
    )
    return votes, catalog


def scores_compute(*, study: Study, include_flagged: bool = False, seed: int = 0) -> ScoreRun:
    """Compute and store every score of a study; return its ScoreRun (status done).

    The run is created first (status running, with its start time) and its rows are stored
    with it marked done in one transaction, so readers see all of a run or none of it. On an
    error the run is marked failed, with the error, and the error is raised again.
    """
    from ratings import scoring

    run = ScoreRun.objects.create(
        study=study,
        include_flagged=include_flagged,
        permutations=study.score_permutations,
        bootstrap=study.score_bootstrap,
        seed=seed,
    )
    started = time.monotonic()
    try:
        criteria = list(study.criteria.all())
        loaded = _votes_load(study=study, criteria=criteria, include_flagged=include_flagged)
        loaded_at = time.monotonic()
        votes, catalog = _study_votes(study=study, loaded=loaded, criteria=criteria)
        keys = [criterion.key for criterion in criteria]
        coherence_criteria = (
            tuple(keys.index(key) for key in COHERENCE_KEYS)
            if all(key in keys for key in COHERENCE_KEYS)
            else None
        )
        result = scoring.study_scores(
            votes,
            permutations=run.permutations,
            bootstrap=run.bootstrap,
            seed=seed,
            coherence_criteria=coherence_criteria,
            gai_min_raters=study.min_cohort_size,
        )
        computed_at = time.monotonic()
        with transaction.atomic():
            _rows_store(run=run, result=result, catalog=catalog)
            run.status = ScoreRun.Status.DONE
            run.computed_at = timezone.now()
            run.votes_covered = len(loaded.vote_ids)
            run.last_vote_id = int(loaded.vote_ids[-1]) if len(loaded.vote_ids) else None
            run.save(update_fields=["status", "computed_at", "votes_covered", "last_vote_id"])
    except Exception as exc:
        ScoreRun.objects.filter(pk=run.pk).update(
            status=ScoreRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    logger.info(
        "Scored study %s: %d votes, %d cells; load %.1fs, statistics %.1fs, store %.1fs",
        study.slug,
        run.votes_covered,
        len(result.cells),
        loaded_at - started,
        computed_at - loaded_at,
        time.monotonic() - computed_at,
    )
    return run


def _rows_store(*, run: ScoreRun, result: StudyScores, catalog: _Catalog) -> None:
    scores = []
    for (cohort, criterion, pair), cell in result.cells.items():
        variant_a, variant_b = catalog.variant_pairs[pair]
        scores.append(
            Score(
                run=run,
                cohort=catalog.cohorts[cohort],
                criterion=catalog.criteria[criterion],
                variant_a_id=variant_a,
                variant_b_id=variant_b,
                n_raters=cell.n_raters,
                n_votes=cell.n_votes,
                count_a=cell.count_a,
                count_tie=cell.count_tie,
                count_b=cell.count_b,
                count_skip=cell.count_skip,
                **{name: getattr(cell, name) for name in STATISTIC_FIELDS},
            )
        )
    Score.objects.bulk_create(scores, batch_size=1000)
    coherence = []
    for (cohort, pair), cell in result.coherence.items():
        variant_a, variant_b = catalog.variant_pairs[pair]
        coherence.append(
            CoherenceScore(
                run=run,
                cohort=catalog.cohorts[cohort],
                variant_a_id=variant_a,
                variant_b_id=variant_b,
                n_raters=cell.n_raters,
                same=cell.same,
                tie=cell.tie,
                other=cell.other,
                ndfu=cell.ndfu,
            )
        )
    CoherenceScore.objects.bulk_create(coherence, batch_size=1000)
    strengths = [
        StrengthScore(
            run=run,
            cohort=catalog.cohorts[cohort],
            criterion=catalog.criteria[criterion],
            variant_id=catalog.variant_ids[strength.variant],
            strength=strength.strength,
            low=strength.low,
            high=strength.high,
        )
        for (cohort, criterion), cells in result.strengths.items()
        for strength in cells
    ]
    StrengthScore.objects.bulk_create(strengths, batch_size=1000)


# Staleness: new votes schedule one recomputation, debounced per study and process.

_stale_lock = threading.Lock()
# study id -> the monotonic time at which the recomputation already scheduled will start.
_stale_until: dict[int, float] = {}


def scores_mark_stale(*, study_id: int) -> bool:
    """Schedule a recomputation of a study's scores unless one is already waiting to start.

    Called after a vote's commit. The first new vote schedules a recomputation in
    POLYPHONY_SCORES_DEBOUNCE_SECONDS; votes before it starts need nothing more, since it reads
    every vote committed by then. No query: the wait is kept in this process, so each web
    process schedules at most one recomputation per study and interval, and the task skips a
    recomputation that a later run already covers. Returns whether one was scheduled.
    """
    delay = settings.POLYPHONY_SCORES_DEBOUNCE_SECONDS
    now = time.monotonic()
    with _stale_lock:
        if _stale_until.get(study_id, 0.0) > now:
            return False
        _stale_until[study_id] = now + delay
    from ratings.tasks import scores_compute_task

    try:
        scores_compute_task.apply_async(
            args=[study_id], kwargs={"requested_at": timezone.now().isoformat()}, countdown=delay
        )
    except Exception:
        # A vote must never fail because the broker is away; the next vote tries again.
        logger.exception("Could not schedule the scores of study %s", study_id)
        with _stale_lock:
            _stale_until.pop(study_id, None)
        return False
    return True


def scores_stale_forget() -> None:
    """Forget the recomputations this process scheduled (tests start each from a clean slate)."""
    with _stale_lock:
        _stale_until.clear()


def scores_refresh(*, study: Study, requested_at: datetime | None = None) -> ScoreRun | None:
    """Recompute a study's scores, unless a run started after `requested_at` already covers it.

    A run that started after the request read every vote committed before it, so the request
    is already answered; returns None then.
    """
    if requested_at is not None:
        latest = scores_latest(study=study, include_flagged=False)
        if latest is not None and latest.started_at >= requested_at:
            return None
    return scores_compute(study=study)
