"""The study page's opening summary: a matrix of cohorts x criteria, one label badge a cell.

Every cohort the latest run scored, at every level of the hierarchy, one row per cohort and
variant pair; the rows with a split come first, then those contested, then the rest, so where a
cohort disagrees with itself is the first thing a researcher reads. The cohorts hidden by k
(below it, or hidden for a smaller cohort's sake) collapse into one line that names them and
shows nothing else. Labels come from the dashboard's own rows (`dashboard.criterion_row`), so
the matrix and the panels below it never disagree.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from ratings.models import Criterion, ScoreRun, Study
from ratings.results.dashboard import (
    cohort_names,
    criterion_row,
    hidden_by_table,
    hidden_note,
    score_values,
)
from ratings.results.statistics.labels import Thresholds

# Short column names for the default criteria; another criterion is headed by its key.
CRITERION_HEADINGS = {
    "alignment": "Matches prompt",
    "representation": "Represents culture",
    "stereotype": "More stereotypical",
    "offensiveness": "More offensive",
}
LABEL_ORDER = {"split": 0, "contested": 1, "consensus": 2, "insufficient": 3}


@dataclass(frozen=True)
class SummaryColumn:
    key: str
    heading: str
    definition: str  # the question raters answered, for the heading's hover text


@dataclass(frozen=True)
class SummaryRow:
    path: str
    name: str
    depth: int
    variant_a: str
    variant_b: str
    labels: tuple[str, ...]  # one per column; "" where the cohort has no row for a criterion

    @property
    def parent(self) -> str:
        """The drill-down level whose page shows this cohort's panel ("" for the top level)."""
        return self.path.rpartition(":")[0]

    @property
    def anchor(self) -> str:
        return "cohort-" + self.path.replace(":", "-")

    @property
    def splits(self) -> int:
        return self.labels.count("split")


@dataclass(frozen=True)
class HiddenCohort:
    path: str
    name: str
    note: str


@dataclass(frozen=True)
class Summary:
    columns: tuple[SummaryColumn, ...]
    rows: tuple[SummaryRow, ...]
    hidden: tuple[HiddenCohort, ...]
    several_variant_pairs: bool

    @property
    def split_rows(self) -> int:
        return sum(1 for row in self.rows if row.splits)


def recompute_queued_since(*, study: Study) -> datetime | None:
    """When "Recompute now" was pressed, if no score run has started since; else None."""
    requested = Study.objects.filter(pk=study.pk).values_list("scores_requested_at", flat=True)
    asked = requested.first()
    if asked is None or ScoreRun.objects.filter(study=study, started_at__gte=asked).exists():
        return None
    return asked


def _sort_key(row: SummaryRow) -> tuple:
    worst = min((LABEL_ORDER.get(label, 9) for label in row.labels if label), default=9)
    return (worst, -row.splits, -row.labels.count("contested"), row.path, row.variant_a)


def summary_for_run(*, study: Study, run: ScoreRun | None, thresholds: Thresholds) -> Summary:
    """Shape a run's labels into the summary matrix (empty without a run)."""
    criteria = tuple(Criterion.objects.filter(study=study).order_by("position", "pk"))
    columns = tuple(
        SummaryColumn(
            key=criterion.key,
            heading=CRITERION_HEADINGS.get(criterion.key, criterion.key),
            definition=criterion.question_for("the culture"),
        )
        for criterion in criteria
    )
    if run is None:
        return Summary(columns=columns, rows=(), hidden=(), several_variant_pairs=False)
    scores = score_values(run)
    hidden = hidden_by_table(
        scores, ("criterion_id", "variant_a__name", "variant_b__name"), thresholds.k
    )
    names = cohort_names(paths={row["cohort__path"] for row in scores}, study=study)
    cells: dict[tuple[str, str, str], dict[int, dict]] = defaultdict(dict)
    for score in scores:
        key = (score["cohort__path"], score["variant_a__name"], score["variant_b__name"])
        cells[key][score["criterion_id"]] = score
    # A cohort hidden from every one of its tables collapses into the one line; one hidden from
    # some (for a smaller cohort's sake) keeps its row, as its panel below does.
    hidden_paths: dict[str, str] = {}
    rows = []
    for (path, va, vb), by_criterion in cells.items():
        reasons = {
            criterion_id: hidden[(criterion_id, va, vb)].get(path) for criterion_id in by_criterion
        }
        if all(reasons.values()):
            hidden_paths.setdefault(path, next(iter(reasons.values())))
            continue
        labels = tuple(
            criterion_row(
                by_criterion[criterion.pk],
                criterion,
                names.get(path, path),
                reasons[criterion.pk],
                thresholds,
            ).label
            if criterion.pk in by_criterion
            else ""
            for criterion in criteria
        )
        rows.append(
            SummaryRow(
                path=path,
                name=names.get(path, path),
                depth=path.count(":"),
                variant_a=va,
                variant_b=vb,
                labels=labels,
            )
        )
    shown_paths = {row.path for row in rows}
    hidden_paths = {p: r for p, r in hidden_paths.items() if p not in shown_paths}
    return Summary(
        columns=columns,
        rows=tuple(sorted(rows, key=_sort_key)),
        hidden=tuple(
            HiddenCohort(
                path=path, name=names.get(path, path), note=hidden_note(reason, thresholds.k)
            )
            for path, reason in sorted(hidden_paths.items())
        ),
        several_variant_pairs=len({(row.variant_a, row.variant_b) for row in rows}) > 1,
    )
