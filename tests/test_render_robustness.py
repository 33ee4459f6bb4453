"""Rendering survives what GPUs and clusters do: out of memory, lost connections, dead workers."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
import torch
from django.db import OperationalError
from django.utils import timezone

from generation.batch_files import PromptRow
from generation.models import Image
from generation.pipeline import Renderer
from generation.rendering.services import prompt_render
from generation.services import batch_queue, images_requeue_stuck
from ratings.models import Pair


class OutOfMemoryAbove:
    """A renderer whose device call runs out of memory for batches above `limit` seeds."""

    def __init__(self, renderer: Renderer, limit: int) -> None:
        self.renderer = renderer
        self.limit = limit
        self.calls: list[int] = []

    @property
    def device(self) -> str:
        return self.renderer.device

    def render(self, spec, prompt, seeds):
        self.calls.append(len(seeds))
        if len(seeds) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.renderer.render(spec, prompt, seeds)


class FailsOnce:
    """A renderer whose first call loses the database connection, as a failover would."""

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        self.failed = False

    @property
    def device(self) -> str:
        return self.renderer.device

    def render(self, spec, prompt, seeds):
        if not self.failed:
            self.failed = True
            raise OperationalError("server closed the connection unexpectedly")
        return self.renderer.render(spec, prompt, seeds)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(device="cpu")


def _queue(study, variants, seeds, django_capture_on_commit_callbacks):
    rows = [PromptRow(1, "a bowl of hand-pulled noodles", "india", "food", tuple(seeds))]
    with django_capture_on_commit_callbacks(execute=False):
        batch = batch_queue(study=study, rows=rows, variants=variants, rng=random.Random(0))
    return batch.prompts.get()


def test_out_of_memory_halves_the_batch_and_renders_everything(
    study, variants, renderer, django_capture_on_commit_callbacks
):
    prompt = _queue(study, variants, [1, 2, 3, 4], django_capture_on_commit_callbacks)
    device = OutOfMemoryAbove(renderer, limit=1)
    assert prompt_render(prompt_id=prompt.pk, renderer=device, batch_size=4) == 8
    # Per variant: 4 seeds run out, then 2 do, then 1 at a time for the rest.
    assert device.calls == [4, 2, 1, 1, 1, 1] * 2
    assert set(prompt.images.values_list("status", flat=True)) == {Image.Status.DONE}
    assert Pair.objects.filter(prompt=prompt).count() == 4


def test_out_of_memory_at_one_image_fails_the_images_with_the_reason(
    study, variants, renderer, django_capture_on_commit_callbacks
):
    prompt = _queue(study, variants, [1], django_capture_on_commit_callbacks)
    assert prompt_render(prompt_id=prompt.pk, renderer=OutOfMemoryAbove(renderer, 0)) == 0
    errors = set(prompt.images.values_list("error", flat=True))
    assert all("out of memory" in error for error in errors)
    assert set(prompt.images.values_list("status", flat=True)) == {Image.Status.FAILED}


def test_images_a_seed_renders_alone_match_those_it_renders_in_a_halved_batch(
    study, variants, renderer, django_capture_on_commit_callbacks
):
    import numpy as np
    from PIL import Image as PILImage

    alone = _queue(study, variants, [9], django_capture_on_commit_callbacks)
    prompt_render(prompt_id=alone.pk, renderer=renderer, batch_size=1)
    # CPU kernels round a batch a grey level differently from a single image, so the seed's
    # images are compared by pixels, not bytes; a different seed differs by tens of levels.

    def pixels(image: Image) -> np.ndarray:
        with image.file.open("rb") as handle:
            return np.asarray(PILImage.open(handle).convert("RGB"), dtype=np.int16)

    batched = _queue(study, variants, [9, 10, 11], django_capture_on_commit_callbacks)
    prompt_render(prompt_id=batched.pk, renderer=OutOfMemoryAbove(renderer, 2), batch_size=3)
    for variant in variants:
        one = pixels(alone.images.get(variant=variant, seed=9))
        many = pixels(batched.images.get(variant=variant, seed=9))
        assert np.abs(one - many).max() <= 2


def test_a_lost_connection_keeps_the_claim_for_the_retried_task_only(
    study, variants, renderer, django_capture_on_commit_callbacks
):
    prompt = _queue(study, variants, [5], django_capture_on_commit_callbacks)
    with pytest.raises(OperationalError):
        prompt_render(prompt_id=prompt.pk, renderer=FailsOnce(renderer), claim="task-1")
    assert set(prompt.images.values_list("status", "claimed_by")) == {("running", "task-1")}

    # Another task delivered for the same images must not render them...
    assert prompt_render(prompt_id=prompt.pk, renderer=renderer, claim="task-2") == 0
    # ...while the retry of the interrupted task (same id) takes its claim back.
    assert prompt_render(prompt_id=prompt.pk, renderer=renderer, claim="task-1") == 2
    assert list(prompt.images.values_list("status", "attempts").distinct()) == [("done", 2)]


def test_images_stuck_running_past_the_time_limit_return_to_the_queue(
    study, variants, renderer, settings, django_capture_on_commit_callbacks
):
    prompt = _queue(study, variants, [6, 7], django_capture_on_commit_callbacks)
    dead = prompt.images.filter(seed=6)
    dead.update(
        status=Image.Status.RUNNING,
        claimed_by="dead-task",
        started_at=timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 120),
    )
    recent = prompt.images.filter(seed=7)
    recent.update(status=Image.Status.RUNNING, claimed_by="live-task", started_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert images_requeue_stuck() == 2
    assert set(dead.values_list("status", "claimed_by")) == {("queued", "")}
    assert set(recent.values_list("status", flat=True)) == {"running"}
    assert len(callbacks) == 1  # one render task for the prompt's requeued seed
    assert prompt_render(prompt_id=prompt.pk, renderer=renderer, seeds=[6]) == 2
