"""Signal receivers of the ratings app."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import m2m_changed, post_save
from django.dispatch import receiver

from ratings.assignment.coverage import pair_coverage_backfill
from ratings.models import Cohort, Study, Vote


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
        pair_coverage_backfill(study=study, cohort=cohort)


@receiver(post_save, sender=Vote)
def vote_saved_scores_stale(sender, instance: Vote, created: bool, raw: bool = False, **kwargs):
    """Mark the study's scores stale once the new vote commits: no query, one per process.

    Every kind of vote counts: an attention check can flag its rater, which changes the scores.
    The import runs lazily so that a process that never sees a vote never loads the scoring.
    """
    if not created or raw:
        return
    study_id = instance.study_id

    def mark_stale() -> None:
        from ratings.results.stale import scores_mark_stale

        scores_mark_stale(study_id=study_id)

    transaction.on_commit(mark_stale)
