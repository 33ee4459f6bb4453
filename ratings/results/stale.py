"""Staleness: new votes schedule one recomputation of a study's scores, debounced.

New votes mark a study's scores stale, which schedules one debounced recomputation on the
`default` queue, per study and process.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.utils import timezone

from ratings.results.tasks import scores_compute_task

logger = logging.getLogger(__name__)

_stale_lock = threading.Lock()
# study id -> the monotonic time at which the recomputation already scheduled will start.
_stale_until: dict[int, float] = {}


def scores_mark_stale(*, study_id: int) -> bool:
    """Schedule a recomputation of a study's scores unless one is already waiting to start.

    Called after a vote's commit. The first new vote schedules a recomputation in
    POLYPHONY_SCORES_DEBOUNCE_SECONDS; votes before it starts need nothing more, since it reads
    every vote committed by then. No query: the wait is kept in this process, so each web
    process schedules at most one recomputation per study and interval, and the task skips a
    recomputation that a later run already covers. Returns whether one was scheduled.
    """
    delay = settings.POLYPHONY_SCORES_DEBOUNCE_SECONDS
    now = time.monotonic()
    with _stale_lock:
        if _stale_until.get(study_id, 0.0) > now:
            return False
        _stale_until[study_id] = now + delay
    try:
        scores_compute_task.apply_async(
            args=[study_id], kwargs={"requested_at": timezone.now().isoformat()}, countdown=delay
        )
    except Exception:
        # A vote must never fail because the broker is away; the next vote tries again.
        logger.exception("Could not schedule the scores of study %s", study_id)
        with _stale_lock:
            _stale_until.pop(study_id, None)
        return False
    return True


def scores_stale_forget() -> None:
    """Forget the recomputations this process scheduled (tests start each from a clean slate)."""
    with _stale_lock:
        _stale_until.clear()
