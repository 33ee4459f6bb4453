"""The researchers' rater overview: votes, checks and time per pair, under pseudonyms only."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import median

from django.db.models import Count

from ratings.exports.privacy import rater_pseudonym
from ratings.models import Assignment, AssignmentKind, Participation, Study, Vote


@dataclass(frozen=True)
class RaterOverviewRow:
    """One rater in the researchers' overview, under the study's pseudonym only."""

    pseudonym: str
    votes: int
    skipped: int
    checks_passed: int
    checks_failed: int
    too_fast: int
    median_seconds: float | None
    flagged: bool


RATER_OVERVIEW_SORTS = {
    # Flagged first, then the rater nearest to being flagged.
    "flagged": lambda row: (not row.flagged, -row.checks_failed, row.pseudonym),
    "votes": lambda row: (-row.votes, row.pseudonym),
    "failed": lambda row: (-row.checks_failed, row.pseudonym),
    # Fastest first: the raters whose time per pair most needs a look.
    "time": lambda row: (row.median_seconds is None, row.median_seconds or 0, row.pseudonym),
}


def rater_overview(*, study: Study, sort: str = "flagged") -> list[RaterOverviewRow]:
    """Return, per rater who consented to the study: votes, checks, median time, flag."""
    participations = list(
        Participation.objects.filter(study=study, consented_at__isnull=False).values_list(
            "rater_id", "checks_passed", "checks_failed", "flagged"
        )
    )
    times: dict[int, list[int]] = defaultdict(list)
    for rater_id, time_on_task_ms in Vote.objects.filter(
        study=study, kind=AssignmentKind.PAIR
    ).values_list("rater_id", "time_on_task_ms"):
        times[rater_id].append(time_on_task_ms)
    too_fast = dict(
        Vote.objects.filter(study=study, too_fast=True)
        .values("rater_id")
        .annotate(n=Count("id"))
        .values_list("rater_id", "n")
    )
    skipped = dict(
        Assignment.objects.filter(pair__study=study, skipped_at__isnull=False)
        .values("rater_id")
        .annotate(n=Count("pk"))
        .values_list("rater_id", "n")
    )
    rows = [
        RaterOverviewRow(
            pseudonym=rater_pseudonym(salt=study.pseudonym_salt, rater_id=rater_id),
            votes=len(times[rater_id]),
            skipped=skipped.get(rater_id, 0),
            checks_passed=checks_passed,
            checks_failed=checks_failed,
            too_fast=too_fast.get(rater_id, 0),
            median_seconds=median(times[rater_id]) / 1000 if times[rater_id] else None,
            flagged=flagged,
        )
        for rater_id, checks_passed, checks_failed, flagged in participations
    ]
    return sorted(rows, key=RATER_OVERVIEW_SORTS.get(sort, RATER_OVERVIEW_SORTS["flagged"]))
