"""An admin queues a batch in real Chromium and watches its progress page update itself."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from generation.models import Image, PromptBatch
from generation.rendering.tasks import render_prompt

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASTED = (
    "a plate of idli and sambar on a banana leaf,india:tamil,food\n"
    "a hanok with a tiled roof in winter,korea,architecture\n"
    "a kathakali dancer in full costume,india:kerala,dance,11;12\n"
)


@pytest.fixture
def screenshots(tmp_path) -> Path:
    """Where page screenshots go: POLYPHONY_SCREENSHOT_DIR to keep them, else a temp folder."""
    folder = Path(os.environ.get("POLYPHONY_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_admin_queues_a_batch_and_its_progress_page_follows_the_workers(
    browser, live_server, study, variants, monkeypatch, screenshots
):
    sent = []
    monkeypatch.setattr(render_prompt, "delay", lambda *args, **kwargs: sent.append(args))
    User.objects.create_superuser("ada", "ada@example.org", "a long password 123")
    # Playwright's wait_for_function evaluates its string in the page, which the
    # Content-Security-Policy (no 'unsafe-eval') refuses; the page's own scripts run under it.
    page = browser.new_page(viewport={"width": 1200, "height": 1000}, bypass_csp=True)
    try:
        page.goto(f"{live_server.url}/batches/queue/")
        page.fill("#id_username", "ada")
        page.fill("#id_password", "a long password 123")
        page.get_by_role("button", name="Log in").click()

        page.wait_for_selector("h1:has-text('Queue a prompt batch')")
        page.get_by_label("tiny-base (base)").check()
        page.get_by_label("tiny-lora (fine-tuned)").check()
        page.fill("#id_pasted_rows", PASTED + "tacos al pastor,mexico,food\n,korea,food,x\n")
        page.get_by_role("button", name="Check and preview").click()

        page.wait_for_selector("table.bad-rows")
        assert page.inner_text("#line-4 .problem") == "unknown cohort 'mexico'"
        assert page.inner_text("#line-5 .problem").startswith("empty prompt; bad seed 'x'")
        page.screenshot(path=screenshots / "batch-queue-errors.png", full_page=True)
        assert page.get_by_label("tiny-lora (fine-tuned)").is_checked()
        page.fill("#id_pasted_rows", PASTED)
        page.get_by_role("button", name="Check and preview").click()

        confirm = page.get_by_role("button", name="Queue 20 images")
        confirm.wait_for()
        assert page.inner_text("#preview-prompts") == "3"
        page.screenshot(path=screenshots / "batch-preview.png", full_page=True)
        assert not PromptBatch.objects.exists()
        confirm.click()

        page.wait_for_selector("#batch-progress")
        batch = PromptBatch.objects.get()
        assert len(sent) == 3
        assert page.inner_text("[data-count=queued]") == "20"

        # Workers get going: the page picks up their progress without a reload.
        now = timezone.now()
        images = list(Image.objects.filter(prompt__batch=batch).order_by("pk"))
        for n, image in enumerate(images[:11]):
            Image.objects.filter(pk=image.pk).update(
                status=Image.Status.DONE,
                file=f"images/{n}.png",
                started_at=now - timedelta(minutes=6),
                finished_at=now - timedelta(seconds=30 * n),
                render_ms=2400,
            )
        Image.objects.filter(pk=images[11].pk).update(
            status=Image.Status.FAILED, error="RuntimeError: out of memory", finished_at=now
        )
        Image.objects.filter(pk__in=[i.pk for i in images[12:14]]).update(
            status=Image.Status.RUNNING, started_at=now
        )
        PromptBatch.objects.filter(pk=batch.pk).update(status=PromptBatch.Status.RUNNING)

        page.wait_for_function(
            "document.querySelector('[data-count=done]').textContent === '11'", timeout=15_000
        )
        assert page.inner_text("[data-count=queued]") == "6"
        assert page.inner_text("[data-field=status_label]") == "Running"
        assert page.get_by_role("button", name="Retry 1 failed").is_visible()
        assert "images/min" in page.inner_text("[data-field=images_per_minute]")
        page.wait_for_timeout(800)  # let the bars finish growing
        page.screenshot(path=screenshots / "batch-progress.png", full_page=True)

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Cancel batch").click()
        page.wait_for_selector("text=6 queued images will not be rendered")
        assert page.inner_text("[data-count=cancelled]") == "6"
        assert not page.get_by_role("button", name="Cancel batch").is_visible()
        page.screenshot(path=screenshots / "batch-cancelled.png", full_page=True)

        page.goto(f"{live_server.url}/admin/generation/promptbatch/")
        page.get_by_role("link", name="Queue a prompt batch").wait_for()
        assert page.get_by_role("link", name="Progress").get_attribute("href") == (
            f"/batches/{batch.pk}/"
        )
        page.screenshot(path=screenshots / "admin-batches.png")

        # The study now has its variants: a new batch starts with them ticked.
        page.get_by_role("link", name="Queue a prompt batch").click()
        page.wait_for_selector("h1:has-text('Queue a prompt batch')")
        assert page.get_by_label("tiny-base (base)").is_checked()
        assert page.get_by_label("tiny-lora (fine-tuned)").is_checked()
    finally:
        page.close()
