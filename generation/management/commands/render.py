"""Render a batch by hand: in this process without Celery (`render --batch ID`, with a progress
bar), or by sending its queued images to the render workers again (`--enqueue`)."""

from __future__ import annotations

import time
import uuid

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation import services as batch_services
from generation.models import Image, PromptBatch
from generation.rendering import services


class Command(BaseCommand):
    help = (
        "Render every queued image of a batch in this process, for one machine with no broker; "
        "with --enqueue, send them to the render workers again instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, required=True, help="the batch id")
        parser.add_argument("--device", default="", help="cuda, mps or cpu (default: best)")
        parser.add_argument("--batch-size", type=int, default=0, help="seeds per pipeline call")
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="send the batch's queued images to the render workers again (a message each "
            "chunk), rather than render them here; for messages the broker lost",
        )

    def handle(
        self, *args, batch: int, device: str, batch_size: int, enqueue: bool, **options
    ) -> None:
        try:
            target = PromptBatch.objects.get(pk=batch)
        except PromptBatch.DoesNotExist as exc:
            raise CommandError(f"No batch with id {batch}.") from exc
        if enqueue:
            try:
                sent = batch_services.batch_resend(batch=target)
            except batch_services.BatchRefused as refusal:
                raise CommandError(str(refusal)) from refusal
            self.stdout.write(f"Sent {sent} queued images of batch {batch} to the render workers.")
            return
        from generation.pipeline import Renderer

        images = Image.objects.filter(prompt__batch=target)
        total = images.filter(status=Image.Status.QUEUED).count()
        if not total:
            self.stdout.write(f"Batch {batch} has no queued images.")
            return
        renderer = Renderer(device=device or None)
        # One claim for the whole run: images it claims stay its own if it is interrupted.
        claim = f"render-{uuid.uuid4().hex}"
        started = time.monotonic()
        done = 0
        prompt_ids = (
            images.filter(status=Image.Status.QUEUED)
            .values_list("prompt_id", flat=True)
            .distinct()
            .order_by("prompt_id")
        )
        self._progress(0, total, started)
        for prompt_id in list(prompt_ids):
            done += services.prompt_render(
                prompt_id=prompt_id,
                renderer=renderer,
                claim=claim,
                worker="render-command",
                batch_size=batch_size or None,
            )
            self._progress(done, total, started)
        self.stdout.write("")
        failed = images.filter(status=Image.Status.FAILED).count()
        target.refresh_from_db()
        self.stdout.write(
            f"Rendered {done} of {total} images on {renderer.device}; {failed} failed; "
            f"batch {batch} is {target.status}."
        )

    def _progress(self, done: int, total: int, started: float) -> None:
        width = 30
        filled = int(width * done / total)
        elapsed = time.monotonic() - started
        rate = done / elapsed if elapsed > 0 and done else 0.0
        eta = f"{(total - done) / rate:.0f}s left" if rate else "estimating"
        bar = "#" * filled + "." * (width - filled)
        self.stdout.write(f"\r[{bar}] {done}/{total} images, {rate:.2f}/s, {eta}", ending="")
        self.stdout.flush()
