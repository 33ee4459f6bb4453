"""Shared helpers of the ratings views."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.crypto import constant_time_compare

from ratings import selectors
from ratings.models import Study
from ratings.selectors import RatingState

# The only backend raters sign in with (see views.entry); other sessions take Django's path.
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def active_study(slug: str) -> Study:
    return get_object_or_404(Study, slug=slug, active=True)


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
    state = selectors.rating_state(user_id=claim[0], study_slug=slug) if claim else None
    if state is not None and _session_verified(state, claim[1]):
        return state
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if state is None or state.user_id != user.pk:
        state = selectors.rating_state(user_id=user.pk, study_slug=slug)
    if state is None:
        raise Http404("No such study.")
    return state
