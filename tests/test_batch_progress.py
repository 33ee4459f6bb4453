"""A batch's progress page and API, and cancelling or retrying a batch."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from generation.batch_files import PromptRow
from generation.models import Image, PromptBatch
from generation.rendering.services import batch_refresh_status
from generation.rendering.tasks import render_prompt
from generation.selectors import batch_progress
from generation.services import batch_cancel, batch_queue

FAKE_FILE = "images/rendered-elsewhere.png"


def _batch(study, variants, *, prompts: int = 2, seeds=(11, 12)) -> PromptBatch:
    """Queue prompts x seeds x variants images; outside a captured commit no task is sent."""
    rows = [
        PromptRow(n, f"a festival street scene {n}", "india", "places", tuple(seeds))
        for n in range(1, prompts + 1)
    ]
    return batch_queue(study=study, rows=rows, variants=variants)


def _images(batch: PromptBatch) -> list[Image]:
    return list(
        Image.objects.filter(prompt__batch=batch).order_by("prompt_id", "seed", "variant__name")
    )


def _set(images: list[Image], status: str, **fields) -> None:
    if status == Image.Status.DONE:
        fields.setdefault("file", FAKE_FILE)
    Image.objects.filter(pk__in=[image.pk for image in images]).update(status=status, **fields)


def _statuses(batch: PromptBatch) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in Image.objects.filter(prompt__batch=batch).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


def _messages(response) -> str:
    return " ".join(str(message) for message in response.context["messages"])


def test_progress_counts_and_the_api_match_the_image_rows(admin_client, study, variants):
    batch = _batch(study, variants)
    images = _images(batch)
    _set(images[:3], Image.Status.DONE)
    _set(images[3:4], Image.Status.RUNNING, started_at=timezone.now())
    _set(images[4:6], Image.Status.FAILED, error="RuntimeError: boom")

    progress = batch_progress(batch=batch)
    expected = {"queued": 2, "running": 1, "done": 3, "failed": 2, "cancelled": 0}
    assert progress.counts == expected
    assert progress.total == 8
    assert progress.prompts == 2
    assert progress.variants == ("tiny-base", "tiny-lora")

    data = admin_client.get(f"/api/v1/batches/{batch.pk}/").json()
    assert data["id"] == batch.pk
    assert data["counts"] == expected
    assert data["total"] == 8
    assert data["open"] == 3
    assert data["status"] == "queued"
    assert data["variants"] == ["tiny-base", "tiny-lora"]
    assert data["page"] == f"http://testserver/batches/{batch.pk}/"
    assert data["can_cancel"] is True and data["can_retry"] is True

    page = admin_client.get(f"/batches/{batch.pk}/").content.decode()
    shown = dict(re.findall(r'<td class="num" data-count="(\w+)">(\d+)</td>', page))
    assert shown == {status: str(count) for status, count in expected.items()}


def test_pace_and_eta_come_from_images_finished_in_the_last_minutes(study, variants):
    batch = _batch(study, variants)
    images = _images(batch)
    now = timezone.now()
    _set(images, Image.Status.QUEUED, started_at=None)
    _set(images[:1], Image.Status.DONE, started_at=now - timedelta(minutes=30))
    Image.objects.filter(pk=images[0].pk).update(finished_at=now - timedelta(minutes=25))
    for image, minutes_ago in zip(images[1:4], [2, 5, 8], strict=True):
        _set([image], Image.Status.DONE, started_at=now - timedelta(minutes=minutes_ago + 1))
        Image.objects.filter(pk=image.pk).update(finished_at=now - timedelta(minutes=minutes_ago))
    _set(images[4:5], Image.Status.FAILED, finished_at=now - timedelta(minutes=1))
    _set(images[5:6], Image.Status.RUNNING, started_at=now)

    progress = batch_progress(batch=batch, now=now)

    # 3 images finished in the last 10 minutes: 0.3 a minute; 3 left (2 queued, 1 running).
    assert progress.images_per_minute == pytest.approx(0.3)
    assert progress.eta_seconds == 600
    assert progress.started_at == now - timedelta(minutes=30)


def test_a_finished_batch_reports_the_pace_of_its_whole_run_and_no_eta(study, variants):
    batch = _batch(study, variants)
    now = timezone.now()
    _set(_images(batch), Image.Status.DONE, started_at=now - timedelta(minutes=40))
    Image.objects.filter(prompt__batch=batch).update(finished_at=now - timedelta(minutes=20))

    progress = batch_progress(batch=batch, now=now)

    assert progress.images_per_minute == pytest.approx(8 / 20)
    assert progress.eta_seconds is None


def test_a_batch_nobody_started_has_no_pace_and_no_eta(study, variants):
    progress = batch_progress(batch=_batch(study, variants))
    assert progress.counts["queued"] == 8
    assert progress.images_per_minute is None
    assert progress.eta_seconds is None


def test_a_new_batch_shows_its_place_in_the_queue_and_an_estimate_from_render_times(
    admin_client, study, variants
):
    first = _batch(study, variants)  # 8 images, none started
    second = _batch(study, variants, prompts=1)  # 4 images, queued after the first's
    assert batch_progress(batch=second).images_ahead == 8
    assert batch_progress(batch=second).eta_seconds is None  # no render history at all
    # Two of the first batch's images were rendered, at 15 s each.
    _set(_images(first)[:2], Image.Status.DONE, render_ms=15_000)
    progress = batch_progress(batch=second)
    assert progress.images_ahead == 6
    assert progress.eta_seconds == (6 + 4) * 15  # what is ahead, then itself
    assert batch_progress(batch=first).images_ahead == 0
    page = admin_client.get(f"/batches/{second.pk}/").content.decode()
    assert "6 images of earlier batches are queued ahead of this one." in page
    assert admin_client.get(f"/api/v1/batches/{second.pk}/").json()["images_ahead"] == 6
    # A cancelled batch ahead holds nothing up.
    admin_client.post(f"/batches/{first.pk}/cancel/")
    assert batch_progress(batch=second).images_ahead == 0


def test_a_cancelled_batch_shows_what_was_rendered_and_what_was_cancelled(
    admin_client, study, variants
):
    batch = _batch(study, variants)
    _set(_images(batch)[:3], Image.Status.DONE)
    admin_client.post(f"/batches/{batch.pk}/cancel/")
    page = admin_client.get(f"/batches/{batch.pk}/").content.decode()
    assert "Cancelled:</strong> 3 images rendered, 5 cancelled before rendering." in page
    assert "% finished" not in page


def test_cancel_turns_queued_images_into_cancelled_and_leaves_done_and_running_alone(
    admin_client, study, variants
):
    batch = _batch(study, variants)
    images = _images(batch)
    _set(images[:2], Image.Status.DONE)
    _set(images[2:4], Image.Status.RUNNING, claimed_by="a-task-elsewhere")

    response = admin_client.post(f"/batches/{batch.pk}/cancel/", follow=True)

    assert f"Cancelled batch {batch.pk}: 4 queued images will not be rendered" in _messages(
        response
    )
    assert _statuses(batch) == {"done": 2, "running": 2, "cancelled": 4}
    batch.refresh_from_db()
    assert batch.status == PromptBatch.Status.CANCELLED
    assert batch.finished_at is not None

    # A render task that was already on its way renders nothing of the cancelled images.
    for prompt in batch.prompts.all():
        assert render_prompt(prompt.pk) == 0
    assert _statuses(batch) == {"done": 2, "running": 2, "cancelled": 4}
    assert not Image.objects.filter(status=Image.Status.CANCELLED).exclude(file="").exists()

    # The running images finish; the batch stays cancelled.
    _set(images[2:4], Image.Status.DONE)
    assert batch_refresh_status(batch=batch) == PromptBatch.Status.CANCELLED


def test_cancelling_a_finished_batch_changes_nothing(admin_client, study, variants):
    batch = _batch(study, variants)
    _set(_images(batch), Image.Status.DONE)
    batch_refresh_status(batch=batch)

    response = admin_client.post(f"/batches/{batch.pk}/cancel/", follow=True)

    assert "nothing to cancel" in _messages(response)
    batch.refresh_from_db()
    assert batch.status == PromptBatch.Status.DONE


def test_retry_queues_failed_images_again_and_enqueues_their_render_tasks(
    admin_client, study, variants, monkeypatch, django_capture_on_commit_callbacks
):
    batch = _batch(study, variants, seeds=(11, 12))
    images = _images(batch)
    failed = [
        image for image in images if image.seed == 11 and image.prompt_id == images[0].prompt_id
    ]
    _set([image for image in images if image not in failed], Image.Status.DONE)
    _set(failed, Image.Status.FAILED, error="RuntimeError: boom", finished_at=timezone.now())
    assert batch_refresh_status(batch=batch) == PromptBatch.Status.FAILED
    sent = []
    monkeypatch.setattr(render_prompt, "delay", lambda *args, **kwargs: sent.append(args))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(f"/batches/{batch.pk}/retry-failed/", follow=True)

    assert f"Queued 2 failed images of batch {batch.pk} again." in _messages(response)
    assert len(callbacks) == 1
    assert sent == [(images[0].prompt_id, [11])]
    assert _statuses(batch) == {"done": 6, "queued": 2}
    assert set(
        Image.objects.filter(pk__in=[i.pk for i in failed]).values_list("error", flat=True)
    ) == {""}
    batch.refresh_from_db()
    assert batch.status == PromptBatch.Status.QUEUED
    assert batch.finished_at is None

    # The task the retry sent renders them, and the batch ends done.
    assert render_prompt(images[0].prompt_id, [11]) == 2
    assert _statuses(batch) == {"done": 8}
    batch.refresh_from_db()
    assert batch.status == PromptBatch.Status.DONE


def test_a_cancelled_batch_is_not_retried(admin_client, study, variants):
    batch = _batch(study, variants)
    _set(_images(batch)[:2], Image.Status.FAILED, error="boom")
    batch_cancel(batch=batch)

    response = admin_client.post(f"/batches/{batch.pk}/retry-failed/", follow=True)

    assert "was cancelled; its failed images stay failed" in _messages(response)
    assert _statuses(batch) == {"failed": 2, "cancelled": 6}


def test_the_api_lists_recent_batches_newest_first_for_staff_with_a_token(
    admin_user, study, variants
):
    older = _batch(study, variants)
    newer = _batch(study, variants, prompts=1)
    batch_cancel(batch=older)
    client = Client()
    token = Token.objects.create(user=admin_user)

    response = client.get("/api/v1/batches/", HTTP_AUTHORIZATION=f"Token {token.key}")
    data = response.json()

    assert response.status_code == 200
    assert [batch["id"] for batch in data["results"]] == [newer.pk, older.pk]
    assert data["results"][1]["counts"]["cancelled"] == 8
    assert data["results"][0]["total"] == 4
    cancelled = client.get(
        "/api/v1/batches/?status=cancelled", HTTP_AUTHORIZATION=f"Token {token.key}"
    ).json()
    assert [batch["id"] for batch in cancelled["results"]] == [older.pk]


@pytest.mark.parametrize("who", ["anonymous", "rater", "outsider", "researcher", "bare staff"])
def test_the_api_refuses_everyone_but_staff_who_may_view_batches(
    who, study, variants, rater_india, outsider, researcher
):
    batch = _batch(study, variants)
    user = {
        "rater": rater_india.user,
        "outsider": outsider,
        "researcher": researcher,
        "bare staff": User.objects.create_user("sam", password="x-sam", is_staff=True),
    }.get(who)
    session_client, token_client = Client(), Client()
    headers = {}
    if user is not None:
        session_client.force_login(user)
        headers = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=user).key}"}
    for client, extra in [(session_client, {}), (token_client, headers)]:
        for url in [f"/api/v1/batches/{batch.pk}/", "/api/v1/batches/"]:
            response = client.get(url, **extra)
            assert response.status_code in (401, 403), (url, response.status_code)
            assert "tiny-base" not in response.content.decode()


@pytest.mark.parametrize("who", ["anonymous", "rater", "outsider"])
def test_progress_pages_and_actions_send_non_staff_to_the_admin_sign_in(
    who, study, variants, rater_india, outsider
):
    batch = _batch(study, variants)
    _set(_images(batch)[:2], Image.Status.FAILED, error="boom")
    client = Client()
    user = {"rater": rater_india.user, "outsider": outsider}.get(who)
    if user is not None:
        client.force_login(user)
    for response in [
        client.get(f"/batches/{batch.pk}/"),
        client.post(f"/batches/{batch.pk}/cancel/"),
        client.post(f"/batches/{batch.pk}/retry-failed/"),
    ]:
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    assert _statuses(batch) == {"queued": 6, "failed": 2}


def test_staff_who_may_only_view_batches_cannot_cancel_them(study, variants):
    from django.contrib.auth.models import Permission

    batch = _batch(study, variants)
    viewer = User.objects.create_user("vic", password="x-vic", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_promptbatch"))
    client = Client()
    client.force_login(viewer)

    assert client.get(f"/batches/{batch.pk}/").status_code == 200
    assert client.get(f"/api/v1/batches/{batch.pk}/").status_code == 200
    assert client.post(f"/batches/{batch.pk}/cancel/").status_code == 403
    assert _statuses(batch) == {"queued": 8}


def test_actions_are_post_only(admin_client, study, variants):
    batch = _batch(study, variants)
    assert admin_client.get(f"/batches/{batch.pk}/cancel/").status_code == 405
    assert admin_client.get(f"/batches/{batch.pk}/retry-failed/").status_code == 405
    assert _statuses(batch) == {"queued": 8}


def test_the_admin_shows_a_batch_with_its_progress_link_and_cancels_by_action(
    admin_client, study, variants
):
    batch = _batch(study, variants)
    _set(_images(batch)[:3], Image.Status.DONE)

    change_page = admin_client.get(f"/admin/generation/promptbatch/{batch.pk}/change/")
    assert change_page.status_code == 200
    assert f'href="/batches/{batch.pk}/"' in change_page.content.decode()
    assert "a festival street scene 2" in change_page.content.decode()
    changelist = admin_client.get("/admin/generation/promptbatch/").content.decode()
    assert "3 / 8" in changelist

    response = admin_client.post(
        "/admin/generation/promptbatch/",
        {"action": "cancel_batches", "_selected_action": [batch.pk]},
        follow=True,
    )

    assert "Cancelled 5 queued images." in _messages(response)
    assert _statuses(batch) == {"done": 3, "cancelled": 5}


def test_the_admin_retries_failed_images_and_resends_queued_ones_by_action_and_says_refusals(
    admin_client, study, variants, django_capture_on_commit_callbacks
):
    batch = _batch(study, variants, prompts=1)  # 4 images
    _set(_images(batch)[:1], Image.Status.FAILED, error="out of memory")
    stopped = _batch(study, variants, prompts=1)
    batch_cancel(batch=stopped)

    def act(action: str):
        with django_capture_on_commit_callbacks(execute=False) as sent:
            response = admin_client.post(
                "/admin/generation/promptbatch/",
                {"action": action, "_selected_action": [batch.pk, stopped.pk]},
                follow=True,
            )
        return _messages(response), sent

    said, sent = act("retry_failed_images")
    assert "Queued 1 failed image again." in said
    assert f"Batch {stopped.pk} was cancelled" in said
    assert len(sent) == 1 and _statuses(batch) == {"queued": 4}
    said, sent = act("resend_queued_images")
    assert "Sent 4 queued images again." in said
    assert f"Batch {stopped.pk} was cancelled; nothing was sent." in said
    assert len(sent) == 1  # one task for the prompt's two seeds
