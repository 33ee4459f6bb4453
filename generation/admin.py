from __future__ import annotations

import dataclasses

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.shortcuts import redirect
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.html import format_html

from generation import services
from generation.models import Image, ModelVariant, Prompt, PromptBatch
from generation.pipeline import RenderSpec, spec_fingerprint
from generation.variants import variant_problems


class ModelVariantForm(forms.ModelForm):
    """Edit a variant, refusing settings or model files that would fail to load or render."""

    class Meta:
        model = ModelVariant
        fields = [
            "name",
            "role",
            "base_checkpoint",
            "lora_path",
            "lora_scale",
            "scheduler",
            "steps",
            "guidance",
            "width",
            "height",
            "negative_prompt",
            "dtype",
        ]
        help_texts = {
            "base_checkpoint": (
                "A local diffusers folder; a single-file .safetensors or .ckpt checkpoint, "
                "configured by a diffusers folder of the same name beside it (model.safetensors "
                "and model/) or by the diffusers folder holding it; or a hub id on an online host."
            ),
            "lora_path": (
                "Optional: a LoRA .safetensors file, or a folder holding "
                "pytorch_lora_weights.safetensors."
            ),
        }

    def clean(self) -> dict:
        cleaned = super().clean()
        spec_fields = [field.name for field in dataclasses.fields(RenderSpec)]
        # A field that failed its own validation already has an error; check the rest later.
        if all(name in cleaned for name in spec_fields):
            spec = RenderSpec(**{name: cleaned[name] for name in spec_fields})
            problems = variant_problems(spec)
            if problems:
                raise ValidationError(problems)
        return cleaned

    def save(self, commit: bool = True) -> ModelVariant:
        # Taken from the files as they are now; check_variant and every render refresh it.
        self.instance.fingerprint = spec_fingerprint(self.instance.render_spec())
        return super().save(commit)


@admin.register(ModelVariant)
class ModelVariantAdmin(admin.ModelAdmin):
    form = ModelVariantForm
    list_display = [
        "name",
        "role",
        "base_checkpoint",
        "lora_path",
        "scheduler",
        "steps",
        "fingerprint",
    ]
    readonly_fields = ["fingerprint"]


class PromptInline(admin.TabularInline):
    model = Prompt
    extra = 0
    # The text the images were rendered from stays as it is; its translations, which raters
    # read in their language, are edited beside it.
    fields = [
        "source_line",
        f"text_{settings.LANGUAGE_CODE}",
        *(f"text_{code}" for code, _ in settings.TEXT_LANGUAGES if code != settings.LANGUAGE_CODE),
        "cohort",
        "category",
    ]
    readonly_fields = ["source_line", f"text_{settings.LANGUAGE_CODE}", "cohort", "category"]
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PromptBatch)
class PromptBatchAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "study",
        "status",
        "images_done",
        "progress_link",
        "queued_by",
        "created_at",
    ]
    list_filter = ["status", "study"]
    list_select_related = ["study", "queued_by"]
    inlines = [PromptInline]
    fields = [
        "study",
        "status",
        "variants",
        "seeds_per_prompt",
        "source_name",
        "queued_by",
        "created_at",
        "finished_at",
        "progress_link",
    ]
    # A queued batch is a record of what was rendered; it changes only by cancel and retry.
    readonly_fields = fields
    actions = ["cancel_batches", "retry_failed_images", "resend_queued_images"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                images_total=Count("prompts__images"),
                images_finished=Count(
                    "prompts__images", filter=Q(prompts__images__status=Image.Status.DONE)
                ),
            )
        )

    def add_view(self, request, form_url="", extra_context=None):
        # Batches are queued on their own page, which checks every row and shows a preview.
        if not self.has_add_permission(request):
            raise PermissionDenied
        return redirect("generation:batch_queue")

    def view_on_site(self, obj: PromptBatch) -> str:
        return reverse("generation:batch_progress", args=[obj.pk])

    @admin.display(description="images done")
    def images_done(self, obj: PromptBatch) -> str:
        return f"{obj.images_finished} / {obj.images_total}"

    @admin.display(description="progress")
    def progress_link(self, obj: PromptBatch) -> str:
        return format_html('<a href="{}">Progress</a>', self.view_on_site(obj))

    @admin.action(description="Cancel the selected batches", permissions=["change"])
    def cancel_batches(self, request, queryset) -> None:
        cancelled = sum(services.batch_cancel(batch=batch) for batch in queryset)
        self.message_user(
            request, f"Cancelled {cancelled} queued image{pluralize(cancelled)}.", messages.SUCCESS
        )

    @admin.action(
        description="Retry the failed images of the selected batches", permissions=["change"]
    )
    def retry_failed_images(self, request, queryset) -> None:
        retried = self._each_batch(request, queryset, services.batch_retry_failed)
        self.message_user(
            request, f"Queued {retried} failed image{pluralize(retried)} again.", messages.SUCCESS
        )

    @admin.action(
        description="Send the queued images of the selected batches to the workers again",
        permissions=["change"],
    )
    def resend_queued_images(self, request, queryset) -> None:
        sent = self._each_batch(request, queryset, services.batch_resend)
        self.message_user(
            request, f"Sent {sent} queued image{pluralize(sent)} again.", messages.SUCCESS
        )

    def _each_batch(self, request, queryset, service) -> int:
        """Call a batch service on each selected batch; say each refusal; return the total."""
        total = 0
        for batch in queryset:
            try:
                total += service(batch=batch)
            except services.BatchRefused as refusal:
                self.message_user(request, str(refusal), messages.WARNING)
        return total


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt", "variant", "seed", "status", "render_ms", "finished_at"]
    list_filter = ["status", "variant"]
    raw_id_fields = ["prompt"]
