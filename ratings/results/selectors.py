"""Selectors of stored scores: the latest run, its rows labelled, and the votes scores use.

Reading never computes: pages, exports and the `scores` command show the stored rows of a
ScoreRun, each labelled now from the study's current thresholds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import Exists, OuterRef, QuerySet

from ratings.models import (
    AssignmentKind,
    Faction,
    Participation,
    Score,
    ScoreRun,
    Study,
    Vote,
)

if TYPE_CHECKING:
    from ratings.results.statistics.labels import Dissent, RowLabel, Thresholds


def scores_latest(*, study: Study, include_flagged: bool | None = None) -> ScoreRun | None:
    """Return the study's newest finished score run, or None if none has finished.

    `include_flagged` narrows to runs with (True) or without (False) flagged raters' votes.
    """
    runs = ScoreRun.objects.filter(study=study, status=ScoreRun.Status.DONE)
    if include_flagged is not None:
        runs = runs.filter(include_flagged=include_flagged)
    return runs.order_by("-computed_at", "-pk").first()


def study_thresholds(*, study: Study) -> Thresholds:
    """Return the label rules with this study's settings (k and the split thresholds)."""
    from ratings.results.statistics.labels import Thresholds

    return Thresholds(
        k=study.min_cohort_size,
        split_min_share=study.split_min_share,
        split_max_p=study.split_max_p,
        contested_max_top_share=study.contested_max_top_share,
    )


# The statistics of a row beyond its counts, in the order the command prints them.
STATISTIC_FIELDS = (
    "share_b",
    "share_b_low",
    "share_b_high",
    "share_b_ties_half",
    "share_b_ties_half_low",
    "share_b_ties_half_high",
    "alpha",
    "ndfu",
    "agreement",
    "heterogeneity_p",
    "cohesion_in",
    "cohesion_cross",
    "gai",
    "gai_p",
    "gai_q",
)


@dataclass(frozen=True)
class ScoreRow:
    """One stored cell with its label, derived now from the study's current thresholds."""

    cohort: str
    depth: int
    criterion: str
    variant_a: str
    variant_b: str
    n_raters: int
    n_votes: int
    count_a: int
    count_tie: int
    count_b: int
    count_skip: int
    statistics: dict[str, float | None]
    label: str
    dissent: Dissent | None = None
    # The row's two stored factions, larger first, or () where none were fitted.
    factions: tuple[Faction, ...] = ()

    @property
    def insufficient(self) -> bool:
        return self.label == "insufficient"

    @property
    def factions_shown(self) -> bool:
        """A split row, or a consensus or contested row with dissent, shows its factions."""
        return bool(self.factions) and (self.label == "split" or self.dissent is not None)

    def public(self) -> dict[str, Any]:
        """Return the row as shown to researchers: a row below k shows its label only."""
        row: dict[str, Any] = {
            "cohort": self.cohort,
            "criterion": self.criterion,
            "variant_a": self.variant_a,
            "variant_b": self.variant_b,
        }
        if self.insufficient:
            # Nothing that would reveal how few raters or votes the cohort has.
            row["label"] = self.label
            return row
        row.update(
            n_raters=self.n_raters,
            n_votes=self.n_votes,
            counts={
                "a": self.count_a,
                "b": self.count_b,
                "tie": self.count_tie,
                "skip": self.count_skip,
            },
            label=self.label,
        )
        row.update(self.statistics)
        if self.dissent is not None:
            row["dissent"] = {
                "n_raters": self.dissent.n_raters,
                "share": self.dissent.share,
                "lean": self.dissent.lean,
            }
        if self.factions_shown:
            row["factions"] = [faction_public(faction) for faction in self.factions]
        return row


def faction_public(faction: Faction) -> dict[str, Any]:
    """Return a stored faction as the `scores` command and the API show it."""
    return {
        "n_raters": faction.n_raters,
        "share": faction.share,
        "lean": faction.lean,
        "lean_low": faction.lean_low,
        "lean_high": faction.lean_high,
        "counts": {
            "a": faction.count_a,
            "b": faction.count_b,
            "tie": faction.count_tie,
            "skip": faction.count_skip,
        },
    }


def factions_by_score(*, run: ScoreRun) -> dict[int, tuple[Faction, ...]]:
    """Return the stored factions of a run's rows, by score id, the larger first."""
    by_score: dict[int, list[Faction]] = defaultdict(list)
    for faction in Faction.objects.filter(score__run=run).order_by("score_id", "position"):
        by_score[faction.score_id].append(faction)
    return {score_id: tuple(factions) for score_id, factions in by_score.items()}


def score_label_of(
    *, values: Mapping[str, Any], factions: tuple[Faction, ...], thresholds: Thresholds
) -> RowLabel:
    """Label a stored row (a Score or its values) with its factions, by the study's rules."""
    from ratings.results.statistics.labels import row_label

    return row_label(
        n_raters=values["n_raters"],
        histogram=(values["count_a"], values["count_tie"], values["count_b"]),
        heterogeneity_p=values["heterogeneity_p"],
        factions=factions or None,
        thresholds=thresholds,
    )


def score_rows(*, run: ScoreRun) -> list[ScoreRow]:
    """Return a run's cells, labelled, ordered by cohort path, criterion and variant pair."""
    thresholds = study_thresholds(study=run.study)
    factions = factions_by_score(run=run)
    rows = []
    stored = (
        Score.objects.filter(run=run)
        .select_related("cohort", "criterion", "variant_a", "variant_b")
        .order_by("cohort__path", "criterion__position", "criterion__id", "variant_a__name")
    )
    for score in stored:
        own = factions.get(score.pk, ())
        label = score_label_of(values=vars(score), factions=own, thresholds=thresholds)
        rows.append(
            ScoreRow(
                cohort=score.cohort.path,
                depth=score.cohort.depth,
                criterion=score.criterion.key,
                variant_a=score.variant_a.name,
                variant_b=score.variant_b.name,
                n_raters=score.n_raters,
                n_votes=score.n_votes,
                count_a=score.count_a,
                count_tie=score.count_tie,
                count_b=score.count_b,
                count_skip=score.count_skip,
                statistics={name: getattr(score, name) for name in STATISTIC_FIELDS},
                label=label.label,
                dissent=label.dissent,
                factions=own,
            )
        )
    return rows


def scores_report(*, study: Study, run: ScoreRun) -> dict[str, Any]:
    """Return the `scores` command's JSON object: study, k, and one public row per cell."""
    return {
        "study": study.slug,
        "k": study.min_cohort_size,
        "scores": [row.public() for row in score_rows(run=run)],
    }


def votes_for_scoring(*, study: Study, include_flagged: bool = False) -> QuerySet[Vote]:
    """Return the votes scores are computed from: regular pairs, flagged raters left out.

    Attention checks never count. Flagged raters' votes stay in the data (and the exports);
    `include_flagged` brings them back for a researcher who wants to see the difference.
    """
    votes = Vote.objects.filter(
        study=study, kind=AssignmentKind.PAIR, pair__is_attention_check=False
    )
    if not include_flagged:
        flagged = Participation.objects.filter(study=study, rater=OuterRef("rater"), flagged=True)
        votes = votes.exclude(Exists(flagged))
    return votes
