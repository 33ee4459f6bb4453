"""The rows of the researchers' dashboard: what one page shows, shaped for its template."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils.safestring import SafeString, mark_safe

from ratings.models import Criterion, ScoreRun, Study
from ratings.results import charts
from ratings.results.statistics.labels import Thresholds


def _pct(part: int, whole: int) -> int:
    return charts.percent(part, whole)


@dataclass(frozen=True)
class CriterionRow:
    """One criterion of one cohort and variant pair: label, counts and statistics for the page."""

    key: str
    question: str
    label: str
    shown: bool
    note: str = ""
    n_raters: int = 0
    n_votes: int = 0
    count_a: int = 0
    count_tie: int = 0
    count_b: int = 0
    count_skip: int = 0
    share_b: str = "—"
    share_b_interval: str = ""
    share_b_ties_half: str = "—"
    share_b_ties_half_interval: str = ""
    alpha: str = "—"
    ndfu: str = "—"
    agreement: str = "—"
    heterogeneity_p: str = "—"
    gai: str = "—"
    gai_q: str = "—"
    dissent: str = ""
    faction_score_id: int | None = None

    @property
    def answered(self) -> int:
        return self.count_a + self.count_tie + self.count_b

    @property
    def pct_a(self) -> int:
        return _pct(self.count_a, self.answered)

    @property
    def pct_tie(self) -> int:
        return _pct(self.count_tie, self.answered)

    @property
    def pct_b(self) -> int:
        return _pct(self.count_b, self.answered)


@dataclass(frozen=True)
class VariantPanel:
    """One cohort's criteria for one variant pair, with its chart."""

    variant_a: str
    variant_b: str
    rows: tuple[CriterionRow, ...]
    chart: SafeString
    caption: str


@dataclass(frozen=True)
class StrengthRow:
    criterion: str
    variant: str
    strength: str
    interval: str


@dataclass(frozen=True)
class CohortSection:
    """A cohort on the page: its raters and votes, a panel per variant pair, BT strengths."""

    path: str
    name: str
    depth: int
    is_focus: bool
    has_children: bool
    shown: bool
    note: str
    n_raters: int
    n_votes: int
    panels: tuple[VariantPanel, ...]
    strengths: tuple[StrengthRow, ...] = ()

    @property
    def anchor(self) -> str:
        return "cohort-" + self.path.replace(":", "-")

    @property
    def collapsed(self) -> bool:
        """Nothing of it may be shown (every row hidden by k): one line, not a panel."""
        return (
            not self.shown
            and not self.is_focus
            and all(not row.shown for panel in self.panels for row in panel.rows)
        )


@dataclass(frozen=True)
class CoherenceRow:
    """Representation answers where raters chose one image as more stereotypical and offensive."""

    cohort_path: str
    cohort_name: str
    variant_a: str
    variant_b: str
    shown: bool
    note: str = ""
    n_raters: int = 0
    same: int = 0
    tie: int = 0
    other: int = 0
    ndfu: str = "—"
    polarized: bool = False
    chart: SafeString = field(default_factory=lambda: mark_safe(""))

    @property
    def total(self) -> int:
        return self.same + self.tie + self.other

    @property
    def pct_same(self) -> int:
        return _pct(self.same, self.total)

    @property
    def pct_tie(self) -> int:
        return _pct(self.tie, self.total)

    @property
    def pct_other(self) -> int:
        return _pct(self.other, self.total)


@dataclass(frozen=True)
class CoverageRow:
    """How far a cohort's rating has come: raters and votes in the scores, pairs at target."""

    path: str
    name: str
    shown: bool
    note: str
    n_raters: int
    n_votes: int
    pairs: int
    pairs_rated: int
    pairs_at_target: int

    @property
    def pct_at_target(self) -> int:
        return _pct(self.pairs_at_target, self.pairs)


@dataclass(frozen=True)
class Crumb:
    path: str
    name: str


@dataclass(frozen=True)
class Dashboard:
    """Everything the dashboard page shows of one study at one level of its cohort tree."""

    study: Study
    thresholds: Thresholds
    run: ScoreRun | None
    running: ScoreRun | None
    focus: Crumb | None
    crumbs: tuple[Crumb, ...]
    sections: tuple[CohortSection, ...]
    coherence: tuple[CoherenceRow, ...]
    coverage: tuple[CoverageRow, ...]
    pairs_total: int
    raters_consented: int
    criteria: tuple[Criterion, ...]

    @property
    def k(self) -> int:
        return self.thresholds.k

    @property
    def hidden_sections(self) -> tuple[CohortSection, ...]:
        """The cohorts hidden by k on this page, shown as one line rather than a panel each."""
        return tuple(section for section in self.sections if section.collapsed)


@dataclass(frozen=True)
class StudyListRow:
    study: Study
    run: ScoreRun | None
