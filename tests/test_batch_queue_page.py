"""The staff page that queues a prompt batch: check every row, preview, confirm once."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from transformers import CLIPTokenizer

from generation.models import Image, Prompt, PromptBatch
from ratings.models import Cohort

QUEUE_URL = "/batches/queue/"
GOOD_CSV = (
    "prompt,cohort,category,seeds\n"
    "a plate of idli and sambar,india:tamil,food,\n"
    "a hanok with a tiled roof,korea,architecture,\n"
    "a market in lagos,nigeria,places,7;8\n"
)


def _form(study, variants, **fields) -> dict:
    return {
        "study": study.pk,
        "variants": [variant.pk for variant in variants],
        "seeds_per_prompt": 3,
        **fields,
    }


def _bad_rows(page: str) -> dict[int, str]:
    """Return the problem shown for each line in the page's table of bad rows."""
    rows = re.findall(
        r'<tr id="line-(\d+)">.*?<td class="problem">(.*?)</td>', page, flags=re.DOTALL
    )
    return {int(line): unescape(problem) for line, problem in rows}


def _preview(client: Client, data: dict) -> tuple[str, str]:
    """Post step 1 and return the preview's URL and page."""
    response = client.post(QUEUE_URL, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    preview_url = response["Location"]
    assert preview_url.startswith(QUEUE_URL)
    page = client.get(preview_url)
    assert page.status_code == 200
    return preview_url, page.content.decode()


def _text_of(page: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)<', page, flags=re.DOTALL)
    assert match, f"no #{element_id} on the page"
    return match.group(1).strip()


def test_uploaded_file_is_previewed_with_the_right_numbers_and_queued_exactly_once(
    admin_client, admin_user, study, variants, django_capture_on_commit_callbacks
):
    upload = SimpleUploadedFile("prompts.csv", GOOD_CSV.encode())
    preview_url, page = _preview(admin_client, _form(study, variants, prompts_file=upload))

    assert _text_of(page, "preview-prompts") == "3"
    # Two rows draw 3 seeds, one gives its own 2: 8 images per variant, 2 variants.
    assert _text_of(page, "preview-images") == "16"
    assert _text_of(page, "preview-estimate") == "unknown until the first images are rendered"
    assert "Queue 16 images" in page
    assert not PromptBatch.objects.exists(), "the preview must not queue anything"

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(preview_url)
    batch = PromptBatch.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/batches/{batch.pk}/"
    assert batch.queued_by == admin_user
    assert batch.source_name == "prompts.csv"
    assert list(batch.prompts.values_list("source_line", flat=True)) == [2, 3, 4]
    assert Image.objects.filter(prompt__batch=batch).count() == 16
    assert sorted(
        Image.objects.filter(prompt__text="a market in lagos").values_list("seed", flat=True)
    ) == [7, 7, 8, 8]
    assert len(callbacks) == 3  # one render task per prompt (at most 4 seeds each)

    progress = admin_client.get(response["Location"])
    assert f"Queued batch {batch.pk}: 3 prompts, 16 images." in progress.content.decode()

    again = admin_client.post(preview_url, follow=True)
    assert PromptBatch.objects.count() == 1, "confirming the same preview twice queued twice"
    assert "already queued or has expired" in again.content.decode()


def test_changing_the_input_from_the_preview_brings_it_back_to_edit(admin_client, study, variants):
    upload = SimpleUploadedFile("prompts.csv", GOOD_CSV.encode())
    preview_url, _ = _preview(
        admin_client, _form(study, variants[1:] + variants[:1], prompts_file=upload)
    )
    token = preview_url.rstrip("/").rsplit("/", 1)[1]

    page = admin_client.get(f"{QUEUE_URL}?edit={token}").content.decode()

    textarea = re.search(r'<textarea name="pasted_rows"[^>]*>(.*?)</textarea>', page, re.DOTALL)
    assert textarea and unescape(textarea.group(1)).strip() == GOOD_CSV.strip()
    checked = re.findall(r'<input type="checkbox" name="variants" value="(\d+)"[^>]*checked', page)
    assert sorted(int(pk) for pk in checked) == sorted(variant.pk for variant in variants)
    assert not PromptBatch.objects.exists()


def test_pasted_rows_without_a_header_are_queued_with_their_pasted_line_numbers(
    admin_client, study, variants, django_capture_on_commit_callbacks
):
    pasted = "\r\na plate of idli and sambar,india:tamil,food\r\na hanok,korea,architecture,5\r\n"
    preview_url, page = _preview(
        admin_client, _form(study, variants, seeds_per_prompt=2, pasted_rows=pasted)
    )
    assert _text_of(page, "preview-images") == "6"  # (2 + 1) seeds x 2 variants

    with django_capture_on_commit_callbacks(execute=False):
        admin_client.post(preview_url)
    batch = PromptBatch.objects.get()
    assert batch.source_name == "pasted rows"
    assert dict(batch.prompts.values_list("text", "source_line")) == {
        "a plate of idli and sambar": 2,
        "a hanok": 3,
    }


def test_pasted_jsonl_rows_are_understood(admin_client, study, variants):
    pasted = (
        '{"prompt": "a plate of idli", "cohort": "india", "category": "food"}\n'
        '{"prompt": "a hanok", "cohort": "korea", "category": "architecture", "seeds": [1, 2]}\n'
    )
    _, page = _preview(admin_client, _form(study, variants, pasted_rows=pasted))
    assert _text_of(page, "preview-prompts") == "2"
    assert _text_of(page, "preview-images") == "10"  # (3 + 2) seeds x 2 variants


def test_every_bad_row_is_shown_by_its_line_and_nothing_is_queued(admin_client, study, variants):
    pasted = (
        "prompt,cohort,category,seeds\n"
        "a plate of idli and sambar,india:tamil,food,\n"
        ",india,food,\n"
        "tacos al pastor,mexico,food,\n"
        "a hanok,korea,architecture,minus one\n"
        "a plate of idli and sambar,india:tamil,food,\n"
        "a market,nigeria,Bad Category!,\n"
        "a street,india,places,1,2\n"
        "a temple,india,places,3;3\n"
    )
    response = admin_client.post(QUEUE_URL, _form(study, variants, pasted_rows=pasted))
    page = response.content.decode()

    assert response.status_code == 200
    problems = _bad_rows(page)
    assert sorted(problems) == [3, 4, 5, 6, 7, 8, 9]
    assert problems[3] == "empty prompt"
    assert problems[4] == "unknown cohort 'mexico'"
    assert problems[5].startswith("bad seed 'minus'")
    assert problems[6] == "duplicate of line 2"
    assert problems[7].startswith("bad category 'bad category!'")
    assert problems[8] == "5 fields, the header has 4"
    assert problems[9] == "the same seed is given twice"
    assert "7 lines of the input have problems; nothing was queued." in page
    assert not PromptBatch.objects.exists()
    assert not Prompt.objects.exists()


def test_bad_rows_of_pasted_text_without_a_header_keep_their_pasted_line(
    admin_client, study, variants
):
    pasted = "a plate of idli,india,food\ntacos al pastor,mexico,food\n"
    response = admin_client.post(QUEUE_URL, _form(study, variants, pasted_rows=pasted))
    assert _bad_rows(response.content.decode()) == {2: "unknown cohort 'mexico'"}


def test_a_prompt_longer_than_the_tokenizer_reads_is_refused(
    admin_client, study, variants, tiny_model
):
    tokenizer = CLIPTokenizer.from_pretrained(str(tiny_model.base / "tokenizer"))
    long_prompt = " ".join(
        f"{word} {n}" for n, word in enumerate(["temple", "market", "river", "lantern"] * 6)
    )
    tokens = len(tokenizer(long_prompt)["input_ids"])  # start and end tokens included
    assert tokens > tokenizer.model_max_length == 77
    pasted = f"a plate of idli,india,food\n{long_prompt},india,places\n"

    response = admin_client.post(QUEUE_URL, _form(study, variants, pasted_rows=pasted))

    assert _bad_rows(response.content.decode()) == {
        2: f"prompt is {tokens} tokens long; the text encoder reads at most 77 "
        "and would silently cut the rest"
    }
    assert not PromptBatch.objects.exists()


def test_the_estimate_comes_from_the_median_render_time_of_recent_images(
    admin_client, study, variants, pair_factory
):
    pair_factory()
    pair_factory(text="a bowl of rasam")
    # Two done images per variant: base 20 s and 40 s (median 30 s), LoRA 60 s twice.
    for image, render_ms in zip(
        Image.objects.order_by("variant__role", "pk"), [20_000, 40_000, 60_000, 60_000], strict=True
    ):
        Image.objects.filter(pk=image.pk).update(render_ms=render_ms)
    pasted = "a hanok,korea,architecture\na market,nigeria,places\n"

    _, page = _preview(admin_client, _form(study, variants, seeds_per_prompt=5, pasted_rows=pasted))

    # 10 images per variant: 10 x 30 s + 10 x 60 s = 15 minutes on one worker.
    assert _text_of(page, "preview-estimate") == "about 15 min"


def test_the_estimate_counts_the_images_queued_ahead(admin_client, study, variants, pair_factory):
    pair_factory()
    # Done images rendered in 30 s each (the median of recent renders).
    Image.objects.update(render_ms=30_000)
    # An open batch with 104 images waiting (queued or running) ahead of the new one.
    ahead = PromptBatch.objects.create(study=study, seeds_per_prompt=52)
    prompt = Prompt.objects.create(
        batch=ahead, text="a plate of idli", cohort=Cohort.objects.get(path="india")
    )
    Image.objects.bulk_create(
        Image(
            prompt=prompt, variant=variant, seed=seed, status="running" if seed == 0 else "queued"
        )
        for seed in range(52)
        for variant in variants
    )
    pasted = "a hanok,korea,architecture\n"

    _, page = _preview(admin_client, _form(study, variants, seeds_per_prompt=2, pasted_rows=pasted))

    # Its own 4 images take 2 min; the 104 ahead take 52 min first: 54 min until it is done.
    assert _text_of(page, "preview-estimate") == "about 2 min"
    assert _text_of(page, "preview-ahead") == "104 images"
    assert _text_of(page, "preview-ready") == "about 54 min"


def test_the_confirm_step_checks_the_input_again(admin_client, study, variants):
    preview_url, _ = _preview(
        admin_client, _form(study, variants, pasted_rows="a hanok,korea,architecture\n")
    )
    study.cohorts.remove(Cohort.objects.get(path="korea"))
    Cohort.objects.filter(path="korea").delete()

    response = admin_client.post(preview_url)

    assert _bad_rows(response.content.decode()) == {1: "unknown cohort 'korea'"}
    assert not PromptBatch.objects.exists()


def test_a_batch_without_a_fine_tuned_variant_is_refused(admin_client, study, variants):
    response = admin_client.post(
        QUEUE_URL, _form(study, variants[:1], pasted_rows="a hanok,korea,architecture\n")
    )
    assert "a pair needs two images" in response.content.decode()
    assert not PromptBatch.objects.exists()


def test_a_file_and_pasted_rows_together_are_refused(admin_client, study, variants):
    upload = SimpleUploadedFile("prompts.csv", GOOD_CSV.encode())
    response = admin_client.post(
        QUEUE_URL,
        _form(study, variants, prompts_file=upload, pasted_rows="a hanok,korea,architecture"),
    )
    assert "Upload a file or paste rows, not both." in response.content.decode()
    assert not PromptBatch.objects.exists()


def test_the_admin_add_button_leads_to_the_queue_page(admin_client):
    assert admin_client.get("/admin/generation/promptbatch/add/")["Location"] == QUEUE_URL
    changelist = admin_client.get("/admin/generation/promptbatch/").content.decode()
    assert f'href="{QUEUE_URL}"' in changelist
    assert "Queue a prompt batch" in changelist


@pytest.mark.parametrize("who", ["anonymous", "rater", "outsider", "researcher"])
def test_people_who_are_not_staff_are_sent_to_the_admin_sign_in(
    who, study, variants, rater_india, outsider, researcher
):
    client = Client()
    user = {"rater": rater_india.user, "outsider": outsider, "researcher": researcher}.get(who)
    if user is not None:
        client.force_login(user)
    pasted = "a hanok,korea,architecture\n"
    for response in [
        client.get(QUEUE_URL),
        client.post(QUEUE_URL, _form(study, variants, pasted_rows=pasted)),
        client.get(f"{QUEUE_URL}some-token/"),
        client.post(f"{QUEUE_URL}some-token/"),
    ]:
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    assert not PromptBatch.objects.exists()


def test_staff_without_the_permission_to_add_batches_are_refused(study, variants):
    client = Client()
    client.force_login(User.objects.create_user("sam", password="x-sam", is_staff=True))
    assert client.get(QUEUE_URL).status_code == 403
    response = client.post(QUEUE_URL, _form(study, variants, pasted_rows="a hanok,korea,x\n"))
    assert response.status_code == 403
    assert not PromptBatch.objects.exists()
