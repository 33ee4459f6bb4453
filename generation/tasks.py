"""Celery tasks of the generation app run by beat on the `default` queue: thin wrappers.

The render task itself is generation.rendering.tasks.render_prompt (the `gpu` queue).
"""

from __future__ import annotations

from celery import shared_task

from generation import services


@shared_task(name="generation.tasks.requeue_stuck_images")
def requeue_stuck_images() -> int:
    """Return images whose worker died mid-render to the queue (run periodically by beat)."""
    return services.images_requeue_stuck()
