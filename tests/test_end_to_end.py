"""The whole path: a real Celery worker on Redis renders a queued batch, a rater votes through
the web client, and the researcher's CSV export holds the vote."""

from __future__ import annotations

import csv
import io
import random
import re
import time
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from generation.batch_files import PromptRow
from generation.models import Image
from generation.services import batch_queue
from ratings.models import Pair, Vote

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _wait_for_images(batch, worker, log_path: Path, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = set(Image.objects.filter(prompt__batch=batch).values_list("status", flat=True))
        if statuses <= {Image.Status.DONE, Image.Status.FAILED}:
            return
        if worker.poll() is not None:
            pytest.fail(f"The worker exited early:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"Images not rendered in {timeout_s}s:\n{log_path.read_text()[-3000:]}")


def test_worker_renders_a_batch_rater_votes_and_export_holds_the_vote(
    study, variants, rater_tamil, researcher, worker_factory
):
    worker, log_path = worker_factory()
    rows = [
        PromptRow(
            2, "a plate of idli and sambar for breakfast in Tamil Nadu", "india:tamil", "food", None
        ),
        PromptRow(
            3, "a temple courtyard during a festival in South India", "india", "architecture", None
        ),
    ]
    batch = batch_queue(
        study=study, rows=rows, variants=variants, seeds_per_prompt=1, rng=random.Random(1)
    )

    _wait_for_images(batch, worker, log_path)
    images = Image.objects.filter(prompt__batch=batch)
    assert set(images.values_list("status", flat=True)) == {Image.Status.DONE}
    assert images.count() == 4
    assert {image.worker for image in images} != {""}
    # The task forms pairs just after storing its last image: give it that moment.
    deadline = time.monotonic() + 30
    while Pair.objects.filter(prompt__batch=batch).count() < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert Pair.objects.filter(prompt__batch=batch).count() == 2

    rater = Client()
    rater.force_login(rater_tamil.user)
    page = rater.get(reverse("ratings:rate", args=[study.slug])).content.decode()
    image_urls = re.findall(r'<img src="([^"]+)"', page)
    assert len(image_urls) == 2
    for url in image_urls:
        served = rater.get(url)
        assert served.status_code == 200
        data = served.content
        assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"  # the light rendition for raters
        assert served["Content-Type"] == "image/webp"
    assignment = re.search(r'name="assignment" value="([0-9a-f-]+)"', page).group(1)
    response = rater.post(
        reverse("ratings:vote", args=[study.slug]),
        {
            "assignment": assignment,
            "answer_alignment": "1",
            "answer_representation": "1",
            "answer_stereotype": "2",
            "answer_offensiveness": "tie",
        },
    )
    assert response.status_code == 302
    vote = Vote.objects.get(rater=rater_tamil)

    export = Client()
    export.force_login(researcher)
    text = b"".join(
        export.get(reverse("ratings:export_votes_csv", args=[study.slug])).streaming_content
    ).decode()
    rows = [row for row in csv.DictReader(io.StringIO(text)) if row["vote_id"] == str(vote.pk)]
    assert len(rows) == 4
    left = vote.shown_left
    right = "b" if left == "a" else "a"
    assert {row["criterion"]: row["choice"] for row in rows} == {
        "alignment": left,
        "representation": left,
        "stereotype": right,
        "offensiveness": "tie",
    }
    assert {row["variant_a"] for row in rows} == {"tiny-base"}
    assert {row["fingerprint_b"] for row in rows} == {vote.pair.image_b.fingerprint}
