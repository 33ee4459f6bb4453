"""The researchers' dashboard: the studies one may read, a study's scores, recomputing them.

Pages show stored scores only (`ratings.results.dashboard`); recomputing is a Celery task the
"Recompute now" button enqueues. Only superusers and researchers granted a study see anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from ratings.access import research_allowed, studies_for_researcher
from ratings.models import Score, Study
from ratings.results.dashboard import CohortNotInStudy, dashboard_for_study, studies_with_latest_run
from ratings.results.dashboard_summary import recompute_queued_since, summary_for_run
from ratings.results.faction_panel import ScoreWithoutFactions, faction_panel
from ratings.results.tasks import scores_compute_task

EXPORT_TABLES = (
    ("votes_long", "Votes, long form", "one row per vote and criterion"),
    ("votes_wide", "Votes, wide form", "one row per vote, a column per criterion"),
    ("scores", "Scores", "every cohort, criterion and variant pair, below-k cohorts rolled up"),
    ("splits", "Cohort split report", "the cohorts labelled split, with their statistics"),
)
EXPORT_FORMATS = (("csv", "CSV"), ("jsonl", "JSONL"), ("parquet", "Parquet"))


@dataclass(frozen=True)
class ExportLink:
    table: str
    title: str
    description: str
    formats: tuple[tuple[str, str], ...]  # (format name, URL)
    card_url: str


def _research_study(request: HttpRequest, slug: str) -> Study:
    study = get_object_or_404(Study, slug=slug)
    if not research_allowed(user=request.user, study=study):
        raise PermissionDenied("Study results are for researchers granted this study.")
    return study


def _export_links(study: Study) -> tuple[ExportLink, ...]:
    """Return the download links of a study's exports; none while the export URLs are missing."""
    try:
        return tuple(
            ExportLink(
                table=table,
                title=title,
                description=description,
                formats=tuple(
                    (name, reverse("ratings:export", args=[study.slug, table, fmt]))
                    for fmt, name in EXPORT_FORMATS
                ),
                card_url=reverse("ratings:export_card", args=[study.slug, table]),
            )
            for table, title, description in EXPORT_TABLES
        )
    except NoReverseMatch:
        return ()


def _votes_csv_link(study: Study) -> str | None:
    """Return the long-form votes CSV of the first export, for as long as it is there."""
    try:
        return reverse("ratings:export_votes_csv", args=[study.slug])
    except NoReverseMatch:
        return None


@login_required
@require_GET
def study_list(request: HttpRequest) -> HttpResponse:
    """List the studies whose results the user may read, with their latest scores."""
    studies = studies_for_researcher(user=request.user)
    if not request.user.is_superuser and not studies.exists():
        raise PermissionDenied("Study results are for researchers granted a study.")
    return render(
        request,
        "ratings/dashboard_study_list.html",
        {"rows": studies_with_latest_run(studies=studies)},
    )


@login_required
@require_GET
def dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    """Show a study's latest scores per cohort, criterion and variant pair, with drill-down."""
    study = _research_study(request, slug)
    cohort_path = request.GET.get("cohort") or None
    try:
        board = dashboard_for_study(study=study, cohort_path=cohort_path)
    except CohortNotInStudy as exc:
        raise Http404("This study has no such cohort.") from exc
    exports = _export_links(study)
    summary = (
        summary_for_run(study=study, run=board.run, thresholds=board.thresholds)
        if cohort_path is None
        else None
    )
    queued_at = recompute_queued_since(study=study)
    return render(
        request,
        "ratings/dashboard.html",
        {
            "study": study,
            "board": board,
            "summary": summary,
            "recompute_queued_at": queued_at,
            # The page looks again by itself while a recompute is queued or running.
            "refresh_seconds": 3 if queued_at or board.running else None,
            "exports": exports,
            "fallback_export": None if exports else _votes_csv_link(study),
        },
    )


@login_required
@require_POST
def dashboard_recompute(request: HttpRequest, slug: str) -> HttpResponseRedirect:
    """Enqueue a recompute of the study's scores and go back to the dashboard."""
    study = _research_study(request, slug)
    now = timezone.now()
    Study.objects.filter(pk=study.pk).update(scores_requested_at=now)
    scores_compute_task.delay(study.pk)
    asked_at = now.strftime("%H:%M:%S")
    messages.success(
        request,
        f"Recomputing the scores, asked at {asked_at} UTC. This page shows the new scores when "
        "they are done; until then it shows the latest finished ones.",
    )
    target = reverse("ratings:dashboard", args=[study.slug])
    cohort_path = request.POST.get("cohort")
    if cohort_path:
        # Back to the level the button was pressed on; the value only goes into a query string.
        target += "?" + urlencode({"cohort": cohort_path})
    return redirect(target)


@login_required
@require_GET
def factions(request: HttpRequest, slug: str, score_id: int) -> HttpResponse:
    """Show who is on each side of a split (or dissent) row, and what divides them."""
    study = _research_study(request, slug)
    score = get_object_or_404(
        Score.objects.select_related("run__study", "cohort", "criterion", "variant_a", "variant_b"),
        pk=score_id,
        run__study=study,
    )
    try:
        panel = faction_panel(score=score)
    except ScoreWithoutFactions as exc:
        raise Http404("This row has no factions.") from exc
    return render(request, "ratings/factions.html", {"study": study, "panel": panel})
