"""Staff pages: queue a prompt batch in two steps, follow its progress, cancel or retry it."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.views.decorators.http import require_http_methods, require_POST

from generation import selectors, services
from generation.forms import BatchQueueForm
from generation.models import Image, PromptBatch

# Previews waiting for confirmation, by token, in the session; only the newest few are kept.
PREVIEWS_SESSION_KEY = "generation:batch_previews"
PREVIEWS_KEPT = 5
PREVIEW_SAMPLE_ROWS = 10


def _preview_store(session: SessionBase, carried: dict[str, Any]) -> str:
    token = secrets.token_urlsafe(16)
    previews = session.get(PREVIEWS_SESSION_KEY, {})
    previews[token] = carried
    session[PREVIEWS_SESSION_KEY] = dict(list(previews.items())[-PREVIEWS_KEPT:])
    return token


def _queue_page(request: HttpRequest, form: BatchQueueForm) -> HttpResponse:
    return render(
        request,
        "generation/batch_queue.html",
        {"form": form, "study_variants": selectors.variant_ids_by_study()},
    )


@staff_member_required
@permission_required("generation.add_promptbatch", raise_exception=True)
@require_http_methods(["GET", "POST"])
def batch_queue(request: HttpRequest) -> HttpResponse:
    """Step 1: choose study, variants and seeds, give the prompts; every bad row is listed."""
    if request.method == "POST":
        form = BatchQueueForm(request.POST, request.FILES)
        if form.is_valid():
            token = _preview_store(request.session, form.cleaned_data["carried"])
            return redirect("generation:batch_queue_preview", token=token)
        return _queue_page(request, form)
    carried = request.session.get(PREVIEWS_SESSION_KEY, {}).get(request.GET.get("edit", ""))
    if carried:
        # Back from a preview to change it: a file's text comes back as pasted rows.
        initial = {key: carried[key] for key in ("study", "variants", "seeds_per_prompt")}
        initial["pasted_rows"] = carried["text"]
    else:
        initial = {"study": request.GET.get("study")}
    return _queue_page(request, BatchQueueForm(initial=initial))


@staff_member_required
@permission_required("generation.add_promptbatch", raise_exception=True)
@require_http_methods(["GET", "POST"])
def batch_queue_preview(request: HttpRequest, token: str) -> HttpResponse:
    """Step 2: show what would be queued; on POST, check it all again and queue it once."""
    previews = request.session.get(PREVIEWS_SESSION_KEY, {})
    carried = previews.get(token)
    if carried is None:
        messages.warning(request, "That preview was already queued or has expired.")
        return redirect("generation:batch_queue")
    form = BatchQueueForm.from_carried(carried)
    if not form.is_valid():
        # Cohorts or variants changed since the preview: show what is wrong now.
        return _queue_page(request, form)
    cleaned = form.cleaned_data
    if request.method == "GET":
        preview = selectors.batch_preview(
            rows=cleaned["rows"],
            variants=list(cleaned["variants"]),
            seeds_per_prompt=cleaned["seeds_per_prompt"],
        )
        return render(
            request,
            "generation/batch_preview.html",
            {
                "study": cleaned["study"],
                "preview": preview,
                "seeds_per_prompt": cleaned["seeds_per_prompt"],
                "sample": cleaned["rows"][:PREVIEW_SAMPLE_ROWS],
                "token": token,
            },
        )
    # Forget the preview first, so that a second submission of it queues nothing.
    del previews[token]
    request.session[PREVIEWS_SESSION_KEY] = previews
    try:
        batch = services.batch_queue(
            study=cleaned["study"],
            rows=cleaned["rows"],
            variants=list(cleaned["variants"]),
            seeds_per_prompt=cleaned["seeds_per_prompt"],
            queued_by=request.user,
            source_name=cleaned["source_name"],
        )
    except services.BatchRefused as refusal:
        messages.error(request, f"{refusal} Nothing was queued.")
        return redirect("generation:batch_queue")
    prompts = len(cleaned["rows"])
    images = Image.objects.filter(prompt__batch=batch).count()
    messages.success(
        request,
        f"Queued batch {batch.pk}: {prompts} prompt{pluralize(prompts)}, "
        f"{images} image{pluralize(images)}.",
    )
    return redirect("generation:batch_progress", pk=batch.pk)


@staff_member_required
@permission_required("generation.view_promptbatch", raise_exception=True)
def batch_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a batch's images by status, its pace and ETA; the page refreshes itself."""
    batch = get_object_or_404(PromptBatch.objects.select_related("study", "queued_by"), pk=pk)
    return render(
        request,
        "generation/batch_progress.html",
        {"batch": batch, "progress": selectors.batch_progress(batch=batch)},
    )


@staff_member_required
@permission_required("generation.change_promptbatch", raise_exception=True)
@require_POST
def batch_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    batch = get_object_or_404(PromptBatch, pk=pk)
    was_open = batch.status in (PromptBatch.Status.QUEUED, PromptBatch.Status.RUNNING)
    cancelled = services.batch_cancel(batch=batch)
    if cancelled or was_open:
        messages.success(
            request,
            f"Cancelled batch {batch.pk}: {cancelled} queued image{pluralize(cancelled)} "
            "will not be rendered; images already rendering will finish.",
        )
    else:
        messages.info(
            request, f"Batch {batch.pk} is {batch.get_status_display()}; nothing to cancel."
        )
    return redirect("generation:batch_progress", pk=batch.pk)


@staff_member_required
@permission_required("generation.change_promptbatch", raise_exception=True)
@require_POST
def batch_retry_failed(request: HttpRequest, pk: int) -> HttpResponse:
    batch = get_object_or_404(PromptBatch, pk=pk)
    try:
        retried = services.batch_retry_failed(batch=batch)
    except services.BatchRefused as refusal:
        messages.error(request, str(refusal))
        return redirect("generation:batch_progress", pk=batch.pk)
    if retried:
        messages.success(
            request,
            f"Queued {retried} failed image{pluralize(retried)} of batch {batch.pk} again.",
        )
    else:
        messages.info(request, f"Batch {batch.pk} has no failed images to retry.")
    return redirect("generation:batch_progress", pk=batch.pk)
