"""The rating page: a blind pair, its questions, the vote, a skip."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from ratings import selectors, services
from ratings.models import Rater, Study
from ratings.views.common import active_study


def _ready_to_rate(*, study: Study, rater: Rater) -> bool:
    # The same steps the start page leads through; the optional questions are not required.
    consented = rater.participations.filter(study=study, consented_at__isnull=False).exists()
    return consented and selectors.rater_has_study_cohort(study=study, rater=rater)


def _refused(
    request: HttpRequest, study: Study, refusal: services.VoteRefused, heading: str
) -> HttpResponse:
    return render(
        request,
        "ratings/vote_refused.html",
        {"study": study, "reason": refusal.reason, "heading": heading},
        status=refusal.status,
    )


@login_required
@never_cache
def rate(request: HttpRequest, slug: str) -> HttpResponse:
    """Show the rater's current pair, with the next one's images fetched ahead."""
    study = active_study(slug)
    rater = services.rater_ensure(user=request.user)
    if not _ready_to_rate(study=study, rater=rater):
        return redirect("ratings:start", slug=study.slug)
    assignment = services.assignment_for_rater(study=study, rater=rater)
    progress = selectors.rater_progress(study=study, rater=rater)
    if assignment is None:
        if progress.quota_met:
            return redirect("ratings:complete", slug=study.slug)
        return render(request, "ratings/no_work.html", {"study": study, "progress": progress})
    upcoming = services.assignment_reserve_next(study=study, rater=rater, current=assignment)
    context = selectors.rating_page_context(assignment=assignment, rater=rater, upcoming=upcoming)
    return render(
        request,
        "ratings/rate.html",
        {"study": study, "progress": progress, **context},
    )


@login_required
@require_POST
def vote(request: HttpRequest, slug: str) -> HttpResponse:
    # A study closed while its rater was on a pair gets a reason (409), not a 404.
    study = get_object_or_404(Study, slug=slug)
    rater = services.rater_ensure(user=request.user)
    answers = {
        key.removeprefix("answer_"): value
        for key, value in request.POST.items()
        if key.startswith("answer_")
    }
    try:
        services.vote_cast(
            rater=rater,
            assignment_id=request.POST.get("assignment", ""),
            answers=answers,
            comment=request.POST.get("comment", ""),
        )
    except services.VoteRefused as refusal:
        return _refused(request, study, refusal, gettext("Your vote was not stored"))
    return redirect("ratings:rate", slug=study.slug)


@login_required
@require_POST
def skip(request: HttpRequest, slug: str) -> HttpResponse:
    """Skip the pair with the rater's reason and go on to the next one."""
    study = get_object_or_404(Study, slug=slug)
    rater = services.rater_ensure(user=request.user)
    try:
        services.assignment_skip(
            rater=rater,
            assignment_id=request.POST.get("assignment", ""),
            reason=request.POST.get("reason", ""),
            note=request.POST.get("note", ""),
        )
    except services.VoteRefused as refusal:
        return _refused(request, study, refusal, gettext("The pair was not skipped"))
    return redirect("ratings:rate", slug=study.slug)
