"""Pools: which new regular pair a rater is served, and the coverage that decides it.

PairCoverage keeps, for every regular pair, one row per cohort the pair can count toward: the
prompt's cohort, its ancestors, and the study's cohorts below it. `votes` on the row of cohort
C counts the regular votes of raters in C or below it (an india:tamil vote counts in india
too), up to the study's target; `outgroup_votes` on the row of the prompt's root culture
counts votes of raters from other cultures. A rater of cohort R is served from the rows of R,
fewest votes first, through the index (study, cohort, votes, pair): a range read, never a
scan of the study's pairs. A rater whose cohort is not in the study (india:tamil in a study
of india) is served from the rows of its nearest ancestor that is, among the prompts related
to their own cohort.

Reservations are not counted in the rows: a live reservation is an assignment neither voted
on, skipped nor expired (voting and skipping set expires_at to their time), so an expired one
returns its pair to the pool with nothing to clean up. They are read, for the few pairs looked
at, through the assignments' pair index. The check that a pair is below its target and the
reservation that follows run under the pair's coverage row lock, taken with SKIP LOCKED: two
raters never both take a pair's last place, and neither waits for the other.
"""

from __future__ import annotations

import random
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from ratings.assignment.reservations import (
    ASSIGNMENT_COLUMNS,
    reservation_expiry,
    served_at_next,
    served_insert,
    served_note,
)
from ratings.assignment.state import RatingState, ServedPair
from ratings.cohorts import cohort_path_ancestors
from ratings.models import AssignmentKind, Side
from ratings.sql import (
    db_datetime,
    db_tables,
    db_uuid,
    sql_fetchall,
    sql_fetchone,
    sql_for_update_skip_locked,
    sql_list,
)

ASSIGN_WINDOW = 32  # coverage rows read at a time
ASSIGN_ROUNDS = 3  # fresh looks when every pair seen was taken by concurrent raters


@dataclass(frozen=True)
class _Pool:
    """Coverage rows a rater's next pair may come from, and what an assignment from them counts.

    In-group: the rows of one cohort by `votes`; the assignment counts toward that cohort, and
    reservations toward it or a cohort below it fill its places; `only_for` keeps to prompts
    related to a rater cohort that is not in the study itself. Out-group: the rows of another
    root culture, by `outgroup_votes`; the assignment counts toward no cohort.
    """

    cohort_id: int
    counter: str
    counts_toward: int | None
    rater_path: str | None
    only_for: str | None = None


@dataclass(frozen=True)
class _Candidate:
    pool: _Pool
    row_id: int
    pair_id: int
    load: int  # votes so far plus live reservations
    tie: float


def _live_sql(pool: _Pool, pair: str, params: dict) -> str:
    """Return `FROM … WHERE …` of the live reservations of `pair` that fill the pool's places.

    In-group, a reservation toward the pool's cohort or one below it, as its vote will count
    in the pool's row; out-group, one toward no cohort.
    """
    t = db_tables()
    if pool.rater_path is None:
        filling = "live.cohort_id IS NULL"
    else:
        params.update(
            filling_path=pool.rater_path,
            filling_length=len(pool.rater_path) + 1,
            filling_subtree=pool.rater_path + ":",
        )
        subtree = (
            f"SELECT id FROM {t['cohort']} WHERE path = %(filling_path)s "
            "OR substr(path, 1, %(filling_length)s) = %(filling_subtree)s"
        )
        # An array built once per statement: as a plain IN the planner probed the
        # assignments' cohort index per pair, or joined the cohorts per pair (3 times the cost).
        filling = f"live.cohort_id = ANY(ARRAY({subtree}))"
    params["live_kind"] = AssignmentKind.PAIR.value
    return (
        f"FROM {t['assignment']} live WHERE live.pair_id = {pair} "
        "AND live.kind = %(live_kind)s AND live.expires_at > %(now)s "
        f"AND live.skipped_at IS NULL AND {filling}"
    )


def pool_window(
    state: RatingState, pool: _Pool, *, now: datetime, mode: str = "load"
) -> list[tuple[int, int, int, int]]:
    """Return some of the pool's least voted rows below target as (row, pair, votes, reserved).

    See _pool_window_sql.
    """
    sql, params = _pool_window_sql(state, pool, now=now, mode=mode)
    return sql_fetchall(sql, params)


def _pool_window_sql(
    state: RatingState, pool: _Pool, *, now: datetime, mode: str = "load"
) -> tuple[str, dict]:
    """Return the read of some of the pool's least voted rows below target, and its parameters.

    Its rows are (id, pair_id, counted, reserved): the coverage row, its pair, its votes and
    the pair's live reservations that fill the pool's places.

    Ranges of the index (study, cohort, votes, pair), read in order and stopped at the
    window's end. The rater's own assignments are read once, as a hashed set; per row, the
    pair's flag and its live reservations are probed by primary key and the assignments' pair
    index, in subqueries rather than joins (planned once for any parameters, a join merged the
    window with every pair of the study). `mode` "load" counts each pair's live reservations,
    "any" does not (a check's source image needs no place): both start at a random pair among
    those with the fewest votes, wrap around to the first, then go on to the next counts, so
    that concurrent raters read (and lock) different rows rather than all the same few.
    "unreserved" reads from the
    very first row and leaves out pairs with a live reservation that fills the pool's places.
    """
    t = db_tables()
    params: dict = {
        "now": db_datetime(now),
        "study": state.study.pk,
        "cohort": pool.cohort_id,
        "target": state.study.raters_per_pair,
        "rater": state.rater_id,
        "window": ASSIGN_WINDOW,
    }
    live = _live_sql(pool, "coverage.pair_id", params)
    related = ""
    if pool.only_for is not None:
        ancestors = sql_list("related", cohort_path_ancestors(pool.only_for), params)
        params.update(related_length=len(pool.only_for) + 1, related_subtree=pool.only_for + ":")
        related = f"""
            AND (SELECT 1 FROM {t["pair"]} pair JOIN {t["prompt"]} prompt
                    ON prompt.id = pair.prompt_id
                JOIN {t["cohort"]} cohort ON cohort.id = prompt.cohort_id
                WHERE pair.id = coverage.pair_id AND (cohort.path IN {ancestors}
                    OR substr(cohort.path, 1, %(related_length)s) = %(related_subtree)s)
            ) IS NOT NULL
        """
    # Images the rater was shown in any assignment (an array built once per statement): a
    # pair sharing one is never served, or the image seen twice (the base of a prompt and
    # seed against several fine-tuned variants) would name the base.
    seen_images = f"""ARRAY(
        SELECT shown.image_a_id FROM {t["assignment"]} mine
            JOIN {t["pair"]} shown ON shown.id = mine.pair_id WHERE mine.rater_id = %(rater)s
        UNION SELECT shown.image_b_id FROM {t["assignment"]} mine
            JOIN {t["pair"]} shown ON shown.id = mine.pair_id WHERE mine.rater_id = %(rater)s
    )"""
    counter = pool.counter  # a column name of ours, never input
    scope = "coverage.study_id = %(study)s AND coverage.cohort_id = %(cohort)s"
    reserved = f"(SELECT COUNT(*) {live})" if mode == "load" else "0"
    unreserved = f"AND NOT EXISTS (SELECT 1 {live})" if mode == "unreserved" else ""

    def rows(where: str, order: str) -> str:
        return f"""
            SELECT coverage.id AS id, coverage.pair_id AS pair_id, coverage.{counter} AS counted,
                {reserved} AS reserved
            FROM {t["coverage"]} coverage
            WHERE {scope} AND {where}
                AND coverage.pair_id NOT IN (
                    SELECT seen.pair_id FROM {t["assignment"]} seen
                    WHERE seen.rater_id = %(rater)s
                )
                AND NOT EXISTS (
                    SELECT 1 FROM {t["pair"]} candidate WHERE candidate.id = coverage.pair_id
                        AND (candidate.image_a_id = ANY({seen_images})
                            OR candidate.image_b_id = ANY({seen_images}))
                )
                AND NOT (SELECT is_attention_check FROM {t["pair"]} WHERE id = coverage.pair_id)
                {related} {unreserved}
            ORDER BY {order}
            LIMIT %(window)s
        """

    if mode == "unreserved":
        return rows(
            f"coverage.{counter} < %(target)s", f"coverage.{counter}, coverage.pair_id"
        ), params
    params["fraction"] = random.random()
    level = "(SELECT level FROM span)"
    sql = f"""
        WITH low AS (
            SELECT coverage.{counter} AS level FROM {t["coverage"]} coverage
            WHERE {scope} AND coverage.{counter} < %(target)s
            ORDER BY coverage.{counter} LIMIT 1
        ), span AS (
            SELECT level,
                (SELECT coverage.pair_id FROM {t["coverage"]} coverage
                    WHERE {scope} AND coverage.{counter} = low.level
                    ORDER BY coverage.pair_id LIMIT 1) AS first,
                (SELECT coverage.pair_id FROM {t["coverage"]} coverage
                    WHERE {scope} AND coverage.{counter} = low.level
                    ORDER BY coverage.pair_id DESC LIMIT 1) AS last
            FROM low
        ), start AS (
            SELECT first
                + CAST(CAST(%(fraction)s AS double precision) * (last - first + 1) AS bigint)
                AS pair_id
            FROM span
        )
        SELECT * FROM (
            SELECT * FROM ({
        rows(
            f"coverage.{counter} = {level} AND coverage.pair_id >= (SELECT pair_id FROM start)",
            "coverage.pair_id",
        )
    }) AS from_start
            UNION ALL
            SELECT * FROM ({
        rows(
            f"coverage.{counter} = {level} AND coverage.pair_id < (SELECT pair_id FROM start)",
            "coverage.pair_id",
        )
    }) AS to_start
            UNION ALL
            SELECT * FROM ({
        rows(
            f"coverage.{counter} > {level} AND coverage.{counter} < %(target)s",
            f"coverage.{counter}, coverage.pair_id",
        )
    }) AS above
        ) AS window_rows
        LIMIT %(window)s
    """
    return sql, params


def _pool_candidates(state: RatingState, pool: _Pool, *, now: datetime) -> list[_Candidate]:
    """Return pairs of the pool below target, the least loaded among them, in two reads at most.

    The first read takes the pool's least voted rows with their live reservations. While
    raters are many, those rows are often reserved already and less loaded pairs lie further
    on: the second read then skips reserved pairs in the database, still in index order.
    """
    target = state.study.raters_per_pair
    window = pool_window(state, pool, now=now)
    candidates = [
        _Candidate(pool, row_id, pair_id, counted + reserved, random.random())
        for row_id, pair_id, counted, reserved in window
        if counted + reserved < target
    ]
    # Rows come in order of votes and reservations only add to them, so no row further on can
    # be less loaded than the last row's votes; an unreserved row further on may be less
    # loaded than every row read so far, though.
    if len(window) == ASSIGN_WINDOW and not (
        candidates and min(c.load for c in candidates) <= window[-1][2]
    ):
        unreserved = pool_window(state, pool, now=now, mode="unreserved")
        candidates += [
            _Candidate(pool, row_id, pair_id, counted, random.random())
            for row_id, pair_id, counted, _ in unreserved
        ]
    return candidates


def _candidate_reserve(
    state: RatingState, candidate: _Candidate, *, now: datetime
) -> ServedPair | None:
    """Reserve the candidate pair if it is still below target; None if it is taken or full.

    Two statements in one transaction: the lock of the pair's coverage row, then the count of
    its live reservations with the reservation itself (_reserve_insert).
    """
    pool = candidate.pool
    with transaction.atomic():
        locked = sql_fetchone(
            f"SELECT {pool.counter} FROM {db_tables()['coverage']} WHERE id = %(row)s "
            f"{sql_for_update_skip_locked()}",
            {"row": candidate.row_id},
        )
        if locked is None:
            return None  # another rater is reserving this pair right now
        return _reserve_insert(state, pool, pair_id=candidate.pair_id, counted=locked[0], now=now)


def _reserve_insert(
    state: RatingState, pool: _Pool, *, pair_id: int, counted: int, now: datetime
) -> ServedPair | None:
    """Reserve the pair for the rater if its places are not all taken; None if they are.

    Run under the lock of the pair's coverage row, in a statement of its own after the lock:
    its snapshot then holds the reservations committed by whoever held the lock before.
    """
    t = db_tables()
    params: dict = {
        "new_id": db_uuid(uuid.uuid4()),
        "rater": state.rater_id,
        "pair": pair_id,
        "kind": AssignmentKind.PAIR.value,
        "cohort": pool.counts_toward,
        "left": secrets.choice(Side.values),  # the coin toss: which side `a` is shown on
        "served_at": db_datetime(served_at_next(state, now)),
        "expires_at": db_datetime(reservation_expiry(now)),
        "now": db_datetime(now),
        "target": state.study.raters_per_pair,
        "counted": counted,
    }
    live = _live_sql(pool, "%(pair)s", params)
    # None if full, or if the rater took the pair in another request meanwhile.
    return served_insert(
        f"""INSERT INTO {t["assignment"]} ({ASSIGNMENT_COLUMNS})
            SELECT %(new_id)s, %(rater)s, %(pair)s, %(kind)s, NULL,
                CAST(%(cohort)s AS bigint), %(left)s, %(served_at)s, %(expires_at)s, NULL, ''
            WHERE %(counted)s + (SELECT count(*) {live}) < %(target)s
            ON CONFLICT DO NOTHING""",
        params,
    )


def _pool_claim(state: RatingState, pool: _Pool, *, now: datetime) -> ServedPair | None:
    """Reserve a pair of the pool in one transaction of two statements, if all goes well.

    The first reads the window and locks the least loaded row of it that nobody else holds
    (SKIP LOCKED, in order of load and then at random); the second counts and reserves under
    that lock. None when the window has no free place or every candidate was locked: the
    caller then takes the longer way.
    """
    window, params = _pool_window_sql(state, pool, now=now)
    lock = "FOR UPDATE OF coverage SKIP LOCKED"
    with transaction.atomic():
        claimed = sql_fetchone(
            f"""SELECT coverage.pair_id, coverage.{pool.counter}
                FROM {db_tables()["coverage"]} coverage
                JOIN ({window}) AS candidate ON candidate.id = coverage.id
                WHERE candidate.counted + candidate.reserved < %(target)s
                ORDER BY candidate.counted + candidate.reserved, random()
                LIMIT 1 {lock}""",
            params,
        )
        if claimed is None:
            return None
        pair_id, counted = claimed
        return _reserve_insert(state, pool, pair_id=pair_id, counted=counted, now=now)


def _pools_assign(
    state: RatingState, pools: Sequence[_Pool], *, now: datetime
) -> ServedPair | None:
    if len(pools) == 1:
        served = _pool_claim(state, pools[0], now=now)
        if served is not None:
            return served
    # Several pools, or a crowded one: all the candidates of every pool, tried one by one.
    for _ in range(ASSIGN_ROUNDS):
        candidates = sorted(
            (candidate for pool in pools for candidate in _pool_candidates(state, pool, now=now)),
            key=lambda candidate: (candidate.load, candidate.tie),
        )
        if not candidates:
            return None
        tried: set[int] = set()
        for candidate in candidates:
            if candidate.pair_id in tried:
                continue
            tried.add(candidate.pair_id)
            served = _candidate_reserve(state, candidate, now=now)
            if served is not None:
                return served
    return None


def _outgroup_due(state: RatingState) -> bool:
    """Say whether the next pair should come from another culture, to keep the study's share.

    A counter, not a coin: with a share of 0.25 the 4th, 8th, … regular pairs are out-group,
    so a rater's first pairs are always their own culture's.
    """
    share = state.study.outgroup_share
    served = state.served
    return share > 0 and served.outgroup + 1 <= share * (served.regular + 1) + 1e-9


def in_group_pools(state: RatingState) -> list[_Pool]:
    """Return a pool per rater cohort: its own rows, or those of its nearest study ancestor."""
    study_cohorts = {path: pk for pk, path in state.study.cohorts}
    pools = []
    for pk, path, _ in state.cohorts:
        in_study = [each for each in cohort_path_ancestors(path) if each in study_cohorts]
        if path in study_cohorts or not in_study:
            pools.append(_Pool(cohort_id=pk, counter="votes", counts_toward=pk, rater_path=path))
        else:
            ancestor = study_cohorts[in_study[-1]]
            pools.append(
                _Pool(
                    cohort_id=ancestor,
                    counter="votes",
                    counts_toward=ancestor,
                    rater_path=in_study[-1],
                    only_for=path,
                )
            )
    # A pool kept to some prompts adds nothing where the same rows are read whole.
    whole = {pool.cohort_id for pool in pools if pool.only_for is None}
    kept = [pool for pool in pools if pool.only_for is None or pool.cohort_id not in whole]
    return list(dict.fromkeys(kept))


def _outgroup_pools(state: RatingState) -> list[_Pool]:
    # Out-group means another root culture: a rater of india:tamil shares India with a prompt
    # about india:kerala, so that pair is neither theirs nor foreign and is served as neither.
    rater_roots = {cohort_path_ancestors(path)[0] for path in state.cohort_paths}
    study_roots = {cohort_path_ancestors(path)[0] for _, path in state.study.cohorts}
    return [
        _Pool(cohort_id=pk, counter="outgroup_votes", counts_toward=None, rater_path=None)
        for pk, path in state.study.roots
        if path not in rater_roots and (not study_roots or path in study_roots)
    ]


def pair_reserve(*, state: RatingState, now: datetime) -> ServedPair | None:
    """Reserve a new regular pair for the rater (see pair_assign); note it in `state`."""
    if not state.cohorts or state.rater_id is None:
        return None
    choices = [in_group_pools(state)]
    if _outgroup_due(state):
        choices.insert(0, _outgroup_pools(state))
    for pools in choices:
        served = _pools_assign(state, pools, now=now)
        if served is not None:
            return served_note(state, served)
    return None
