"""Celery tasks of a rater's entry (routed to the `default` queue; beat runs them)."""

from __future__ import annotations

from celery import shared_task

from ratings.entry.services import entry_windows_purge
from ratings.entry.signup import signup_requests_purge


@shared_task(name="ratings.entry.tasks.entry_records_purge_task")
def entry_records_purge_task() -> int:
    """Delete the rate limits' counts of windows that have passed and the sign-up links that
    have expired (hashed addresses and emails among them); return how many rows went."""
    return entry_windows_purge() + signup_requests_purge()
