"""Celery tasks on the `gpu` queue: thin wrappers that load rows by id and call a service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from generation import services

# One renderer per worker process, made on its first task: the pipeline stays loaded between
# tasks, and the parent process never touches the GPU.
_renderer = None


def renderer_for_worker():
    """Return this process's renderer, creating it on first use."""
    global _renderer
    if _renderer is None:
        from generation.pipeline import Renderer

        _renderer = Renderer(device=settings.POLYPHONY_RENDER_DEVICE or None)
    return _renderer


@shared_task(
    bind=True,
    name="generation.tasks.render_prompt",
    acks_late=True,
    autoretry_for=services.TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def render_prompt(self, prompt_id: int, seeds: list[int] | None = None) -> int:
    """Render one prompt's queued images of these seeds with every variant; form its pairs."""
    return services.prompt_render(
        prompt_id=prompt_id,
        seeds=seeds,
        renderer=renderer_for_worker(),
        # The task id survives redelivery and retries: the same task may take its claim back.
        claim=self.request.id or "",
        worker=self.request.hostname or "",
    )


@shared_task(name="generation.tasks.requeue_stuck_images")
def requeue_stuck_images() -> int:
    """Return images whose worker died mid-render to the queue (run periodically by beat)."""
    return services.images_requeue_stuck()
