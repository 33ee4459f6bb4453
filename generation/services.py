"""Services that change generation state: queue batches, claim and render images, form pairs."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import combinations, product
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from generation.batch_files import PromptRow
from generation.models import MAX_SEED, Image, ModelVariant, Prompt, PromptBatch
from ratings.models import Cohort, Pair, Study
from ratings.services import pair_coverage_create

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from generation.pipeline import Renderer

logger = logging.getLogger(__name__)

# Errors worth retrying the task for: the database or broker went away for a moment.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
)


_BATCH_OPEN = (PromptBatch.Status.QUEUED, PromptBatch.Status.RUNNING)


class BatchRefused(Exception):
    """A batch that cannot be queued as asked; nothing was queued."""


def batch_queue(
    *,
    study: Study,
    rows: Sequence[PromptRow],
    variants: Sequence[ModelVariant],
    seeds_per_prompt: int = 4,
    queued_by: AbstractBaseUser | None = None,
    source_name: str = "",
    rng: random.Random | None = None,
) -> PromptBatch:
    """Queue every row for every variant from the same seeds, and enqueue the render tasks."""
    variants = list(variants)
    problems = batch_problems(variants=variants, seeds_per_prompt=seeds_per_prompt)
    if not rows:
        problems.append("The batch holds no prompts.")
    if problems:
        raise BatchRefused(" ".join(problems))
    rng = rng or random.SystemRandom()
    cohorts = {
        cohort.path: cohort
        for cohort in Cohort.objects.filter(path__in={row.cohort_path for row in rows})
    }
    missing = sorted({row.cohort_path for row in rows} - set(cohorts))
    if missing:
        raise BatchRefused(f"Unknown cohort(s): {', '.join(missing)}.")

    with transaction.atomic():
        batch = PromptBatch.objects.create(
            study=study,
            queued_by=queued_by,
            seeds_per_prompt=seeds_per_prompt,
            source_name=source_name,
        )
        batch.variants.set(variants)
        study.variants.add(*variants)
        study.cohorts.add(*cohorts.values())
        images: list[Image] = []
        for row in rows:
            prompt = Prompt.objects.create(
                batch=batch,
                text=row.text,
                cohort=cohorts[row.cohort_path],
                category=row.category,
                source_line=row.line,
            )
            seeds = row.seeds or _seeds_draw(seeds_per_prompt, rng)
            images.extend(
                Image(prompt=prompt, variant=variant, seed=seed)
                for seed in seeds
                for variant in variants
            )
        Image.objects.bulk_create(images)
        for prompt in batch.prompts.all():
            render_tasks_enqueue(prompt=prompt)
    logger.info("Queued batch %s: %d prompts, %d images", batch.pk, len(rows), len(images))
    return batch


def batch_problems(*, variants: Sequence[ModelVariant], seeds_per_prompt: int) -> list[str]:
    """Return why a batch with these variants and seeds could not form pairs; empty if it can."""
    problems = []
    if len(variants) < 2:
        problems.append("Choose at least two variants: a pair needs two images to compare.")
    elif not any(variant.role == ModelVariant.Role.BASE for variant in variants):
        problems.append("Choose a base variant: pairs compare fine-tuned variants with a base.")
    elif not any(variant.role == ModelVariant.Role.FINETUNED for variant in variants):
        problems.append("Choose a fine-tuned variant to compare with the base.")
    if seeds_per_prompt < 1:
        problems.append("Each prompt needs at least one seed.")
    return problems


def _seeds_draw(count: int, rng: random.Random) -> list[int]:
    seeds: set[int] = set()
    while len(seeds) < count:
        seeds.add(rng.randint(0, MAX_SEED))
    return sorted(seeds)


def render_tasks_enqueue(*, prompt: Prompt, seeds: Sequence[int] | None = None) -> int:
    """Enqueue render tasks, on commit, for a prompt's queued seeds in chunks; return how many."""
    from generation.tasks import render_prompt

    if seeds is None:
        seeds = prompt.images.filter(status=Image.Status.QUEUED).values_list("seed", flat=True)
    ordered = sorted(set(seeds))
    size = settings.POLYPHONY_SEEDS_PER_TASK
    chunks = [ordered[start : start + size] for start in range(0, len(ordered), size)]
    for chunk in chunks:
        render_prompt.delay_on_commit(prompt.pk, chunk)
    return len(chunks)


def images_claim(
    *, image_ids: Sequence[int], claim: str, worker: str = "", now: datetime | None = None
) -> list[int]:
    """Claim images for rendering; return the ids this caller won.

    The conditional update is the lock: a queued row is claimed once. A running row is taken
    back only by the same claim (the same task id, redelivered after its worker died), so a
    duplicate delivery of another task renders nothing twice.
    """
    now = now or timezone.now()
    claimable = Q(status=Image.Status.QUEUED)
    if claim:
        claimable |= Q(status=Image.Status.RUNNING, claimed_by=claim)
    won = []
    for image_id in image_ids:
        claimed = Image.objects.filter(claimable, pk=image_id).update(
            status=Image.Status.RUNNING,
            claimed_by=claim[:100],
            worker=worker[:200],
            started_at=now,
            attempts=F("attempts") + 1,
        )
        if claimed == 1:
            won.append(image_id)
    return won


def prompt_render(
    *,
    prompt_id: int,
    renderer: Renderer,
    seeds: Sequence[int] | None = None,
    claim: str = "",
    worker: str = "",
    batch_size: int | None = None,
) -> int:
    """Render a prompt's queued images (of the given seeds) with every variant; form pairs.

    Every variant renders the same seeds, several per pipeline call, so the images of a pair
    start from the same noise. Return how many images this call rendered.
    """
    prompt = Prompt.objects.select_related("batch").get(pk=prompt_id)
    candidates = prompt.images.filter(status__in=[Image.Status.QUEUED, Image.Status.RUNNING])
    if seeds is not None:
        candidates = candidates.filter(seed__in=list(seeds))
    claimed = images_claim(
        image_ids=list(candidates.values_list("id", flat=True)), claim=claim, worker=worker
    )
    rendered = 0
    if claimed:
        _batch_mark_running(prompt.batch)
        images = Image.objects.filter(pk__in=claimed).select_related("variant")
        by_variant: dict[int, list[Image]] = {}
        for image in images.order_by("variant__role", "variant__name", "seed"):
            by_variant.setdefault(image.variant_id, []).append(image)
        for variant_images in by_variant.values():
            rendered += _variant_render(
                images=variant_images,
                prompt=prompt,
                renderer=renderer,
                batch_size=batch_size or settings.POLYPHONY_RENDER_BATCH_SIZE or None,
            )
    pairs_form(prompt=prompt)
    batch_refresh_status(batch=prompt.batch)
    return rendered


def _variant_render(
    *, images: list[Image], prompt: Prompt, renderer: Renderer, batch_size: int | None
) -> int:
    """Render one variant's claimed images, halving the batch whenever the device runs out."""
    from generation.pipeline import (
        default_batch_size,
        free_device_memory,
        is_out_of_memory,
        spec_fingerprint,
    )

    variant = images[0].variant
    spec = variant.render_spec()
    size = max(1, batch_size or default_batch_size(renderer.device))
    pending = list(images)
    rendered = 0
    while pending:
        group = pending[:size]
        started = time.perf_counter()
        try:
            pictures = renderer.render(spec, prompt.text, [image.seed for image in group])
            fingerprint = spec_fingerprint(spec)
        except Exception as exc:
            if is_out_of_memory(exc) and size > 1:
                free_device_memory(renderer.device)
                size = max(1, size // 2)
                logger.warning(
                    "Out of memory rendering %d images of prompt %s; retrying %d at a time",
                    len(group),
                    prompt.pk,
                    size,
                )
                continue
            if isinstance(exc, TRANSIENT_ERRORS):
                raise  # the task retries; its claim lets it take these images back
            logger.exception("Rendering prompt %s with %s failed", prompt.pk, variant.name)
            _images_fail(images=pending, error=f"{type(exc).__name__}: {exc}")
            return rendered
        per_image_ms = int((time.perf_counter() - started) * 1000 / len(group))
        for image, picture in zip(group, pictures, strict=True):
            _image_store(
                image=image, picture=picture, fingerprint=fingerprint, render_ms=per_image_ms
            )
        rendered += len(group)
        pending = pending[len(group) :]
    if variant.fingerprint != fingerprint:
        ModelVariant.objects.filter(pk=variant.pk).update(fingerprint=fingerprint)
    return rendered


def _image_store(*, image: Image, picture, fingerprint: str, render_ms: int) -> None:
    from generation.pipeline import content_name, encode_png, encode_webp

    png = encode_png(picture)
    webp = encode_webp(picture)
    file_name = image_file_store(data=png, name=content_name(png, ".png"))
    preview_name = image_file_store(data=webp, name=content_name(webp, ".webp"))
    stored = Image.objects.filter(pk=image.pk, status=Image.Status.RUNNING).update(
        status=Image.Status.DONE,
        file=file_name,
        preview=preview_name,
        fingerprint=fingerprint,
        error="",
        finished_at=timezone.now(),
        render_ms=render_ms,
    )
    if stored:
        logger.info("Rendered image %s", image.pk)


def _images_fail(*, images: Sequence[Image], error: str) -> None:
    Image.objects.filter(pk__in=[i.pk for i in images], status=Image.Status.RUNNING).update(
        status=Image.Status.FAILED, error=error[:2000], finished_at=timezone.now()
    )


def images_requeue_stuck(*, now: datetime | None = None) -> int:
    """Return images left running past the hard time limit (their worker died) to the queue."""
    now = now or timezone.now()
    limit = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    stuck = list(
        Image.objects.filter(status=Image.Status.RUNNING, started_at__lt=limit)
        .select_related("prompt")
        .order_by("prompt_id", "seed")
    )
    requeued: dict[int, tuple[Prompt, list[int]]] = {}
    for image in stuck:
        released = Image.objects.filter(
            pk=image.pk, status=Image.Status.RUNNING, started_at=image.started_at
        ).update(status=Image.Status.QUEUED, claimed_by="", worker="")
        if released:
            requeued.setdefault(image.prompt_id, (image.prompt, []))[1].append(image.seed)
    with transaction.atomic():
        for prompt, seeds in requeued.values():
            render_tasks_enqueue(prompt=prompt, seeds=seeds)
    count = sum(len(seeds) for _, seeds in requeued.values())
    if count:
        logger.warning("Returned %d stuck images to the queue", count)
    return count


def image_file_store(*, data: bytes, name: str) -> str:
    """Store image bytes under their content-addressed name; identical bytes share one file."""
    path = f"images/{name}"
    if default_storage.exists(path):
        return path
    return default_storage.save(path, ContentFile(data))


def pairs_form(*, prompt: Prompt) -> list[Pair]:
    """Pair the images of every seed whose images are all done.

    By default the base image is paired with each fine-tuned one; a study that asks for it
    gets every two variants. `a` is always the base, or the first variant by name.
    """
    every_two = prompt.batch.study.pair_every_two_variants
    images = list(prompt.images.select_related("variant").order_by("seed", "variant__name"))
    by_seed: dict[int, list[Image]] = {}
    for image in images:
        by_seed.setdefault(image.seed, []).append(image)
    formed = []
    for seed, seed_images in by_seed.items():
        if any(image.status != Image.Status.DONE for image in seed_images):
            continue
        # Base first, so that `a` is the base whenever a base takes part.
        seed_images.sort(key=lambda i: (i.variant.role != ModelVariant.Role.BASE, i.variant.name))
        if every_two:
            couples = list(combinations(seed_images, 2))
        else:
            bases = [i for i in seed_images if i.variant.role == ModelVariant.Role.BASE]
            tuned = [i for i in seed_images if i.variant.role == ModelVariant.Role.FINETUNED]
            couples = list(product(bases, tuned))
        for image_a, image_b in couples:
            pair, _ = Pair.objects.get_or_create(
                image_a=image_a,
                image_b=image_b,
                defaults={
                    "study_id": prompt.batch.study_id,
                    "prompt": prompt,
                    "seed": seed,
                    "variant_a": image_a.variant,
                    "variant_b": image_b.variant,
                },
            )
            formed.append(pair)
    # Coverage rows now, while the pairs are few, so assignment never has to make them.
    pair_coverage_create(pairs=formed)
    return formed


def _batch_mark_running(batch: PromptBatch) -> None:
    PromptBatch.objects.filter(pk=batch.pk, status=PromptBatch.Status.QUEUED).update(
        status=PromptBatch.Status.RUNNING
    )


def batch_refresh_status(*, batch: PromptBatch) -> PromptBatch.Status:
    """Mark a batch done (or failed) once none of its images is queued or running."""
    with transaction.atomic():
        # The batch row lock orders this after a concurrent retry or cancel (they take it
        # too), so a batch is never closed while a retry is putting images back in the queue.
        locked = PromptBatch.objects.select_for_update().get(pk=batch.pk)
        counts = Image.objects.filter(prompt__batch=locked).aggregate(
            open=Count("id", filter=Q(status__in=[Image.Status.QUEUED, Image.Status.RUNNING])),
            failed=Count("id", filter=Q(status=Image.Status.FAILED)),
        )
        if counts["open"] == 0 and locked.status in _BATCH_OPEN:
            final = PromptBatch.Status.FAILED if counts["failed"] else PromptBatch.Status.DONE
            PromptBatch.objects.filter(pk=locked.pk).update(
                status=final, finished_at=timezone.now()
            )
    batch.refresh_from_db(fields=["status", "finished_at"])
    return PromptBatch.Status(batch.status)


# Batch control: cancel and retry.


def batch_cancel(*, batch: PromptBatch) -> int:
    """Cancel a batch: its queued images become cancelled, so their tasks render nothing.

    Images already running finish. Return how many images were cancelled.
    """
    with transaction.atomic():
        # The row lock makes a worker's batch_refresh_status wait, then find the batch cancelled.
        locked = PromptBatch.objects.select_for_update().get(pk=batch.pk)
        # Conditional, as the claim is: each queued image is either claimed or cancelled.
        cancelled = Image.objects.filter(
            prompt__batch_id=locked.pk, status=Image.Status.QUEUED
        ).update(status=Image.Status.CANCELLED)
        if cancelled or locked.status in _BATCH_OPEN:
            PromptBatch.objects.filter(pk=locked.pk).update(
                status=PromptBatch.Status.CANCELLED, finished_at=timezone.now()
            )
    batch.refresh_from_db(fields=["status", "finished_at"])
    logger.info("Cancelled batch %s: %d queued images cancelled", batch.pk, cancelled)
    return cancelled


def batch_retry_failed(*, batch: PromptBatch) -> int:
    """Return a batch's failed images to the queue, errors cleared, and enqueue their renders.

    Return how many images were queued again. A cancelled batch is refused: it stays stopped.
    """
    with transaction.atomic():
        locked = PromptBatch.objects.select_for_update().get(pk=batch.pk)
        if locked.status == PromptBatch.Status.CANCELLED:
            raise BatchRefused(f"Batch {locked.pk} was cancelled; its failed images stay failed.")
        failed = list(
            Image.objects.select_for_update(of=("self",))
            .filter(prompt__batch_id=locked.pk, status=Image.Status.FAILED)
            .values_list("pk", "prompt_id", "seed")
        )
        if not failed:
            return 0
        # The rows are locked, so every one of them is still failed and goes back.
        retried = Image.objects.filter(
            pk__in=[pk for pk, _, _ in failed], status=Image.Status.FAILED
        ).update(
            status=Image.Status.QUEUED,
            error="",
            claimed_by="",
            worker="",
            started_at=None,
            finished_at=None,
            render_ms=None,
        )
        if locked.status not in _BATCH_OPEN:
            # A worker marks it running again when it claims the first image.
            PromptBatch.objects.filter(pk=locked.pk).update(
                status=PromptBatch.Status.QUEUED, finished_at=None
            )
        seeds_by_prompt: dict[int, set[int]] = {}
        for _, prompt_id, seed in failed:
            seeds_by_prompt.setdefault(prompt_id, set()).add(seed)
        for prompt in Prompt.objects.filter(pk__in=seeds_by_prompt):
            render_tasks_enqueue(prompt=prompt, seeds=sorted(seeds_by_prompt[prompt.pk]))
    batch.refresh_from_db(fields=["status", "finished_at"])
    logger.info("Queued %d failed images of batch %s again", retried, batch.pk)
    return retried
