"""Celery tasks of the results (routed to the `default` queue): thin service wrappers.

The task keeps its first name, `ratings.tasks.scores_compute_task`: queued messages and the
routes in the settings use it.
"""

from __future__ import annotations

from celery import shared_task
from django.utils.dateparse import parse_datetime

from ratings.models import Study
from ratings.results.services import scores_compute, scores_refresh


@shared_task(name="ratings.tasks.scores_compute_task")
def scores_compute_task(
    study_id: int,
    requested_at: str | None = None,
    include_flagged: bool = False,
    seed: int = 0,
) -> int | None:
    """Recompute a study's scores; return the new run's id, or None if nothing was done.

    With `requested_at` (set by the debounced recomputation after new votes) the work is
    skipped when a run that started after that moment already covers those votes; without
    it (on demand) the scores are always recomputed.
    """
    study = Study.objects.filter(pk=study_id).first()
    if study is None:
        return None
    if requested_at is not None:
        run = scores_refresh(study=study, requested_at=parse_datetime(requested_at))
    else:
        run = scores_compute(study=study, include_flagged=include_flagged, seed=seed)
    return run.pk if run is not None else None
