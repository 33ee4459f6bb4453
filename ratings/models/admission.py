"""Records of a rater's entry kept for a while: counts of entry events in fixed time windows
(the rate limits, shared by every process) and the sign-up links sent by mail."""

from __future__ import annotations

from django.db import models


class EntryWindow(models.Model):
    """How many events of one kind (a key) fell in one fixed window of time.

    Counted with one atomic upsert, so every web process and every server counts together
    whatever cache is configured. A key never holds a client address in clear, only a keyed
    hash; rows are purged once their window has passed (`entry_records_purge`).
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


class SignUpRequest(models.Model):
    """A sign-up link sent by mail: an opaque token (kept only as its SHA-256), the address it
    was sent to and the page to go on to, until it expires.

    The link names no address, so neither access logs nor a forwarded mail show whose it is.
    Rows are purged once expired (`entry_records_purge`).
    """

    token_digest = models.CharField(max_length=64, unique=True)
    email = models.EmailField(max_length=254)
    next_url = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"sign-up request {self.pk}"
