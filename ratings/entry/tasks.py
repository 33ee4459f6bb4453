"""Celery tasks of a rater's entry (routed to the `default` queue by beat's schedule)."""

from __future__ import annotations

from celery import shared_task

from ratings.entry.services import entry_windows_purge


@shared_task(name="ratings.entry.tasks.entry_windows_purge_task")
def entry_windows_purge_task() -> int:
    """Delete the rate limits' counts of windows that have passed; return how many went."""
    return entry_windows_purge()
