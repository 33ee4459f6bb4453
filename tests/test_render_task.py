"""The render task, called directly with the tiny model: images, files, pairs, exactly once."""

from __future__ import annotations

import io
import random

from PIL import Image as PILImage

from generation.batch_files import PromptRow
from generation.models import Image, PromptBatch
from generation.rendering.tasks import render_prompt
from generation.services import batch_queue
from ratings.models import Pair


def _queue(study, variants, seeds=(11, 12)) -> PromptBatch:
    rows = [PromptRow(1, "a plate of idli and sambar", "india:tamil", "food", tuple(seeds))]
    return batch_queue(study=study, rows=rows, variants=variants, rng=random.Random(0))


def test_render_task_renders_every_variant_of_every_seed_and_forms_pairs(
    study, variants, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        batch = _queue(study, variants)
    prompt = batch.prompts.get()
    assert render_prompt(prompt.pk) == 4
    images = list(prompt.images.all())
    assert {image.status for image in images} == {Image.Status.DONE}
    assert all(len(image.fingerprint) == 64 for image in images)
    pairs = Pair.objects.filter(prompt=prompt).order_by("seed")
    assert [(p.seed, p.variant_a.name, p.variant_b.name) for p in pairs] == [
        (11, "tiny-base", "tiny-lora"),
        (12, "tiny-base", "tiny-lora"),
    ]
    batch.refresh_from_db()
    assert batch.status == PromptBatch.Status.DONE


def test_running_the_same_task_twice_renders_nothing_twice(
    study, variants, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        batch = _queue(study, variants, seeds=(5,))
    prompt = batch.prompts.get()
    assert render_prompt(prompt.pk) == 2
    files_before = dict(prompt.images.values_list("id", "file"))
    assert render_prompt(prompt.pk) == 0
    assert dict(prompt.images.values_list("id", "file")) == files_before
    assert Pair.objects.filter(prompt=prompt).count() == 1


def test_image_files_are_opaque_and_carry_no_metadata(
    study, variants, media_root, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        batch = _queue(study, variants, seeds=(4242,))
    prompt = batch.prompts.get()
    render_prompt(prompt.pk)
    for image in prompt.images.select_related("variant"):
        secrets = [image.variant.name, image.variant.role, "4242", "idli", "lora", "base", "tiny"]
        for stored in (image.file, image.preview):
            for secret in secrets:
                assert secret not in stored.name
                assert secret not in stored.url
            data = (media_root / stored.name).read_bytes()
            for secret in secrets:
                assert secret.encode() not in data
            picture = PILImage.open(io.BytesIO(data))
            assert picture.size == (64, 64)
            assert not {"exif", "xmp", "icc_profile", "parameters"} & set(picture.info)
        png = (media_root / image.file.name).read_bytes()
        assert b"tEXt" not in png and b"iTXt" not in png and b"zTXt" not in png
        assert image.preview.name.endswith(".webp")


def test_base_and_lora_images_of_a_pair_differ(study, variants, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        batch = _queue(study, variants, seeds=(7,))
    render_prompt(batch.prompts.get().pk)
    pair = Pair.objects.get()
    assert pair.image_a.file.name != pair.image_b.file.name


def test_a_render_failure_marks_the_images_failed_with_the_error(
    study, variants, django_capture_on_commit_callbacks
):
    variants[1].lora_path = "/nonexistent/lora"
    variants[1].save()
    with django_capture_on_commit_callbacks(execute=False):
        batch = _queue(study, variants, seeds=(3,))
    prompt = batch.prompts.get()
    render_prompt(prompt.pk)
    failed = prompt.images.get(variant=variants[1])
    assert failed.status == Image.Status.FAILED
    assert failed.error
    assert prompt.images.get(variant=variants[0]).status == Image.Status.DONE
    assert not Pair.objects.filter(prompt=prompt).exists()
    batch.refresh_from_db()
    assert batch.status == PromptBatch.Status.FAILED


def test_render_command_renders_a_batch_without_celery(
    study, variants, django_capture_on_commit_callbacks
):
    from io import StringIO

    from django.core.management import call_command

    with django_capture_on_commit_callbacks(execute=False):
        batch = _queue(study, variants, seeds=(1, 2, 3))
    out = StringIO()
    call_command("render", batch=batch.pk, device="cpu", stdout=out)
    assert set(Image.objects.filter(prompt__batch=batch).values_list("status", flat=True)) == {
        Image.Status.DONE
    }
    assert "6/6 images" in out.getvalue()
    assert "Rendered 6 of 6 images on cpu; 0 failed; batch " in out.getvalue()
    assert Pair.objects.filter(prompt__batch=batch).count() == 3


def test_every_two_variants_are_paired_when_the_study_asks(
    study, variants, tiny_model, django_capture_on_commit_callbacks
):
    from generation.models import ModelVariant

    half = ModelVariant.objects.create(
        name="tiny-lora-half",
        role="finetuned",
        base_checkpoint=str(tiny_model.base),
        lora_path=str(tiny_model.lora),
        lora_scale=0.5,
        steps=4,
        width=64,
        height=64,
    )
    study.pair_every_two_variants = True
    study.save()
    with django_capture_on_commit_callbacks(execute=False):
        batch = _queue(study, [*variants, half], seeds=(8,))
    render_prompt(batch.prompts.get().pk)
    couples = {(p.variant_a.name, p.variant_b.name) for p in Pair.objects.all()}
    assert couples == {
        ("tiny-base", "tiny-lora"),
        ("tiny-base", "tiny-lora-half"),
        ("tiny-lora", "tiny-lora-half"),
    }
