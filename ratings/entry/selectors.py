"""Selectors of entry: where a rater stands in a study's steps, and whether an email is taken."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Q

from ratings.cohorts import cohort_path_contains
from ratings.models import Rater, Study


def rater_has_study_cohort(*, study: Study, rater: Rater) -> bool:
    """Tell whether the rater holds one of the study's cohorts, or a cohort below one.

    A rater of india:tamil is Indian: in a study of India (without Tamil) they rate India's
    pairs. A proposal is not a cohort yet.
    """
    study_paths = list(study.cohorts.values_list("path", flat=True))
    return any(
        cohort_path_contains(study_path, path)
        for path in rater.cohort_paths()
        for study_path in study_paths
    )


def return_route(*, study: Study, user) -> str:
    """Return how a rater who stops comes back, for the Stop pages to say so truthfully.

    'panel': a rater from a crowd-work panel has no password; the panel's link brings them back.
    'invite': a rater with an account in a study that has invite links signs in again, or
    opens the invite again. 'account': a signed-up rater signs in again.
    """
    rater = getattr(user, "rater", None) if user is not None and user.is_authenticated else None
    if rater is not None and rater.panel_id and not user.has_usable_password():
        return "panel"
    if study.invites.exists():
        return "invite"
    return "account"


def email_has_account(*, email: str) -> bool:
    """Tell whether an account signs in with this email, whatever its letter case.

    A signed-up user's name is their email in lower case; an admin may have given another
    user the address, so both are looked at, as `rater_sign_up` does.
    """
    return (
        get_user_model()
        .objects.filter(Q(email__iexact=email) | Q(username__iexact=email.lower()))
        .exists()
    )
