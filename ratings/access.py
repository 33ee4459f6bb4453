"""Who may see a study's results: superusers, and researchers granted that study."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from ratings.models import Study, StudyGrant


def research_allowed(*, user: AbstractBaseUser | AnonymousUser, study: Study) -> bool:
    """Return whether `user` may read `study`'s scores, exports and rater overview."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return StudyGrant.objects.filter(study=study, user=user).exists()


def studies_for_researcher(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Study]:
    """The studies whose results `user` may read."""
    if not user.is_authenticated or not user.is_active:
        return Study.objects.none()
    if user.is_superuser:
        return Study.objects.all()
    return Study.objects.filter(grants__user=user)


def study_grant(*, study: Study, user: AbstractBaseUser, granted_by=None) -> StudyGrant:
    """Give `user` research access to `study` (idempotent)."""
    grant, _ = StudyGrant.objects.get_or_create(
        study=study, user=user, defaults={"granted_by": granted_by}
    )
    return grant
