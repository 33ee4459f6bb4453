"""Services of prompt batches: queue one, cancel it, retry its failures, send its queued images
again, requeue stuck images."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone, translation

from generation.batch_files import PromptRow
from generation.models import MAX_SEED, Image, ModelVariant, Prompt, PromptBatch
from generation.rendering.services import BATCH_OPEN
from generation.rendering.tasks import render_tasks_enqueue
from ratings.models import Cohort, Study

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)


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
            # The text as written is the default language's; translations go beside it.
            with translation.override(settings.LANGUAGE_CODE):
                prompt = Prompt.objects.create(
                    batch=batch,
                    text=row.text,
                    cohort=cohorts[row.cohort_path],
                    category=row.category,
                    source_line=row.line,
                    **{f"text_{code}": text for code, text in row.translations},
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
    sizes = {(variant.width, variant.height) for variant in variants}
    if len(sizes) > 1:
        # Images of different sizes would tell a rater which model made which.
        named = ", ".join(f"{v.name} ({v.width} x {v.height})" for v in variants)
        problems.append(
            f"The variants render images of different sizes: {named}. A pair's two images "
            "must have the same width and height, or their size tells which model made each."
        )
    if seeds_per_prompt < 1:
        problems.append("Each prompt needs at least one seed.")
    return problems


def _seeds_draw(count: int, rng: random.Random) -> list[int]:
    seeds: set[int] = set()
    while len(seeds) < count:
        seeds.add(rng.randint(0, MAX_SEED))
    return sorted(seeds)


def images_requeue_stuck(*, now: datetime | None = None) -> int:
    """Send images whose render stalled back to the queue; return how many were sent.

    Two ways an image stalls, whatever caused it:
    - running, with a lapsed lease: its worker stopped renewing it (killed, pre-empted, its
      main process SIGKILLed with the message unacknowledged). It is queued again, its claim
      cleared, and a new message sent; the claim's holder, if it ever wakes, stores nothing.
      A claim from before leases existed counts as lapsed past the hard time limit + 60 s.
    - queued, its last message sent more than POLYPHONY_REQUEUE_QUEUED_SECONDS ago, while the
      broker holds no waiting render message (or cannot tell): the message was lost (a broker
      restarted without persistence). A new message is sent; were the old one alive after
      all, the conditional claim renders the image once.
    """
    from generation.broker import render_messages_waiting

    now = now or timezone.now()
    legacy_limit = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    lapsed = Q(lease_until__lt=now) | Q(lease_until__isnull=True, started_at__lt=legacy_limit)
    stuck = list(
        Image.objects.filter(lapsed, status=Image.Status.RUNNING)
        .select_related("prompt")
        .order_by("prompt_id", "seed")
    )
    requeued: dict[int, tuple[Prompt, set[int]]] = {}
    running_again = 0
    released_ids: list[int] = []
    for image in stuck:
        released = (
            Image.objects.filter(
                pk=image.pk, status=Image.Status.RUNNING, claimed_by=image.claimed_by
            )
            .filter(lapsed)
            .update(status=Image.Status.QUEUED, claimed_by="", worker="", lease_until=None)
        )
        if released:
            running_again += 1
            released_ids.append(image.pk)
            requeued.setdefault(image.prompt_id, (image.prompt, set()))[1].add(image.seed)
    unsent = now - timedelta(seconds=settings.POLYPHONY_REQUEUE_QUEUED_SECONDS)
    orphans = (
        Image.objects.filter(status=Image.Status.QUEUED)
        .filter(Q(enqueued_at__lt=unsent) | Q(enqueued_at__isnull=True, queued_at__lt=unsent))
        .exclude(pk__in=released_ids)
        .select_related("prompt")
        .order_by("prompt_id", "seed")
    )
    resent = 0
    if orphans.exists() and not render_messages_waiting():
        for image in orphans:
            requeued.setdefault(image.prompt_id, (image.prompt, set()))[1].add(image.seed)
            resent += 1
    with transaction.atomic():
        for prompt, seeds in requeued.values():
            render_tasks_enqueue(prompt=prompt, seeds=sorted(seeds))
    if running_again:
        logger.warning("Returned %d images with lapsed render leases to the queue", running_again)
    if resent:
        logger.warning("Sent %d queued images whose render message was lost again", resent)
    return running_again + resent


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
        if cancelled or locked.status in BATCH_OPEN:
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
        if locked.status not in BATCH_OPEN:
            # A worker marks it running again when it claims the first image.
            PromptBatch.objects.filter(pk=locked.pk).update(
                status=PromptBatch.Status.QUEUED, finished_at=None
            )
        _renders_enqueue(images=[(prompt_id, seed) for _, prompt_id, seed in failed])
    batch.refresh_from_db(fields=["status", "finished_at"])
    logger.info("Queued %d failed images of batch %s again", retried, batch.pk)
    return retried


def batch_resend(*, batch: PromptBatch) -> int:
    """Send a message for every queued image of a batch again, now; return how many images.

    By hand, for an operator who knows the broker lost messages and will not wait for the
    periodic requeue (`images_requeue_stuck`). Safe however many messages are alive: a worker
    renders an image only if its conditional claim wins, so each is rendered and stored once.
    A cancelled batch is refused.
    """
    with transaction.atomic():
        locked = PromptBatch.objects.select_for_update().get(pk=batch.pk)
        if locked.status == PromptBatch.Status.CANCELLED:
            raise BatchRefused(f"Batch {locked.pk} was cancelled; nothing was sent.")
        queued = list(
            Image.objects.filter(
                prompt__batch_id=locked.pk, status=Image.Status.QUEUED
            ).values_list("prompt_id", "seed")
        )
        _renders_enqueue(images=queued)
    sent = len(queued)
    logger.info("Sent the %d queued images of batch %s to the render queue again", sent, batch.pk)
    return sent


def _renders_enqueue(*, images: Sequence[tuple[int, int]]) -> None:
    """Enqueue renders, on commit, for images given as (prompt id, seed): a prompt's seeds go
    together, in chunks (render_tasks_enqueue)."""
    seeds_by_prompt: dict[int, set[int]] = {}
    for prompt_id, seed in images:
        seeds_by_prompt.setdefault(prompt_id, set()).add(seed)
    for prompt in Prompt.objects.filter(pk__in=seeds_by_prompt):
        render_tasks_enqueue(prompt=prompt, seeds=sorted(seeds_by_prompt[prompt.pk]))
