"""Render leases: an image whose worker stopped renewing its claim goes back to the queue,
whatever stopped it; a queued image whose message the broker lost is sent again; only the
claim's holder stores a render (issue 14)."""

from __future__ import annotations

import base64
import io
import json
import random
import threading
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from generation.batch_files import PromptRow
from generation.broker import RENDER_QUEUE, render_messages_waiting
from generation.models import Image, PromptBatch
from generation.pipeline import Renderer
from generation.rendering.services import images_claim, prompt_render
from generation.services import batch_queue, images_requeue_stuck


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(device="cpu")


@pytest.fixture
def broker():
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()


def _queue(study, variants, seeds, django_capture_on_commit_callbacks):
    rows = [PromptRow(1, "a lantern festival by the river", "india", "festivals", tuple(seeds))]
    with django_capture_on_commit_callbacks(execute=False):
        batch = batch_queue(study=study, rows=rows, variants=variants, rng=random.Random(0))
    return batch.prompts.get()


def test_a_running_image_whose_lease_lapsed_returns_to_the_queue_at_once(
    study, variants, django_capture_on_commit_callbacks
):
    prompt = _queue(study, variants, [1, 2], django_capture_on_commit_callbacks)
    dead = prompt.images.filter(seed=1)
    live = prompt.images.filter(seed=2)
    images_claim(image_ids=list(dead.values_list("id", flat=True)), claim="dead-task")
    images_claim(image_ids=list(live.values_list("id", flat=True)), claim="live-task")
    # Started a moment ago (far inside the hard time limit), but no longer renewed.
    dead.update(lease_until=timezone.now() - timedelta(seconds=1))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert images_requeue_stuck() == 2
    assert set(dead.values_list("status", "claimed_by", "lease_until")) == {("queued", "", None)}
    assert set(live.values_list("status", "claimed_by")) == {("running", "live-task")}
    assert len(callbacks) == 1


def test_a_render_whose_claim_lapsed_and_was_taken_stores_nothing(
    study, variants, renderer, django_capture_on_commit_callbacks
):
    prompt = _queue(study, variants, [3], django_capture_on_commit_callbacks)
    ids = list(prompt.images.values_list("id", flat=True))
    images_claim(image_ids=ids, claim="slow-task")
    prompt.images.update(lease_until=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=False):
        images_requeue_stuck()
    # Another worker takes the images and renders them; the slow one wakes up afterwards.
    assert prompt_render(prompt_id=prompt.pk, renderer=renderer, claim="new-task") == 2
    stored = dict(prompt.images.values_list("id", "file"))
    assert prompt_render(prompt_id=prompt.pk, renderer=renderer, claim="slow-task") == 0
    assert dict(prompt.images.values_list("id", "file")) == stored
    assert set(prompt.images.values_list("status", "attempts")) == {("done", 2)}


class SlowRenderer:
    """A renderer that takes `seconds` per call, and notes the leases while it renders."""

    def __init__(self, renderer: Renderer, seconds: float, image_ids) -> None:
        self.renderer = renderer
        self.seconds = seconds
        self.image_ids = image_ids
        self.leases = []

    @property
    def device(self) -> str:
        return self.renderer.device

    def render(self, spec, prompt, seeds):
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            leases = Image.objects.filter(
                pk__in=self.image_ids, status=Image.Status.RUNNING
            ).values_list("lease_until", flat=True)
            self.leases.append(min(leases))
            time.sleep(0.5)
        return self.renderer.render(spec, prompt, seeds)


@pytest.mark.django_db(transaction=True)
def test_the_worker_renews_its_lease_while_it_renders(study, variants, renderer, settings):
    settings.POLYPHONY_RENDER_LEASE_SECONDS = 3
    rows = [PromptRow(1, "a lantern festival by the river", "india", "festivals", (4,))]
    batch = batch_queue(study=study, rows=rows, variants=variants, rng=random.Random(0))
    prompt = batch.prompts.get()
    ids = list(prompt.images.values_list("id", flat=True))
    slow = SlowRenderer(renderer, seconds=4.5, image_ids=ids)
    assert prompt_render(prompt_id=prompt.pk, renderer=slow, claim="task-1") == 2
    # Renewed while each call ran longer than the lease: it never lapsed.
    assert slow.leases[-1] > slow.leases[0]
    assert all(
        later >= earlier for earlier, later in zip(slow.leases[:-1], slow.leases[1:], strict=True)
    )
    assert set(prompt.images.values_list("status", "lease_until")) == {("done", None)}


def test_a_queued_image_whose_message_was_lost_is_sent_again(
    study, variants, broker, settings, django_capture_on_commit_callbacks
):
    prompt = _queue(study, variants, [5], django_capture_on_commit_callbacks)
    batch = prompt.batch
    assert batch.status == PromptBatch.Status.QUEUED
    long_ago = timezone.now() - timedelta(seconds=settings.POLYPHONY_REQUEUE_QUEUED_SECONDS + 5)
    prompt.images.update(enqueued_at=long_ago)

    # A message waits on the render queue: it may be this image's, so nothing is sent.
    broker.lpush(RENDER_QUEUE, b"{}")
    assert render_messages_waiting() == 1
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert images_requeue_stuck() == 0
    assert callbacks == []

    # The broker restarted empty: the image is sent again, and the time of sending noted.
    broker.flushdb()
    assert render_messages_waiting() == 0
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert images_requeue_stuck() == 2
    assert len(callbacks) == 1
    assert all(sent > long_ago for sent in prompt.images.values_list("enqueued_at", flat=True))
    # Recently sent: not again at the next check.
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert images_requeue_stuck() == 0


def test_a_queued_image_sent_recently_is_left_alone(
    study, variants, broker, django_capture_on_commit_callbacks
):
    prompt = _queue(study, variants, [6], django_capture_on_commit_callbacks)
    assert all(prompt.images.values_list("enqueued_at", flat=True))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert images_requeue_stuck() == 0
    assert callbacks == []


@pytest.mark.django_db(transaction=True)
def test_two_requeues_at_once_release_a_lapsed_image_once(study, variants):
    rows = [PromptRow(1, "a lantern festival by the river", "india", "festivals", (7,))]
    batch = batch_queue(study=study, rows=rows, variants=variants, rng=random.Random(0))
    prompt = batch.prompts.get()
    images_claim(image_ids=list(prompt.images.values_list("id", flat=True)), claim="dead")
    prompt.images.update(lease_until=timezone.now() - timedelta(seconds=1))
    counts = []

    def requeue():
        from django.db import connection

        try:
            counts.append(images_requeue_stuck())
        finally:
            connection.close()

    threads = [threading.Thread(target=requeue) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(counts)[-1] <= 2 and sum(counts) == 2


@pytest.mark.django_db(transaction=True)
def test_render_enqueue_sends_a_batchs_queued_images_to_the_workers_again(study, variants, broker):
    rows = [PromptRow(1, "a harvest dance", "india", "festivals", (7, 8))]
    batch = batch_queue(study=study, rows=rows, variants=variants, rng=random.Random(0))
    assert render_messages_waiting() == 1  # sent on commit: one task for the two seeds
    broker.flushdb()  # the broker restarted without persistence: the message is gone
    Image.objects.filter(prompt__batch=batch, seed=8).update(status=Image.Status.FAILED)

    out = io.StringIO()
    call_command("render", batch=batch.pk, enqueue=True, stdout=out)
    assert f"Sent 2 queued images of batch {batch.pk}" in out.getvalue()
    # One message again, for the queued seed only (failed images wait for a retry).
    assert render_messages_waiting() == 1
    body = json.loads(broker.lindex(RENDER_QUEUE, 0))
    assert base64.b64decode(body["body"]).startswith(
        json.dumps([[batch.prompts.get().pk, [7]]]).encode()[:-1]
    )

    PromptBatch.objects.filter(pk=batch.pk).update(status=PromptBatch.Status.CANCELLED)
    with pytest.raises(CommandError, match="was cancelled"):
        call_command("render", batch=batch.pk, enqueue=True, stdout=io.StringIO())
