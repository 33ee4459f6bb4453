"""Researchers' downloads (every table and its card) and the rater overview."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render

from ratings.access import research_allowed
from ratings.exports import raters
from ratings.exports.responses import export_card_response, export_response
from ratings.exports.tables import ExportError, export_check
from ratings.models import Study


def _study_for_research(request: HttpRequest, slug: str) -> Study:
    study = get_object_or_404(Study, slug=slug)
    if not research_allowed(user=request.user, study=study):
        raise PermissionDenied("Exports are for researchers of this study.")
    return study


@login_required
def export_download(request: HttpRequest, slug: str, table: str, fmt: str) -> HttpResponse:
    """Download one of a study's exports (votes_long, votes_wide, scores, splits)."""
    try:
        export_check(table=table, fmt=fmt)
    except ExportError as exc:
        raise Http404(str(exc)) from exc
    return export_response(study=_study_for_research(request, slug), table=table, fmt=fmt)


@login_required
def export_card(request: HttpRequest, slug: str, table: str) -> HttpResponse:
    """Download the dataset card (Markdown) that goes with an export."""
    try:
        export_check(table=table, fmt="csv")
    except ExportError as exc:
        raise Http404(str(exc)) from exc
    return export_card_response(study=_study_for_research(request, slug), table=table)


@login_required
def export_votes_csv(request: HttpRequest, slug: str) -> StreamingHttpResponse:
    """The votes in long form as CSV, at the address the home page has always linked."""
    study = _study_for_research(request, slug)
    response = export_response(study=study, table="votes_long", fmt="csv")
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-votes-long.csv"'
    return response


@login_required
def rater_overview(request: HttpRequest, slug: str) -> HttpResponse:
    """List a study's raters under pseudonyms: votes, checks, time per pair, flag."""
    study = get_object_or_404(Study, slug=slug)
    # A grant, as for the exports: staff status alone opens no study's raters.
    if not research_allowed(user=request.user, study=study):
        raise PermissionDenied("The rater overview is for researchers of this study.")
    sort = request.GET.get("sort", "flagged")
    if sort not in raters.RATER_OVERVIEW_SORTS:
        sort = "flagged"
    rows = raters.rater_overview(study=study, sort=sort)
    return render(
        request,
        "ratings/rater_overview.html",
        {
            "study": study,
            "rows": rows,
            "sort": sort,
            "flagged_count": sum(row.flagged for row in rows),
        },
    )
