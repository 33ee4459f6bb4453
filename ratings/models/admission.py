"""Counts of entry events in fixed time windows, shared by every process (the rate limits)."""

from __future__ import annotations

from django.db import models


class EntryWindow(models.Model):
    """How many events of one kind (a key) fell in one fixed window of time.

    Counted with one atomic upsert, so every web process and every server counts together
    whatever cache is configured. A key never holds a client address in clear, only a keyed
    hash; rows are purged once their window has passed (`entry_windows_purge`).
    """

    key = models.CharField(max_length=120)
    window_start = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "window_start"], name="entry_window_once"),
        ]

    def __str__(self) -> str:
        return f"{self.key} from {self.window_start:%Y-%m-%d %H:%M}: {self.count}"
