"""Pages and downloads for researchers."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render

from ratings import selectors
from ratings.access import research_allowed
from ratings.exports import votes_long_csv
from ratings.models import Study


@login_required
def export_votes_csv(request: HttpRequest, slug: str) -> StreamingHttpResponse:
    study = get_object_or_404(Study, slug=slug)
    if not research_allowed(user=request.user, study=study):
        raise PermissionDenied("Exports are for researchers of this study.")
    response = StreamingHttpResponse(votes_long_csv(study=study), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-votes-long.csv"'
    return response


@login_required
def rater_overview(request: HttpRequest, slug: str) -> HttpResponse:
    """List a study's raters under pseudonyms: votes, checks, time per pair, flag."""
    study = get_object_or_404(Study, slug=slug)
    if not (request.user.is_staff or research_allowed(user=request.user, study=study)):
        raise PermissionDenied("The rater overview is for researchers of this study.")
    sort = request.GET.get("sort", "flagged")
    if sort not in selectors.RATER_OVERVIEW_SORTS:
        sort = "flagged"
    rows = selectors.rater_overview(study=study, sort=sort)
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
