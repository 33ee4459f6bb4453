"""What a worker does with a prompt: claim its images, render them, store the files, form the
pairs, and close the batch when nothing of it is left to render.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import combinations, product
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from generation.models import Image, ModelVariant, Prompt, PromptBatch
from ratings.assignment.coverage import pair_coverage_create
from ratings.models import Pair

if TYPE_CHECKING:
    from generation.pipeline import Renderer

logger = logging.getLogger(__name__)

# Errors worth retrying the task for: the database or broker went away for a moment.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
)


BATCH_OPEN = (PromptBatch.Status.QUEUED, PromptBatch.Status.RUNNING)


def lease_expiry(now: datetime | None = None) -> datetime:
    """When a claim taken or renewed now lapses unless renewed again."""
    return (now or timezone.now()) + timedelta(seconds=settings.POLYPHONY_RENDER_LEASE_SECONDS)


def images_claim(
    *, image_ids: Sequence[int], claim: str, worker: str = "", now: datetime | None = None
) -> list[int]:
    """Claim images for rendering; return the ids this caller won.

    The conditional update is the lock: a queued row is claimed once. A running row is taken
    back only by the same claim (the same task id, redelivered after its pool child died), so
    a duplicate delivery of another task renders nothing twice. The claim carries a lease
    (POLYPHONY_RENDER_LEASE_SECONDS) that the worker renews while it renders (RenderLease).
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
            lease_until=lease_expiry(now),
            attempts=F("attempts") + 1,
        )
        if claimed == 1:
            won.append(image_id)
    return won


def leases_renew(*, image_ids: Sequence[int], claim: str) -> int:
    """Renew the lease of this claim's images still running; return how many were renewed."""
    return Image.objects.filter(
        pk__in=list(image_ids), status=Image.Status.RUNNING, claimed_by=claim[:100]
    ).update(lease_until=lease_expiry())


class RenderLease:
    """Renew a claim's lease from a thread while the worker renders (a context manager).

    Every third of the lease; a renewal that fails (the database away for a moment) is tried
    again at the next beat. The thread has its own database connection and closes it.
    """

    def __init__(self, *, image_ids: Sequence[int], claim: str) -> None:
        self.image_ids = list(image_ids)
        self.claim = claim
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="render-lease", daemon=True)

    def _run(self) -> None:
        interval = max(0.5, settings.POLYPHONY_RENDER_LEASE_SECONDS / 3)
        try:
            while not self._stop.wait(interval):
                try:
                    leases_renew(image_ids=self.image_ids, claim=self.claim)
                except TRANSIENT_ERRORS:
                    logger.warning("Could not renew the render lease of %s", self.claim)
                    connection.close()
        finally:
            connection.close()

    def __enter__(self) -> RenderLease:
        if self.image_ids and self.claim:
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


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
        # In random order: nothing stored (a file, a row's times) may follow the variants' roles.
        order = list(by_variant.values())
        secrets.SystemRandom().shuffle(order)
        with RenderLease(image_ids=claimed, claim=claim):
            for variant_images in order:
                rendered += _variant_render(
                    images=variant_images,
                    prompt=prompt,
                    renderer=renderer,
                    claim=claim,
                    batch_size=batch_size or settings.POLYPHONY_RENDER_BATCH_SIZE or None,
                )
    pairs_form(prompt=prompt)
    batch_refresh_status(batch=prompt.batch)
    return rendered


def _variant_render(
    *, images: list[Image], prompt: Prompt, renderer: Renderer, claim: str, batch_size: int | None
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
            _images_fail(images=pending, claim=claim, error=f"{type(exc).__name__}: {exc}")
            return rendered
        per_image_ms = int((time.perf_counter() - started) * 1000 / len(group))
        for image, picture in zip(group, pictures, strict=True):
            rendered += _image_store(
                image=image,
                picture=picture,
                claim=claim,
                fingerprint=fingerprint,
                render_ms=per_image_ms,
            )
        pending = pending[len(group) :]
    if variant.fingerprint != fingerprint:
        ModelVariant.objects.filter(pk=variant.pk).update(fingerprint=fingerprint)
    return rendered


def _image_store(*, image: Image, picture, claim: str, fingerprint: str, render_ms: int) -> int:
    """Store a rendered image if this claim still holds it; return 1 if it did, else 0.

    The files are named by their hash, so a render that lost its claim (its lease lapsed and
    another worker took the image) writes the same names at most, and stores nothing.
    """
    from generation.image_files import content_name, encode_png, encode_webp

    png = encode_png(picture)
    webp = encode_webp(picture)
    file_name = image_file_store(data=png, name=content_name(png, ".png"))
    preview_name = image_file_store(data=webp, name=content_name(webp, ".webp"))
    stored = Image.objects.filter(
        pk=image.pk, status=Image.Status.RUNNING, claimed_by=claim[:100]
    ).update(
        status=Image.Status.DONE,
        lease_until=None,
        file=file_name,
        preview=preview_name,
        fingerprint=fingerprint,
        error="",
        finished_at=timezone.now(),
        render_ms=render_ms,
    )
    if stored:
        logger.info("Rendered image %s", image.pk)
    else:
        logger.warning("Image %s was rendered after its claim lapsed; not stored", image.pk)
    return stored


def _images_fail(*, images: Sequence[Image], claim: str, error: str) -> None:
    Image.objects.filter(
        pk__in=[i.pk for i in images], status=Image.Status.RUNNING, claimed_by=claim[:100]
    ).update(
        status=Image.Status.FAILED, error=error[:2000], finished_at=timezone.now(), lease_until=None
    )


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
        if counts["open"] == 0 and locked.status in BATCH_OPEN:
            final = PromptBatch.Status.FAILED if counts["failed"] else PromptBatch.Status.DONE
            PromptBatch.objects.filter(pk=locked.pk).update(
                status=final, finished_at=timezone.now()
            )
    batch.refresh_from_db(fields=["status", "finished_at"])
    return PromptBatch.Status(batch.status)
