"""Queueing a prompt batch from the Django admin and from `manage.py queue_batch`."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client

from generation.models import Image, PromptBatch

GOOD_CSV = (
    "prompt,cohort,category\n"
    "a plate of idli and sambar,india:tamil,food\n"
    "a hanok with a tiled roof,korea,architecture\n"
)
BAD_CSV = (
    "prompt,cohort,category,seeds\n"
    "a plate of idli and sambar,india:tamil,food,\n"
    ",india,food,\n"
    "tacos al pastor,mexico,food,\n"
    "a hanok,korea,architecture,minus one\n"
)


@pytest.fixture
def admin_client(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("ada", "ada@example.org", "x-ada"))
    return client


def _queue_page_post(client: Client, study, variants, csv_text: str, seeds: int = 3):
    """Follow the admin's "Add prompt batch" to the queue page and post the file there."""
    add = client.get("/admin/generation/promptbatch/add/")
    assert add.status_code == 302
    return client.post(
        add["Location"],
        {
            "study": study.pk,
            "variants": [v.pk for v in variants],
            "seeds_per_prompt": seeds,
            "prompts_file": SimpleUploadedFile("prompts.csv", csv_text.encode()),
        },
    )


def test_admin_queues_a_batch_from_an_uploaded_csv(
    admin_client, study, variants, django_capture_on_commit_callbacks
):
    preview = _queue_page_post(admin_client, study, variants, GOOD_CSV)
    assert preview.status_code == 302, preview.content.decode()[:2000]
    assert not PromptBatch.objects.exists()  # only previewed so far
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(preview["Location"])
    assert response.status_code == 302, response.content.decode()[:2000]
    batch = PromptBatch.objects.get()
    assert batch.queued_by.username == "ada"
    assert batch.prompts.count() == 2
    assert Image.objects.filter(prompt__batch=batch).count() == 2 * 3 * 2
    assert len(callbacks) == 2  # one render task per prompt, sent on commit


def test_admin_shows_every_bad_row_by_line_and_queues_nothing(admin_client, study, variants):
    response = _queue_page_post(admin_client, study, variants, BAD_CSV, seeds=2)
    page = response.content.decode()
    assert response.status_code == 200
    bad_rows = dict(
        re.findall(r'<tr id="line-(\d+)">.*?<td class="problem">(.*?)</td>', page, re.S)
    )
    assert bad_rows["3"] == "empty prompt"
    assert bad_rows["4"] == "unknown cohort &#x27;mexico&#x27;"
    assert bad_rows["5"].startswith("bad seed")
    assert "2" not in bad_rows
    assert not PromptBatch.objects.exists()


def test_admin_refuses_a_batch_without_a_fine_tuned_variant(admin_client, study, variants):
    response = _queue_page_post(admin_client, study, variants[:1], GOOD_CSV, seeds=2)
    assert "a pair needs two images" in response.content.decode()
    assert not PromptBatch.objects.exists()


def test_command_queues_a_batch_with_the_named_variants(
    tmp_path, study, variants, django_capture_on_commit_callbacks
):
    path = tmp_path / "prompts.csv"
    path.write_text(GOOD_CSV)
    with django_capture_on_commit_callbacks(execute=False):
        call_command(
            "queue_batch", str(path), study=study.slug, variants="tiny-base,tiny-lora", seeds=2
        )
    batch = PromptBatch.objects.get()
    assert set(batch.variants.values_list("name", flat=True)) == {"tiny-base", "tiny-lora"}
    assert Image.objects.filter(prompt__batch=batch).count() == 2 * 2 * 2
    seeds = set(
        Image.objects.filter(prompt__text__startswith="a hanok").values_list("seed", flat=True)
    )
    assert len(seeds) == 2


def test_command_reports_bad_rows_by_line_and_queues_nothing(tmp_path, study, variants):
    path = tmp_path / "prompts.csv"
    path.write_text(BAD_CSV)
    with pytest.raises(CommandError) as caught:
        call_command("queue_batch", str(path), study=study.slug, variants="tiny-base,tiny-lora")
    message = str(caught.value)
    assert "nothing was queued" in message
    assert "line 3: empty prompt" in message and "line 4: unknown cohort" in message
    assert not PromptBatch.objects.exists()


def test_command_refuses_an_unknown_study_or_variant(tmp_path, study, variants):
    path = tmp_path / "prompts.csv"
    path.write_text(GOOD_CSV)
    with pytest.raises(CommandError, match="No study with slug 'nope'"):
        call_command("queue_batch", str(path), study="nope")
    with pytest.raises(CommandError, match="Unknown variant"):
        call_command("queue_batch", str(path), study=study.slug, variants="tiny-base,sdxl")
    assert not PromptBatch.objects.exists()


def test_command_refuses_a_prompt_longer_than_the_text_encoder_reads(tmp_path, study, variants):
    long_prompt = " ".join(f"lantern {n} festival" for n in range(30))
    path = tmp_path / "prompts.csv"
    path.write_text(GOOD_CSV + f"{long_prompt},india,places\n")
    with pytest.raises(CommandError) as caught:
        call_command("queue_batch", str(path), study=study.slug, variants="tiny-base,tiny-lora")
    assert "line 4: prompt is" in str(caught.value)
    assert "the text encoder reads at most 77" in str(caught.value)
    assert not PromptBatch.objects.exists()


def test_a_batch_whose_variants_differ_in_size_is_refused_naming_them(
    admin_client, tmp_path, study, variants
):
    """A 96-pixel image beside a 128-pixel one would name its model: refused, nothing queued."""
    type(variants[1]).objects.filter(pk=variants[1].pk).update(width=96, height=96)
    response = _queue_page_post(admin_client, study, variants, GOOD_CSV, seeds=2)
    page = response.content.decode()
    assert "different sizes" in page
    assert "tiny-base (64 x 64)" in page and "tiny-lora (96 x 96)" in page
    path = tmp_path / "prompts.csv"
    path.write_text(GOOD_CSV)
    with pytest.raises(CommandError, match=r"tiny-lora \(96 x 96\)"):
        call_command("queue_batch", str(path), study=study.slug, variants="tiny-base,tiny-lora")
    assert not PromptBatch.objects.exists()
    assert not Image.objects.exists()
