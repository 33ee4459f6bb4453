"""Attention checks: when one is due, and serving one image twice or an earlier pair again."""

from __future__ import annotations

import random
import secrets
import uuid
from collections.abc import Iterator
from datetime import datetime

from ratings.assignment.pools import in_group_pools, pool_window
from ratings.assignment.reservations import (
    ASSIGNMENT_COLUMNS,
    reservation_expiry,
    served_at_next,
    served_insert,
    served_note,
)
from ratings.assignment.state import RatingState, ServedPair
from ratings.models import AssignmentKind, Side
from ratings.sql import db_datetime, db_tables, db_uuid, sql_cursor, sql_fetchone

_COIN = secrets.SystemRandom()


def attention_check_due(state: RatingState, *, coin: random.Random | None = None) -> bool:
    """Say whether the next assignment should be a check: a coin weighted by the study's rate.

    Not a counter: checks at fixed counts (the 10th, 20th, …) would be recognised. Two checks
    never follow each other, so after a regular pair the coin comes up with rate / (1 - rate),
    which makes checks the study's rate of assignments on average; a rate of one half or more
    serves every other assignment as a check.
    """
    rate = state.study.attention_check_rate
    if rate <= 0 or state.served.last_kind != AssignmentKind.PAIR:
        return False
    if rate >= 0.5:
        return True
    return (coin or _COIN).random() < rate / (1 - rate)


def _identical_check_sources(state: RatingState, now: datetime) -> Iterator[int]:
    """Yield pairs whose images may make the rater's next identical check, a few at most.

    From the rater's own pool, read as assignment reads it (a range of the coverage index,
    never a scan of the study's pairs), so the image is one the rater has never seen: an image
    seen again would stand out, and pairs sharing it are never served to them afterwards.
    """
    chooser = secrets.SystemRandom()
    for pool in in_group_pools(state):
        window = pool_window(state, pool, now=now, mode="any")
        if window:
            yield from chooser.sample([row[1] for row in window], min(3, len(window)))
            break


def _identical_check_serve(state: RatingState, now: datetime) -> ServedPair | None:
    """Serve one image of an in-group pair twice, as a check pair made on demand (or reused)."""
    t = db_tables()
    for source in _identical_check_sources(state, now):
        image = sql_fetchone(
            f"SELECT image_a_id, image_b_id FROM {t['pair']} WHERE id = %(source)s",
            {"source": source},
        )[secrets.randbelow(2)]
        if image is None:  # an imported pair: it has no images to show
            continue
        params = {
            "image": image,
            "study": state.study.pk,
            "now": db_datetime(now),
            "new_id": db_uuid(uuid.uuid4()),
            "rater": state.rater_id,
            "kind": AssignmentKind.IDENTICAL_CHECK.value,
            "left": Side.A.value,
            "served_at": db_datetime(served_at_next(state, now)),
            "expires_at": db_datetime(reservation_expiry(now)),
        }
        with sql_cursor() as cursor:
            # The check pair of this image, made once and shared by every rater it is served to.
            cursor.execute(
                f"""INSERT INTO {t["pair"]} (study_id, prompt_id, seed, image_a_id, image_b_id,
                        variant_a_id, variant_b_id, is_attention_check, external_id, created_at)
                    SELECT %(study)s, image.prompt_id, image.seed, image.id, image.id,
                        image.variant_id, image.variant_id, %(check)s, '', %(now)s
                    FROM {t["image"]} image WHERE image.id = %(image)s
                    ON CONFLICT (image_a_id, image_b_id) DO NOTHING""",
                {**params, "check": True},
            )
        served = served_insert(
            f"""INSERT INTO {t["assignment"]} ({ASSIGNMENT_COLUMNS})
                SELECT %(new_id)s, %(rater)s, check_pair.id, %(kind)s, NULL, NULL, %(left)s,
                    %(served_at)s, %(expires_at)s, NULL, ''
                FROM {t["pair"]} check_pair
                WHERE check_pair.image_a_id = %(image)s AND check_pair.image_b_id = %(image)s
                ON CONFLICT DO NOTHING""",
            params,
        )
        if served is not None:  # else the rater had this check already
            return served_note(state, served)
    return None


def _repeat_check_serve(state: RatingState, now: datetime) -> ServedPair | None:
    """Serve again, sides swapped, a pair the rater voted on earlier (not the last one served).

    The same pair twice in a row is too easy to spot: the one served last is never repeated.
    """
    t = db_tables()
    pair_kind, repeat = AssignmentKind.PAIR.value, AssignmentKind.REPEAT_CHECK.value
    served = served_insert(
        f"""INSERT INTO {t["assignment"]} ({ASSIGNMENT_COLUMNS})
            SELECT %(new_id)s, %(rater)s, earlier.pair_id, '{repeat}', earlier.id, NULL,
                CASE WHEN earlier.shown_left = 'a' THEN 'b' ELSE 'a' END, %(served_at)s,
                %(expires_at)s, NULL, ''
            FROM (
                SELECT a.id, a.pair_id, a.shown_left FROM {t["assignment"]} a
                JOIN {t["pair"]} p ON p.id = a.pair_id
                WHERE a.rater_id = %(rater)s AND p.study_id = %(study)s
                    AND a.kind = '{pair_kind}' AND a.pair_id <> %(latest)s
                    AND EXISTS (SELECT 1 FROM {t["vote"]} v WHERE v.rater_id = a.rater_id
                        AND v.pair_id = a.pair_id AND v.kind = '{pair_kind}')
                    AND NOT EXISTS (SELECT 1 FROM {t["assignment"]} r
                        WHERE r.rater_id = a.rater_id AND r.pair_id = a.pair_id
                            AND r.kind = '{repeat}')
                ORDER BY a.served_at LIMIT 1
            ) earlier
            WHERE 1 = 1""",
        {
            "new_id": db_uuid(uuid.uuid4()),
            "rater": state.rater_id,
            "study": state.study.pk,
            "latest": state.served.last_pair_id or 0,
            "served_at": db_datetime(served_at_next(state, now)),
            "expires_at": db_datetime(reservation_expiry(now)),
        },
    )
    return served_note(state, served) if served is not None else None


def attention_check_serve(state: RatingState, now: datetime) -> ServedPair | None:
    """Serve an attention check of either kind, alternating them; None if neither can be made."""
    # Alternate the two kinds; a repeat needs an earlier vote, so it may have to wait.
    order = [_identical_check_serve, _repeat_check_serve]
    if state.served.repeats < state.served.identical:
        order.reverse()
    for serve in order:
        served = serve(state, now)
        if served is not None:
            return served
    return None
