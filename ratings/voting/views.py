"""The rating page: a blind pair, its questions, the vote, a skip.

The page is served once; after that rate.js posts each vote (or skip) with fetch and gets the
next pair back as JSON, whose images it fetched ahead, so one request carries one vote. Without
JavaScript the same forms post normally and are answered with a redirect to the page.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from ratings.assignment.services import rating_next
from ratings.assignment.state import RatingNext, RatingState, rating_state
from ratings.voting import selectors, services
from ratings.voting.images import impression_image

# The only backend raters sign in with (see ratings.entry.views); other sessions take Django's
# path.
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def _session_claim(request: HttpRequest) -> tuple[int, str] | None:
    """Return the user id and auth hash the session claims under the model backend, if any."""
    session = request.session
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend = session[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return None
    if backend != MODEL_BACKEND or backend not in settings.AUTHENTICATION_BACKENDS:
        return None
    return user_id, session.get(HASH_SESSION_KEY) or ""


def _session_verified(state: RatingState, session_hash: str) -> bool:
    # What django.contrib.auth.get_user checks, against the user row the state read brought:
    # an active user whose password hash still signs the session (a password change ends it).
    if not state.user_active or not session_hash:
        return False
    user = get_user_model()(pk=state.user_id, password=state.password)
    return constant_time_compare(session_hash, user.get_session_auth_hash())


def rating_state_for_request(request: HttpRequest, slug: str) -> RatingState | HttpResponse:
    """Return the signed-in rater's RatingState in the study, or the response that replaces it.

    The session's user is checked against the user row the one state statement reads, the way
    django.contrib.auth does it, so a rating request does not read the user a second time.
    Anything unusual (no claim, another backend, a hash signed with an old secret key, a
    mismatch) takes Django's own path through `request.user`, which flushes a bad session;
    an anonymous visitor goes to sign in. Raises Http404 for an unknown study.
    """
    claim = _session_claim(request)
    state = rating_state(user_id=claim[0], study_slug=slug) if claim else None
    if state is not None and _session_verified(state, claim[1]):
        return state
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if state is None or state.user_id != user.pk:
        state = rating_state(user_id=user.pk, study_slug=slug)
    if state is None:
        raise Http404("No such study.")
    return state


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _refused(
    request: HttpRequest, state: RatingState, refusal: services.VoteRefused, heading: str
) -> HttpResponse:
    if _wants_json(request):
        response = JsonResponse(
            {"error": refusal.reason, "heading": heading}, status=refusal.status
        )
        response["Cache-Control"] = "no-store"
        return response
    return render(
        request,
        "ratings/vote_refused.html",
        {"study": state.study, "reason": refusal.reason, "heading": heading},
        status=refusal.status,
    )


def _answered(request: HttpRequest, state: RatingState, following: RatingNext) -> HttpResponse:
    """Answer a vote or skip: the next pair as JSON for rate.js, else a redirect to the page."""
    slug = state.study.slug
    if not _wants_json(request):
        return redirect("ratings:rate", slug=slug)
    # Done: the completion page. Nothing left for now: the page, which says so.
    redirect_to = reverse("ratings:complete" if following.done else "ratings:rate", args=[slug])
    payload = selectors.rating_payload(state=state, following=following, redirect_to=redirect_to)
    response = JsonResponse(payload)
    response["Cache-Control"] = "no-store"
    return response


@never_cache
def rate(request: HttpRequest, slug: str) -> HttpResponse:
    """Show the rater's current pair, with the next one's images fetched ahead."""
    state = rating_state_for_request(request, slug)
    if isinstance(state, HttpResponse):
        return state
    if not state.study.active:
        raise Http404("This study is closed.")
    if not state.ready:
        return redirect("ratings:start", slug=slug)
    following = rating_next(state=state)
    if following.current is None:
        if following.done:
            return redirect("ratings:complete", slug=slug)
        return render(
            request,
            "ratings/no_work.html",
            {
                "study": state.study,
                "progress": following.progress,
                "rendering": selectors.pairs_being_made(study=state.study),
            },
        )
    context = selectors.rating_page_context(state=state, following=following)
    return render(request, "ratings/rate.html", {"study": state.study, **context})


@require_POST
def vote(request: HttpRequest, slug: str) -> HttpResponse:
    """Store a vote; answer with the next pair (JSON) or a redirect to the page (no script).

    A study closed while its rater was on a pair gets a reason (409), not a 404.
    """
    state = rating_state_for_request(request, slug)
    if isinstance(state, HttpResponse):
        return state
    answers = {
        key.removeprefix("answer_"): value
        for key, value in request.POST.items()
        if key.startswith("answer_")
    }
    try:
        following = services.vote_submit(
            state=state,
            assignment_id=request.POST.get("assignment", ""),
            answers=answers,
            comment=request.POST.get("comment", ""),
        )
    except services.VoteRefused as refusal:
        return _refused(request, state, refusal, gettext("Your vote was not stored"))
    return _answered(request, state, following)


@require_POST
def skip(request: HttpRequest, slug: str) -> HttpResponse:
    """Skip the pair with the rater's reason and go on to the next one."""
    state = rating_state_for_request(request, slug)
    if isinstance(state, HttpResponse):
        return state
    try:
        following = services.skip_submit(
            state=state,
            assignment_id=request.POST.get("assignment", ""),
            reason=request.POST.get("reason", ""),
            note=request.POST.get("note", ""),
        )
    except services.VoteRefused as refusal:
        return _refused(request, state, refusal, gettext("The pair was not skipped"))
    return _answered(request, state, following)


@require_GET
def image(request: HttpRequest, slug: str, token: str) -> HttpResponse:
    """Send one image of an impression to the rater it was served to; 404 to anyone else.

    No Last-Modified, no ETag, and conditional request headers are not read: every request
    for an image gets the same answer, the same headers for both images of a pair, and the
    same length (see ratings.voting.images).
    """
    if not request.user.is_authenticated:
        raise Http404("No such image.")
    found = impression_image(token=token, user_id=request.user.pk, slug=slug)
    if found is None:
        raise Http404("No such image.")
    data, content_type = found
    response = HttpResponse(data, content_type=content_type)
    response["Cache-Control"] = "private, max-age=86400"
    return response
