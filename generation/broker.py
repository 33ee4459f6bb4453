"""What the broker holds: how many render messages wait on the `gpu` queue.

Read-only, and a count only: the requeue of stuck images sends a lost image's message again
only while none waits (a waiting one may be that image's).
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

RENDER_QUEUE = "gpu"


def render_messages_waiting() -> int | None:
    """Return how many messages wait on the render queue; None when the broker cannot say."""
    url = str(settings.CELERY_BROKER_URL)
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            client = redis.Redis.from_url(url, socket_timeout=5)
            # kombu's Redis transport keeps a queue as a list, one per priority step.
            names = [RENDER_QUEUE, *client.scan_iter(match=f"{RENDER_QUEUE}\x06\x16*")]
            return sum(client.llen(name) for name in names)
        if url.startswith("filesystem://"):
            folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
            return sum(1 for _ in folder.glob(f"*.{RENDER_QUEUE}.msg"))
    except Exception as exc:  # the broker away: the requeue goes by age alone
        logger.warning("Could not count the waiting render messages: %s", exc)
    return None
