"""Services that serve a rater: what they rate now and next, a due check, else a new pair."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from django.utils import timezone

from ratings.assignment.checks import attention_check_due, attention_check_serve
from ratings.assignment.pools import pair_reserve
from ratings.assignment.reservations import (
    assignment_instance,
    assignments_renew,
    reservation_expiry,
)
from ratings.assignment.state import RatingNext, RatingState, ServedPair, rating_state_of
from ratings.models import Assignment, AssignmentKind, Rater, Study


def rating_next(
    *, state: RatingState, now: datetime | None = None, renewed: Iterable[uuid.UUID] = ()
) -> RatingNext:
    """Return what the rater rates now and the assignment reserved after it, reserving as needed.

    The open assignment with the oldest clock is shown, so a reload shows the same pair; the
    one after it is the next open one, or a new one (a due check, else a pair) unless a vote
    on the current one may meet the quota. Reservations already held are renewed (but those in
    `renewed`), so a rater keeps the pair they look at and the one their browser fetched.
    """
    now = now or timezone.now()
    progress = state.progress
    if progress.quota_met:
        return RatingNext(current=None, upcoming=None, progress=progress)
    held = {served.pk for served in state.open} - set(renewed)
    current = state.open[0] if state.open else _assignment_new(state=state, now=now)
    if current is None:
        return RatingNext(current=None, upcoming=None, progress=progress)
    upcoming = next((served for served in state.open if served.pk != current.pk), None)
    if upcoming is None:
        regular_open = sum(served.kind == AssignmentKind.PAIR for served in state.open)
        if state.regular_votes + regular_open < state.study.pairs_per_rater:
            upcoming = _assignment_new(state=state, now=now)
    assignments_renew(
        (served.pk for served in (current, upcoming) if served and served.pk in held), now=now
    )
    return RatingNext(current=current, upcoming=upcoming, progress=progress)


def _open_or(state: RatingState, now: datetime, serve) -> ServedPair | None:
    if state.open:
        assignments_renew([state.open[0].pk], now=now)
        return replace(state.open[0], expires_at=reservation_expiry(now))
    return serve(state=state, now=now)


def assignment_for_rater(
    *, study: Study, rater: Rater, now: datetime | None = None
) -> Assignment | None:
    """Return what the rater rates now: their open assignment, else a due check, else a pair.

    None once the rater has voted the study's quota of regular pairs, or when nothing is left.
    """
    now = now or timezone.now()
    state = rating_state_of(study=study, rater=rater, now=now)
    if state.progress.quota_met:
        return None
    current = _open_or(state, now, _assignment_new)
    return assignment_instance(current, rater_id=rater.pk) if current else None


def assignment_next(
    *, study: Study, rater: Rater, now: datetime | None = None
) -> Assignment | None:
    """Serve the rater a pair: their open one, else a new regular pair (never a check)."""
    now = now or timezone.now()
    state = rating_state_of(study=study, rater=rater, now=now)
    current = _open_or(state, now, pair_reserve)
    return assignment_instance(current, rater_id=rater.pk) if current else None


def _assignment_new(*, state: RatingState, now: datetime) -> ServedPair | None:
    if attention_check_due(state):
        check = attention_check_serve(state, now)
        if check is not None:
            return check
    return pair_reserve(state=state, now=now)


def pair_assign(*, study: Study, rater: Rater, now: datetime | None = None) -> Assignment | None:
    """Reserve a new regular pair for the rater, or return None when none is left for them.

    In-group first: a pair whose prompt's cohort is one of the rater's cohorts, an ancestor of
    one, or below one, counted toward that rater cohort (Assignment.cohort); out-group pairs,
    from other root cultures and counted toward no cohort, only as far as the study's
    `outgroup_share`. The pair is one the rater was never served, sharing no image with any
    pair they were served, not an attention check, below `raters_per_pair` for the cohort
    counting votes and live reservations, and the least loaded such pair. Open assignments
    and attention checks are the caller's business.
    """
    now = now or timezone.now()
    state = rating_state_of(study=study, rater=rater, now=now)
    served = pair_reserve(state=state, now=now)
    return assignment_instance(served, rater_id=rater.pk) if served else None
