"""Signal receivers of the ratings app."""

from __future__ import annotations

from django.db.models.signals import m2m_changed
from django.dispatch import receiver

from ratings import services
from ratings.models import Cohort, Study


@receiver(m2m_changed, sender=Study.cohorts.through)
def study_cohorts_added(
    sender, instance, action: str, reverse: bool, pk_set: set[int] | None, **kwargs
) -> None:
    """Give a study's existing pairs coverage rows for a cohort added to it.

    A receiver rather than a call in one service: cohorts join a study from the admin form,
    from an accepted proposal and from code, and every way must leave the rows complete.
    """
    if action != "post_add" or not pk_set:
        return
    if reverse:
        added = [(study, instance) for study in Study.objects.filter(pk__in=pk_set)]
    else:
        added = [(instance, cohort) for cohort in Cohort.objects.filter(pk__in=pk_set)]
    for study, cohort in added:
        services.pair_coverage_backfill(study=study, cohort=cohort)
