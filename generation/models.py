"""Model variants, prompt batches, prompts and rendered images."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

if TYPE_CHECKING:
    from generation.pipeline import RenderSpec

MAX_SEED = 2**32 - 1


class ModelVariant(models.Model):
    """A way to render images: a base checkpoint, optionally with a LoRA adapter, and settings."""

    class Role(models.TextChoices):
        BASE = "base", "base"
        FINETUNED = "finetuned", "fine-tuned"
        # Known only by name from votes imported from an earlier survey; never rendered.
        IMPORTED = "imported", "imported"

    class Scheduler(models.TextChoices):
        DPM_MULTISTEP = "dpm_multistep", "DPM-Solver multistep"
        DDIM = "ddim", "DDIM"
        EULER = "euler", "Euler"
        EULER_ANCESTRAL = "euler_ancestral", "Euler ancestral"

    class Dtype(models.TextChoices):
        AUTO = "auto", "auto (fp16 on CUDA, fp32 elsewhere)"
        FLOAT16 = "float16", "fp16"
        BFLOAT16 = "bfloat16", "bf16"
        FLOAT32 = "float32", "fp32"

    name = models.SlugField(max_length=80, unique=True)
    role = models.CharField(max_length=10, choices=Role.choices)
    base_checkpoint = models.CharField(
        max_length=500,
        blank=True,
        help_text="A local diffusers folder, or a hub id on an online host.",
    )
    lora_path = models.CharField(max_length=500, blank=True)
    lora_scale = models.FloatField(default=1.0)
    scheduler = models.CharField(
        max_length=20, choices=Scheduler.choices, default=Scheduler.DPM_MULTISTEP
    )
    steps = models.PositiveSmallIntegerField(default=50)
    guidance = models.FloatField(default=4.5)
    width = models.PositiveSmallIntegerField(default=512)
    height = models.PositiveSmallIntegerField(default=512)
    negative_prompt = models.TextField(blank=True)
    dtype = models.CharField(max_length=10, choices=Dtype.choices, default=Dtype.AUTO)
    fingerprint = models.CharField(
        max_length=64,
        blank=True,
        editable=False,
        help_text="SHA-256 of the settings and every weight file, taken when last checked.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(role__in=["base", "finetuned", "imported"]), name="variant_role_valid"
            ),
            models.CheckConstraint(
                condition=Q(role="imported") | ~Q(base_checkpoint=""),
                name="variant_checkpoint_unless_imported",
                violation_error_message="A variant that renders needs a base checkpoint.",
            ),
            models.CheckConstraint(condition=Q(steps__gte=1), name="variant_steps_positive"),
            models.CheckConstraint(
                condition=Q(width__gte=8) & Q(height__gte=8), name="variant_size_positive"
            ),
            models.CheckConstraint(
                condition=Q(guidance__gte=0), name="variant_guidance_nonnegative"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # Settings and model files are checked by generation.variants.variant_problems, which the
        # admin form and check_variant run, so its sentences are not repeated here.
        if not self.lora_path and self.lora_scale != 1.0:
            raise ValidationError(
                {"lora_scale": "A LoRA scale needs a LoRA path; leave it at 1 without one."}
            )

    def render_spec(self) -> RenderSpec:
        from generation.pipeline import RenderSpec  # torch is heavy; only workers need it

        return RenderSpec(
            base_checkpoint=self.base_checkpoint,
            lora_path=self.lora_path,
            lora_scale=self.lora_scale,
            scheduler=self.scheduler,
            steps=self.steps,
            guidance=self.guidance,
            width=self.width,
            height=self.height,
            negative_prompt=self.negative_prompt,
            dtype=self.dtype,
        )


class PromptBatch(models.Model):
    """Prompts of one study queued together, to be rendered by every chosen variant."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "finished with failures"
        CANCELLED = "cancelled", "cancelled"

    study = models.ForeignKey("ratings.Study", on_delete=models.PROTECT, related_name="batches")
    queued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    variants = models.ManyToManyField(ModelVariant, related_name="batches")
    seeds_per_prompt = models.PositiveSmallIntegerField(default=4)
    source_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "prompt batches"
        constraints = [
            models.CheckConstraint(
                condition=Q(seeds_per_prompt__gte=1), name="batch_seeds_per_prompt_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"batch {self.pk} ({self.study})"


class Prompt(models.Model):
    batch = models.ForeignKey(PromptBatch, on_delete=models.CASCADE, related_name="prompts")
    text = models.TextField()
    cohort = models.ForeignKey("ratings.Cohort", on_delete=models.PROTECT, related_name="prompts")
    category = models.CharField(max_length=40, blank=True)
    source_line = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(text=""), name="prompt_text_not_empty"),
        ]

    def __str__(self) -> str:
        return self.text


class Image(models.Model):
    """One prompt rendered by one variant from one seed."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="images")
    variant = models.ForeignKey(ModelVariant, on_delete=models.PROTECT, related_name="images")
    seed = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    # Content-addressed: the name is the SHA-256 of the bytes, so it says nothing of the model.
    file = models.FileField(upload_to="images/", blank=True)
    # The lighter WebP rendition raters are shown; also content-addressed.
    preview = models.FileField(upload_to="images/", blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    # The id of the task holding the claim: a redelivered task (same id) may take it back.
    claimed_by = models.CharField(max_length=100, blank=True)
    # The claim's lease: the rendering worker renews it; one that lapsed (its worker died,
    # whatever killed it) sends the image back to the queue.
    lease_until = models.DateTimeField(null=True, blank=True)
    # When a render message for it was last sent: a queued image whose message was lost (a
    # broker restarted without persistence) is sent again past POLYPHONY_REQUEUE_QUEUED_SECONDS.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    render_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "variant", "seed"], name="image_once_per_prompt_variant_seed"
            ),
            models.CheckConstraint(
                condition=Q(seed__gte=0) & Q(seed__lte=MAX_SEED), name="image_seed_in_range"
            ),
            models.CheckConstraint(
                condition=~Q(status="done") | ~Q(file=""), name="image_done_has_file"
            ),
        ]
        indexes = [models.Index(fields=["status"], name="image_status")]

    def __str__(self) -> str:
        return f"image {self.pk}"
