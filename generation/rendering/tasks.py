"""The render task on the `gpu` queue, and its enqueueing: load rows by id, call a service.

The task keeps its first name, `generation.tasks.render_prompt`: queued messages, the routes in
the settings and running workers use it.
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from generation.models import Image, Prompt
from generation.rendering import services

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


def render_tasks_enqueue(*, prompt: Prompt, seeds: Sequence[int] | None = None) -> int:
    """Enqueue render tasks, on commit, for a prompt's queued seeds in chunks; return how many."""
    if seeds is None:
        seeds = prompt.images.filter(status=Image.Status.QUEUED).values_list("seed", flat=True)
    ordered = sorted(set(seeds))
    size = settings.POLYPHONY_SEEDS_PER_TASK
    chunks = [ordered[start : start + size] for start in range(0, len(ordered), size)]
    # When its message was sent: images whose message the broker lost are sent again (see
    # generation.services.images_requeue_stuck).
    Image.objects.filter(prompt=prompt, status=Image.Status.QUEUED, seed__in=ordered).update(
        enqueued_at=timezone.now()
    )
    for chunk in chunks:
        render_prompt.delay_on_commit(prompt.pk, chunk)
    return len(chunks)
