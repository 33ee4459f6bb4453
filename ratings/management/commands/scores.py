"""Recompute a study's split-aware scores and print them: `scores --study SLUG --format json`."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ratings.models import Study
from ratings.results.selectors import ScoreRow, score_rows, scores_report
from ratings.results.services import scores_compute


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f" [{low:.2f}, {high:.2f}]"


def _table(rows: list[ScoreRow]) -> list[str]:
    """Return the rows as aligned text; a row below k shows its label only."""
    header = (
        "cohort",
        "criterion",
        "variants (a vs b)",
        "raters",
        "votes",
        "a/tie/b/skip",
        "share b [95%]",
        "alpha",
        "nDFU",
        "A",
        "het. p",
        "GAI (q)",
        "label",
    )
    lines = [header]
    for row in rows:
        variants = f"{row.variant_a} vs {row.variant_b}"
        cohort = "  " * (row.depth - 1) + row.cohort
        if row.insufficient:
            lines.append((cohort, row.criterion, variants, *("",) * 9, row.label))
            continue
        stats = row.statistics
        gai = _number(stats["gai"])
        if stats["gai_q"] is not None:
            gai += f" ({stats['gai_q']:.3f})"
        lines.append(
            (
                cohort,
                row.criterion,
                variants,
                str(row.n_raters),
                str(row.n_votes),
                f"{row.count_a}/{row.count_tie}/{row.count_b}/{row.count_skip}",
                _number(stats["share_b"]) + _interval(stats["share_b_low"], stats["share_b_high"]),
                _number(stats["alpha"]),
                _number(stats["ndfu"]),
                _number(stats["agreement"]),
                _number(stats["heterogeneity_p"], 3),
                gai,
                row.label,
            )
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]


class Command(BaseCommand):
    help = (
        "Recompute a study's split-aware scores (every cohort at every level, criterion and "
        "variant pair) and print them. Rows of cohorts with fewer than k raters show only the "
        "label `insufficient`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--study", required=True, help="the study's slug")
        parser.add_argument("--format", choices=("json", "table"), default="table")
        parser.add_argument(
            "--include-flagged",
            action="store_true",
            help="count the votes of raters flagged by attention checks (left out by default)",
        )

    def handle(self, *args, study: str, format: str, include_flagged: bool, **options) -> None:
        found = Study.objects.filter(slug=study).first()
        if found is None:
            known = ", ".join(Study.objects.order_by("slug").values_list("slug", flat=True)[:20])
            raise CommandError(
                f"No study with the slug {study!r}."
                + (f" Studies: {known}." if known else " There are no studies yet.")
            )
        run = scores_compute(study=found, include_flagged=include_flagged)
        if format == "json":
            self.stdout.write(json.dumps(scores_report(study=found, run=run), indent=2))
            return
        self.stdout.write(
            f"Scores of {found.slug} (k = {found.min_cohort_size}), computed "
            f"{run.computed_at:%Y-%m-%d %H:%M:%S} UTC over {run.votes_covered} votes"
            + (", flagged raters included" if include_flagged else "")
            + "."
        )
        for line in _table(score_rows(run=run)):
            self.stdout.write(line)
