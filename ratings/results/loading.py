"""Load a study's scored votes as the dense arrays the statistics read.

A computation reads the study's votes in one snapshot (on PostgreSQL as packed binary columns,
not per-row ORM objects) and numbers its cohorts, criteria and variant pairs densely.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import connection, transaction

from ratings.cohorts import cohort_path_ancestors
from ratings.models import (
    Answer,
    AssignmentKind,
    Cohort,
    Criterion,
    Pair,
    Participation,
    Study,
    Vote,
)

if TYPE_CHECKING:
    import numpy as np

    from ratings.results.statistics.study import StudyVotes

# The position of each answer in a packed code: a, tie, b, skip.
_CHOICE_CODES = {"a": 0, "tie": 1, "b": 2, "skip": 3}


@dataclass
class LoadedVotes:
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


def votes_load_postgresql(
    *, study: Study, criteria: Sequence[Criterion], include_flagged: bool
) -> LoadedVotes:
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
) -> LoadedVotes:
    """Sort the votes by id and put each answer (criterion * 8 + choice) in its vote's row."""
    import numpy as np

    from ratings.results.statistics.codes import MISSING

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
    return LoadedVotes(
        vote_ids=vote_ids,
        rater_ids=rater_ids[order].astype(np.int64),
        pair_ids=pair_ids[order].astype(np.int64),
        variant_a_ids=variant_a_ids[order].astype(np.int64),
        variant_b_ids=variant_b_ids[order].astype(np.int64),
        label_set=label_set[order].astype(np.int64),
        label_sets=label_sets,
        codes=codes,
    )


def votes_load(
    *, study: Study, criteria: Sequence[Criterion], include_flagged: bool
) -> LoadedVotes:
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
        return votes_load_postgresql(
            study=study, criteria=criteria, include_flagged=include_flagged
        )


@dataclass(frozen=True)
class Catalog:
    """What the dense indices of a StudyVotes stand for."""

    criteria: list[Criterion]
    cohorts: list[Cohort]
    variant_ids: list[int]
    variant_pairs: list[tuple[int, int]]  # as variant ids, in their scored orientation
    rater_ids: np.ndarray  # the database id of each dense rater index
    pair_ids: np.ndarray  # the database id of each dense item (pair) index


def study_votes(
    *, study: Study, loaded: LoadedVotes, criteria: list[Criterion]
) -> tuple[StudyVotes, Catalog]:
    """Turn loaded votes into the dense arrays the statistics read, with their catalog.

    Variant pairs are scored in one orientation: where pairs of the same two variants were
    formed both ways round (imported items may be), the orientation with more votes wins and
    the others' a and b answers are swapped, so that "b" always means the same variant.
    """
    import numpy as np

    from ratings.results.statistics.codes import A, B
    from ratings.results.statistics.study import StudyVotes

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

    rater_ids, rater = np.unique(loaded.rater_ids, return_inverse=True)
    pair_ids, item = np.unique(loaded.pair_ids, return_inverse=True)
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
    catalog = Catalog(
        criteria=criteria,
        cohorts=cohorts,
        variant_ids=variant_ids,
        variant_pairs=variant_pairs,
        rater_ids=rater_ids,
        pair_ids=pair_ids,
    )
    return votes, catalog
