"""Selectors that read rating state for pages and exports."""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass
from statistics import median

from django.db.models import Count, Exists, OuterRef, QuerySet
from django.utils.translation import gettext

from ratings.cohorts import cohort_path_contains
from ratings.models import (
    Assignment,
    AssignmentKind,
    Participation,
    Rater,
    Side,
    Study,
    Vote,
)
from ratings.privacy import rater_pseudonym


def shared_culture_path(*, prompt_cohort_path: str, rater_cohort_paths: list[str]) -> str:
    """Return the culture a rater shares with a prompt: the shallower of two related labels.

    A rater of india:tamil judging a prompt about india is asked about India; a rater of india
    judging a prompt about india:kerala too. An out-group prompt keeps its own label.
    """
    for path in sorted(rater_cohort_paths, key=lambda path: path.count(":")):
        if cohort_path_contains(path, prompt_cohort_path):
            return path
        if cohort_path_contains(prompt_cohort_path, path):
            return prompt_cohort_path
    return prompt_cohort_path


def _shown_urls(first, second) -> list[str]:
    # The WebP rendition is lighter on a phone; older images may have only the PNG. Both images
    # of a pair go out in the same format, or a format would tell the two apart.
    if first.preview and second.preview:
        return [first.preview.url, second.preview.url]
    return [first.file.url, second.file.url]


def rating_page_context(
    *, assignment: Assignment, rater: Rater, upcoming: Assignment | None = None
) -> dict:
    """Return what the rating page shows: the prompt, two images in screen order, the questions.

    Nothing here names a variant: the images go out as 'Image 1' and 'Image 2' only. The
    upcoming assignment's images are listed for prefetching, in random order, so neither
    their order nor anything else about them says which side they will be shown on.
    """
    pair = assignment.pair
    prompt = pair.prompt
    prompt_cohort = prompt.cohort
    rater_cohorts = dict(rater.cohorts.values_list("path", "name"))
    culture_path = shared_culture_path(
        prompt_cohort_path=prompt_cohort.path, rater_cohort_paths=list(rater_cohorts)
    )
    culture = rater_cohorts.get(culture_path) or prompt_cohort.name
    left, right = (
        (pair.image_a, pair.image_b)
        if assignment.shown_left == Side.A
        else (pair.image_b, pair.image_a)
    )
    questions = [
        # A study's own wording has no translation and comes back from gettext unchanged.
        {"key": criterion.key, "text": gettext(criterion.question).replace("{culture}", culture)}
        for criterion in pair.study.criteria.all()
    ]
    prefetch_urls: list[str] = []
    if upcoming is not None:
        prefetch_urls = list(
            dict.fromkeys(_shown_urls(upcoming.pair.image_a, upcoming.pair.image_b))
        )
        secrets.SystemRandom().shuffle(prefetch_urls)
    return {
        "assignment_id": assignment.pk,
        "prompt_text": prompt.text,
        "image_urls": _shown_urls(left, right),
        "questions": questions,
        "prefetch_urls": prefetch_urls,
    }


# Rating in the browser: a rater's progress, the votes scores use, the rater overview.


@dataclass(frozen=True)
class RaterProgress:
    """Regular pairs a rater has voted on, against the study's quota."""

    done: int
    quota: int

    @property
    def quota_met(self) -> bool:
        return self.done >= self.quota


def rater_progress(*, study: Study, rater: Rater) -> RaterProgress:
    """Return how many of the study's quota of regular pairs the rater has voted on."""
    done = Vote.objects.filter(study=study, rater=rater, kind=AssignmentKind.PAIR).count()
    return RaterProgress(done=done, quota=study.pairs_per_rater)


def votes_for_scoring(*, study: Study, include_flagged: bool = False) -> QuerySet[Vote]:
    """Return the votes scores are computed from: regular pairs, flagged raters left out.

    Attention checks never count. Flagged raters' votes stay in the data (and the exports);
    `include_flagged` brings them back for a researcher who wants to see the difference.
    """
    votes = Vote.objects.filter(
        study=study, kind=AssignmentKind.PAIR, pair__is_attention_check=False
    )
    if not include_flagged:
        flagged = Participation.objects.filter(study=study, rater=OuterRef("rater"), flagged=True)
        votes = votes.exclude(Exists(flagged))
    return votes


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


# Entry: where a rater stands in a study's steps.


def rater_has_study_cohort(*, study: Study, rater: Rater) -> bool:
    """Tell whether the rater holds one of the study's cohorts (a proposal is not one yet)."""
    return rater.cohorts.filter(pk__in=study.cohorts.values("pk")).exists()
