"""Reservations: storing a served assignment, its clock, and renewing what a rater holds."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from ratings.assignment.state import RatingState, ServedPair, served_columns, served_joins
from ratings.models import Assignment
from ratings.sql import db_datetime, db_uuid, sql_cursor, sql_fetchone, sql_list


def reservation_expiry(now: datetime) -> datetime:
    """Return when a reservation made or renewed at `now` runs out."""
    return now + timedelta(minutes=settings.POLYPHONY_ASSIGNMENT_MINUTES)


def served_at_next(state: RatingState, now: datetime) -> datetime:
    """Return the clock of an assignment served now, after every open one of the rater."""
    # Open assignments are shown oldest clock first: one reserved after another must not tie
    # with it, even when both are made in one request with the same `now`.
    latest = max((served.served_at for served in state.open), default=None)
    if latest is not None and latest >= now:
        return latest + timedelta(microseconds=1)
    return now


def served_note(state: RatingState, served: ServedPair) -> ServedPair:
    """Note a newly served assignment in `state`: counted, and open."""
    state.served.add(served)
    state.open.append(served)
    return served


def served_insert(insert: str, params: dict) -> ServedPair | None:
    """Insert an assignment (with id `%(new_id)s`) and return it as a ServedPair; None if not.

    `insert` is an INSERT … SELECT that may insert nothing (a condition, ON CONFLICT DO NOTHING).
    The insert and the read of its prompt and images are one statement.
    """
    joins = served_joins()
    sql = f"WITH new AS ({insert} RETURNING *) SELECT {served_columns()} FROM new {joins}"
    row = sql_fetchone(sql, params)
    return ServedPair.from_row(row) if row else None


ASSIGNMENT_COLUMNS = (
    "id, rater_id, pair_id, kind, repeat_of_id, cohort_id, shown_left, served_at, expires_at, "
    "skipped_at, skip_reason"
)


def assignment_instance(served: ServedPair, *, rater_id: int) -> Assignment:
    """Return the Assignment a ServedPair was stored as, for callers that want the model."""
    values = {
        "id": served.pk,
        "rater_id": rater_id,
        "pair_id": served.pair_id,
        "kind": served.kind,
        "repeat_of_id": served.repeat_of_id,
        "cohort_id": served.cohort_id,
        "shown_left": served.shown_left,
        "served_at": served.served_at,
        "expires_at": served.expires_at,
        "skipped_at": None,
        "skip_reason": "",
        "voted_at": None,
    }
    names = [field.attname for field in Assignment._meta.concrete_fields]
    return Assignment.from_db(connection.alias, names, [values[name] for name in names])


def assignments_renew(ids: Iterable[uuid.UUID], *, now: datetime) -> None:
    """Renew the reservations `ids` from `now`."""
    # Still held for the rater who is looking at them, or about to.
    params: dict = {"expires_at": db_datetime(reservation_expiry(now))}
    ids = sql_list("id", [db_uuid(pk) for pk in ids], params)
    if ids != "(NULL)":
        with sql_cursor() as cursor:
            cursor.execute(
                f"UPDATE {Assignment._meta.db_table} SET expires_at = %(expires_at)s "
                f"WHERE id IN {ids}",
                params,
            )
