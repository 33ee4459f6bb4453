"""Selectors that read generation state: batch files checked against the database, previews of
a batch about to be queued, and the progress of queued batches."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone

from generation.batch_files import PromptRow, prompt_rows_parse
from generation.models import Image, ModelVariant, PromptBatch
from generation.tokens import token_rule_for
from ratings.models import Cohort, Study

# Images per minute are measured over this window, so the rate follows the workers now running.
RATE_WINDOW = timedelta(minutes=10)
# Render times of this many recent images per variant make the estimate of a new batch.
ESTIMATE_SAMPLE = 200


def batch_rows_parse(
    *, data: bytes, filename: str, variants: Sequence[ModelVariant]
) -> list[PromptRow]:
    """Return a batch file's rows checked against the known cohorts and the variants' tokenizers.

    Raise BatchFileError naming every bad line. A prompt is refused when any chosen variant's
    text encoder would cut it (see generation.tokens); variants without a local tokenizer are
    not checked.
    """
    rule = token_rule_for(variant.base_checkpoint for variant in variants)
    return prompt_rows_parse(
        data,
        filename=filename,
        known_cohorts=Cohort.objects.values_list("path", flat=True),
        token_count=rule.count,
        max_tokens=rule.max_tokens,
        languages=prompt_languages(),
    )


def prompt_languages() -> list[str]:
    """Return the languages a prompt may be translated into: those with text columns (all but
    the default)."""
    return [code for code, _ in settings.TEXT_LANGUAGES if code != settings.LANGUAGE_CODE]


def variant_ids_by_study() -> dict[int, list[int]]:
    """Return the ids of each study's variants, for ticking them when a study is chosen."""
    by_study: dict[int, list[int]] = {}
    for study_id, variant_id in Study.variants.through.objects.values_list(
        "study_id", "modelvariant_id"
    ):
        by_study.setdefault(study_id, []).append(variant_id)
    return by_study


@dataclass(frozen=True)
class BatchPreview:
    """What queueing these rows would do, shown before anything is queued."""

    prompts: int
    images: int
    images_per_variant: int
    variants: tuple[ModelVariant, ...]
    prompts_per_cohort: tuple[tuple[str, int], ...]
    rows_with_own_seeds: int
    # Rough GPU time on one worker; None until some image of these variants was rendered.
    estimate_seconds: int | None
    # True when some variant has no history and the others' render times stood in for it.
    estimate_borrowed: bool
    queued_ahead: int
    unchecked_checkpoints: tuple[str, ...]
    # Rough time until the images queued ahead are rendered (None without render history).
    ahead_seconds: int | None = None

    @property
    def ready_seconds(self) -> int | None:
        """Rough time until this batch would be rendered: what is queued ahead, then itself."""
        if self.estimate_seconds is None:
            return None
        return self.estimate_seconds + (self.ahead_seconds or 0)


def batch_preview(
    *, rows: Sequence[PromptRow], variants: Sequence[ModelVariant], seeds_per_prompt: int
) -> BatchPreview:
    """Return how many prompts and images these rows would queue, and about how long they take."""
    variants = tuple(variants)
    images_per_variant = sum(len(row.seeds or ()) or seeds_per_prompt for row in rows)
    medians = {variant.pk: _render_ms_median(variant=variant) for variant in variants}
    known = [median for median in medians.values() if median is not None]
    estimate_seconds = None
    if known:
        # A variant with no history is assumed as slow as the slowest known one.
        stand_in = max(known)
        total_ms = sum(
            images_per_variant * (median if median is not None else stand_in)
            for median in medians.values()
        )
        estimate_seconds = round(total_ms / 1000)
    rule = token_rule_for(variant.base_checkpoint for variant in variants)
    ahead = images_open_count()
    return BatchPreview(
        prompts=len(rows),
        images=images_per_variant * len(variants),
        images_per_variant=images_per_variant,
        variants=variants,
        prompts_per_cohort=tuple(sorted(Counter(row.cohort_path for row in rows).items())),
        rows_with_own_seeds=sum(1 for row in rows if row.seeds),
        estimate_seconds=estimate_seconds,
        estimate_borrowed=bool(known) and len(known) < len(medians),
        queued_ahead=ahead,
        unchecked_checkpoints=rule.unchecked,
        ahead_seconds=_ahead_seconds(ahead),
    )


def images_open_count(*, before_batch: int | None = None) -> int:
    """Images queued or running in open batches (of batches queued before `before_batch`)."""
    images = Image.objects.filter(
        status__in=[Image.Status.QUEUED, Image.Status.RUNNING],
        prompt__batch__status__in=[PromptBatch.Status.QUEUED, PromptBatch.Status.RUNNING],
    )
    if before_batch is not None:
        images = images.filter(prompt__batch_id__lt=before_batch)
    return images.count()


def _ahead_seconds(images: int) -> int | None:
    """Rough render time of `images` images of any variant, from recent render times."""
    if not images:
        return 0
    recent = list(
        Image.objects.filter(status=Image.Status.DONE, render_ms__isnull=False)
        .order_by("-finished_at")
        .values_list("render_ms", flat=True)[:ESTIMATE_SAMPLE]
    )
    return round(images * statistics.median(recent) / 1000) if recent else None


def _render_ms_median(*, variant: ModelVariant) -> float | None:
    recent = list(
        Image.objects.filter(variant=variant, status=Image.Status.DONE, render_ms__isnull=False)
        .order_by("-finished_at")
        .values_list("render_ms", flat=True)[:ESTIMATE_SAMPLE]
    )
    return statistics.median(recent) if recent else None


@dataclass(frozen=True)
class BatchProgress:
    """Where a batch stands: its images counted by status, its pace, and when it may finish."""

    batch_id: int
    study_slug: str
    study_name: str
    status: str
    status_label: str
    counts: dict[str, int]
    total: int
    prompts: int
    variants: tuple[str, ...]
    seeds_per_prompt: int
    source_name: str
    queued_by: str
    # Images finished per minute over the last RATE_WINDOW while work is open, over the whole
    # run once it is over; None before any image started.
    images_per_minute: float | None
    eta_seconds: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # Images of earlier open batches still queued or running: this batch's place in the queue.
    images_ahead: int = 0

    @property
    def open(self) -> int:
        return self.counts[Image.Status.QUEUED] + self.counts[Image.Status.RUNNING]

    @property
    def finished_share(self) -> float:
        """Return the percentage of images no longer queued or running."""
        return 100 * (self.total - self.open) / self.total if self.total else 0.0

    @property
    def can_cancel(self) -> bool:
        return self.status in (PromptBatch.Status.QUEUED, PromptBatch.Status.RUNNING)

    @property
    def can_retry(self) -> bool:
        return self.counts[Image.Status.FAILED] > 0 and self.status != PromptBatch.Status.CANCELLED

    @property
    def shares(self) -> list[tuple[str, str, int, float]]:
        """Return (status, label, count, percentage) for each image status, in bar order."""
        order = [
            Image.Status.DONE,
            Image.Status.FAILED,
            Image.Status.CANCELLED,
            Image.Status.RUNNING,
            Image.Status.QUEUED,
        ]
        return [
            (
                status.value,
                status.label,
                self.counts[status],
                100 * self.counts[status] / self.total if self.total else 0.0,
            )
            for status in order
        ]


def batch_progress(*, batch: PromptBatch, now: datetime | None = None) -> BatchProgress:
    """Return the progress of a batch, counted from its image rows in one query."""
    now = now or timezone.now()
    window_start = now - RATE_WINDOW
    done = Q(status=Image.Status.DONE)
    stats = Image.objects.filter(prompt__batch=batch).aggregate(
        **{f"n_{status}": Count("id", filter=Q(status=status)) for status in Image.Status.values},
        first_started=Min("started_at"),
        last_finished=Max("finished_at", filter=done),
        done_in_window=Count("id", filter=done & Q(finished_at__gt=window_start)),
    )
    counts = {status: stats[f"n_{status}"] for status in Image.Status.values}
    open_images = counts[Image.Status.QUEUED] + counts[Image.Status.RUNNING]
    first_started: datetime | None = stats["first_started"]
    rate = None
    if first_started is not None and open_images:
        span = now - max(window_start, first_started)
        rate = _per_minute(stats["done_in_window"], span)
    elif first_started is not None and stats["last_finished"] is not None:
        rate = _per_minute(counts[Image.Status.DONE], stats["last_finished"] - first_started)
    open_batch = batch.status in (PromptBatch.Status.QUEUED, PromptBatch.Status.RUNNING)
    ahead = images_open_count(before_batch=batch.pk) if open_batch and open_images else 0
    eta = round(open_images / rate * 60) if rate and open_images else None
    if eta is None and open_batch and open_images:
        # Not started, or no pace yet: what is ahead and this batch, at recent render times.
        eta = _ahead_seconds(ahead + open_images)
    variants = batch.variants.order_by("role", "name").values_list("name", flat=True)
    return BatchProgress(
        batch_id=batch.pk,
        study_slug=batch.study.slug,
        study_name=batch.study.name,
        status=batch.status,
        status_label=PromptBatch.Status(batch.status).label,
        counts=counts,
        total=sum(counts.values()),
        prompts=batch.prompts.count(),
        variants=tuple(variants),
        seeds_per_prompt=batch.seeds_per_prompt,
        source_name=batch.source_name,
        queued_by=batch.queued_by.get_username() if batch.queued_by else "",
        images_per_minute=rate,
        eta_seconds=eta,
        created_at=batch.created_at,
        started_at=first_started,
        finished_at=batch.finished_at,
        images_ahead=ahead,
    )


def _per_minute(count: int, span: timedelta) -> float | None:
    seconds = span.total_seconds()
    # Under a second of history says nothing about a pace.
    return round(count * 60 / seconds, 2) if seconds >= 1 else None


def batches_recent(*, study_slug: str = "", status: str = "") -> QuerySet[PromptBatch]:
    """Return batches newest first, optionally of one study or in one status."""
    batches = PromptBatch.objects.select_related("study", "queued_by").order_by(
        "-created_at", "-pk"
    )
    if study_slug:
        batches = batches.filter(study__slug=study_slug)
    if status:
        batches = batches.filter(status=status)
    return batches
