"""A real worker on Redis killed with SIGKILL mid-task: after a restart every image is
rendered, and rendered exactly once."""

from __future__ import annotations

import os
import random
import re
import signal
import time
from pathlib import Path

import pytest

from generation.batch_files import PromptRow
from generation.image_files import content_name
from generation.models import Image, ModelVariant
from generation.services import batch_queue
from ratings.models import Pair

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Short limits so the broker hands the killed task out again within the test; the visibility
# timeout still exceeds the hard limit, as the settings check demands.
CRASH_LIMITS = {
    "POLYPHONY_TASK_SOFT_TIME_LIMIT": "20",
    "POLYPHONY_TASK_HARD_TIME_LIMIT": "25",
    "POLYPHONY_BROKER_VISIBILITY_TIMEOUT": "30",
}


def _wait(condition, *, timeout_s: float, what: str, logs=()) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    tails = "\n".join(path.read_text()[-2000:] for path in logs)
    pytest.fail(f"Timed out waiting for {what}.\n{tails}")


def _killed_mid_render(study, variants, worker_factory, *, seed: int, **env: str):
    """Queue one prompt on a slow worker, SIGKILL its process group mid-render.

    Return (the batch, its images, the killed worker's log). Slow enough (about a second per
    image here) to be killed inside the pipeline call.
    """
    ModelVariant.objects.filter(pk__in=[v.pk for v in variants]).update(steps=40)
    worker, log = worker_factory(**env)
    batch = batch_queue(
        study=study,
        rows=[PromptRow(1, "a masquerade dancer at a festival", "nigeria", "festivals", (seed,))],
        variants=variants,
        rng=random.Random(seed),
    )
    images = Image.objects.filter(prompt__batch=batch)
    _wait(
        lambda: images.filter(status=Image.Status.RUNNING).exists(),
        timeout_s=120,
        what="the worker to claim the images",
        logs=[log],
    )
    time.sleep(0.5)  # inside the pipeline call now
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    assert images.filter(status=Image.Status.RUNNING).exists(), "killed too late to test"
    return batch, images, log


def _media_is_whole(media_root, images) -> None:
    """Every stored file is referenced, complete and named by the SHA-256 of its bytes; no
    partial file is left where a killed worker was writing."""
    stored = {path.name: path for path in (media_root / "images").iterdir()}
    referenced = set()
    for image in images.all():
        referenced |= {Path(image.file.name).name, Path(image.preview.name).name} - {""}
    assert set(stored) == referenced  # no orphan, no partial `.partial-*` file
    for name, path in stored.items():
        data = path.read_bytes()
        assert data, name
        assert name == content_name(data, path.suffix), name


def test_image_is_rendered_exactly_once_after_its_worker_is_killed(
    study, variants, worker_factory, media_root
):
    batch, images, first_log = _killed_mid_render(
        study, variants, worker_factory, seed=77, **CRASH_LIMITS
    )
    delivered_at = images.order_by("started_at").first().started_at.timestamp()

    # The broker gives an unacknowledged task back once its visibility timeout has passed; a
    # worker that starts after that picks it up (the same task id takes its claim back).
    time.sleep(max(0.0, delivered_at + 31 - time.time()))
    second, second_log = worker_factory(**CRASH_LIMITS)
    _wait(
        lambda: not images.exclude(status=Image.Status.DONE).exists(),
        timeout_s=180,
        what="the restarted worker to finish",
        logs=[first_log, second_log],
    )

    logs = first_log.read_text() + second_log.read_text()
    for image in images:
        assert len(re.findall(rf"Rendered image {image.pk}\b", logs)) == 1
    assert max(images.values_list("attempts", flat=True)) == 2
    # The task forms the pair just after it marks its last image done.
    _wait(
        lambda: Pair.objects.filter(prompt__batch=batch).exists(),
        timeout_s=30,
        what="the pair to be formed",
        logs=[first_log, second_log],
    )
    assert Pair.objects.filter(prompt__batch=batch).count() == 1
    assert second.poll() is None  # the restarted worker is healthy
    _media_is_whole(media_root, images)


def test_a_worker_main_process_killed_mid_render_is_recovered_by_its_lease(
    study, variants, worker_factory, media_root
):
    # The worker's whole process group (main and pool child) dies mid-render; the message
    # stays unacknowledged in Redis for the visibility timeout (ten minutes here). The lapsed
    # lease, not the broker, brings the images back: the requeue (beat's task, called here
    # as beat would) sends them again and a second worker renders each once.
    limits = {**CRASH_LIMITS, "POLYPHONY_BROKER_VISIBILITY_TIMEOUT": "600"}
    lease = {"POLYPHONY_RENDER_LEASE_SECONDS": "6"}
    batch, images, first_log = _killed_mid_render(
        study, variants, worker_factory, seed=78, **limits, **lease
    )
    killed_at = time.monotonic()

    second, second_log = worker_factory(**limits, **lease)
    from django.test import override_settings

    from generation.services import images_requeue_stuck

    def recovered() -> bool:
        with override_settings(POLYPHONY_RENDER_LEASE_SECONDS=6):
            images_requeue_stuck()
        done = not images.exclude(status=Image.Status.DONE).exists()
        return done and Pair.objects.filter(prompt__batch=batch).exists()

    _wait(recovered, timeout_s=150, what="the lease to bring the images back", logs=[second_log])
    assert time.monotonic() - killed_at < 150  # far inside the visibility timeout
    logs = first_log.read_text() + second_log.read_text()
    for image in images:
        assert len(re.findall(rf"Rendered image {image.pk}\b", logs)) == 1
    assert Pair.objects.filter(prompt__batch=batch).count() == 1
    assert second.poll() is None
    _media_is_whole(media_root, images)
