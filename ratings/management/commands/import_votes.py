"""Import long-form votes from an earlier survey: `import_votes FILE.csv --study SLUG`."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug

from ratings.exports.imports import votes_import
from ratings.exports.vote_files import VoteFileError
from ratings.models import Study

# Enough to see what is wrong with a file without scrolling past thousands of lines.
MAX_ERRORS_SHOWN = 50


class Command(BaseCommand):
    help = (
        "Import long-form votes (rater_id,cohort,item_id,variant_a,variant_b,criterion,choice"
        "[,prompt,category,created_at]) into a study, creating what they need. Nothing is "
        "imported while any row is bad; importing the same file twice adds nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="a CSV file of votes, one row per criterion")
        parser.add_argument("--study", required=True, help="the study's slug (made if missing)")

    def handle(self, *args, file: Path, study: str, **options) -> None:
        max_slug = Study._meta.get_field("slug").max_length
        try:
            validate_slug(study)
        except ValidationError as exc:
            raise CommandError(f"{study!r} is not a study slug: {' '.join(exc.messages)}") from exc
        if len(study) > max_slug:
            raise CommandError(f"A study slug has at most {max_slug} characters.")
        try:
            with file.open("rb") as lines:
                result = votes_import(study_slug=study, lines=lines, source_name=file.name)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from exc
        except VoteFileError as exc:
            shown = "\n".join(f"  {error}" for error in exc.errors[:MAX_ERRORS_SHOWN])
            more = len(exc.errors) - MAX_ERRORS_SHOWN
            if more > 0:
                shown += f"\n  ... and {more} more"
            count = len(exc.errors)
            raise CommandError(
                f"{file} has {count} bad row{'s' if count != 1 else ''}; nothing was imported:\n"
                f"{shown}"
            ) from exc

        if result.study_created:
            self.stdout.write(
                f"Created study {study!r}, closed for rating: it holds imported votes only."
            )
        skipped = (
            f" ({result.checks_skipped} attention-check rows skipped)"
            if result.checks_skipped
            else ""
        )
        self.stdout.write(f"Read {result.rows} rows from {file.name}{skipped}.")
        self.stdout.write(
            f"Created {result.raters} raters, {result.pairs} pairs, {result.votes} votes, "
            f"{result.answers} answers."
        )
        self.stdout.write(
            self.style.SUCCESS(f"{result.votes} new votes, {result.votes_present} already present.")
        )
