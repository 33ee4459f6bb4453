"""Queue a prompt batch from a CSV or JSONL file: `queue_batch FILE --study SLUG`."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation import selectors, services
from generation.batch_files import BatchFileError
from generation.models import Image, ModelVariant
from generation.tokens import TokenizerUnavailable
from ratings.models import Study


class Command(BaseCommand):
    help = "Validate a prompt file and queue every prompt for rendering by the study's variants."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="CSV (prompt,cohort,category[,seeds]) or JSONL")
        parser.add_argument("--study", required=True, help="the study's slug")
        parser.add_argument(
            "--variants",
            default="",
            help="comma-separated variant names (default: every variant of the study)",
        )
        parser.add_argument("--seeds", type=int, default=4, help="seeds per prompt (default 4)")

    def handle(self, *args, file: Path, study: str, variants: str, seeds: int, **options) -> None:
        try:
            target = Study.objects.get(slug=study)
        except Study.DoesNotExist as exc:
            raise CommandError(f"No study with slug {study!r}.") from exc
        chosen = self._variants(target, variants)
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from exc
        try:
            # Checked against the chosen variants' tokenizers too: an over-long prompt is
            # refused by its line rather than silently cut by the text encoder.
            rows = selectors.batch_rows_parse(data=data, filename=file.name, variants=chosen)
        except TokenizerUnavailable as exc:
            raise CommandError(f"{exc} Nothing was queued.") from exc
        except BatchFileError as exc:
            lines = "\n".join(f"  {error}" for error in exc.errors)
            raise CommandError(f"{file} has bad rows; nothing was queued:\n{lines}") from exc
        try:
            batch = services.batch_queue(
                study=target,
                rows=rows,
                variants=chosen,
                seeds_per_prompt=seeds,
                source_name=file.name,
            )
        except services.BatchRefused as exc:
            raise CommandError(f"{exc} Nothing was queued.") from exc
        images = Image.objects.filter(prompt__batch=batch).count()
        self.stdout.write(
            f"Queued batch {batch.pk}: {len(rows)} prompts x {len(chosen)} variants, "
            f"{images} images."
        )

    def _variants(self, study: Study, names: str) -> list[ModelVariant]:
        if not names:
            return list(study.variants.all())
        wanted = [name.strip() for name in names.split(",") if name.strip()]
        found = {variant.name: variant for variant in ModelVariant.objects.filter(name__in=wanted)}
        unknown = [name for name in wanted if name not in found]
        if unknown:
            raise CommandError(f"Unknown variant(s): {', '.join(unknown)}.")
        return [found[name] for name in wanted]
