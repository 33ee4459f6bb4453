"""The aggregate tables, scores and the split report: stored rows with k and suppression.

A few thousand rows at most, built in Python from the stored scores.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ratings.exports.formats import Column
from ratings.exports.privacy import (
    SUPPRESSED_BELOW_K,
    cohort_cells_suppress,
    cohort_tables_suppress,
)
from ratings.models import CoherenceScore, Score, ScoreRun, Study
from ratings.results.selectors import (
    STATISTIC_FIELDS,
    factions_by_score,
    score_label_of,
    scores_latest,
    study_thresholds,
)

SCORE_COLUMNS = (
    Column("cohort", "text", "The cohort path; a parent counts every rater of its children."),
    Column("criterion", "text", "The criterion's key (its question is in the card)."),
    Column("variant_a", "text", "The pair's variant a."),
    Column("variant_b", "text", "The pair's variant b; shares are of b."),
    Column(
        "label",
        "text",
        "consensus, split, contested or insufficient (fewer than k raters), derived from the "
        "statistics with the study's thresholds; empty where the row is suppressed as a "
        "complement.",
    ),
    Column(
        "suppressed",
        "text",
        "Empty if shown; below_k (fewer than k raters) or complementary (hidden so that no "
        "small cohort can be derived as parent minus shown children). Suppressed rows carry "
        "no numbers.",
    ),
    Column("n_raters", "int", "Raters with a vote in the cell."),
    Column("n_votes", "int", "Votes in the cell (count_a + count_tie + count_b + count_skip)."),
    Column("count_a", "int", "Votes for variant a."),
    Column("count_tie", "int", "Votes for both equally."),
    Column("count_b", "int", "Votes for variant b."),
    Column("count_skip", "int", "Can't-judge answers: counted, left out of every statistic."),
    Column("share_b", "float", "Decisive win share of b: b / (a + b)."),
    Column("share_b_low", "float", "2.5% bound of share_b, rater-cluster bootstrap."),
    Column("share_b_high", "float", "97.5% bound of share_b, rater-cluster bootstrap."),
    Column("share_b_ties_half", "float", "Share of b with ties as half: (b + tie/2) / (a+tie+b)."),
    Column("share_b_ties_half_low", "float", "2.5% bound of share_b_ties_half."),
    Column("share_b_ties_half_high", "float", "97.5% bound of share_b_ties_half."),
    Column("alpha", "float", "Krippendorff's alpha, ordinal, within the cohort."),
    Column(
        "ndfu", "float", "Normalised distance from unimodality (0 unimodal, 1 a 50/0/50 split)."
    ),
    Column("agreement", "float", "Van der Eijk's A (+1 consensus, 0 uniform, -1 polarised)."),
    Column("heterogeneity_p", "float", "Rater heterogeneity permutation p (split versus noise)."),
    Column("cohesion_in", "float", "GRASP in-group cohesion: pairwise agreement within."),
    Column("cohesion_cross", "float", "GRASP cross-group cohesion: with raters outside."),
    Column("gai", "float", "Group association index: cohesion_in / cohesion_cross."),
    Column("gai_p", "float", "Label-permutation p of the GAI."),
    Column("gai_q", "float", "Benjamini-Hochberg q of gai_p across the study's cohorts."),
)

SPLIT_COLUMNS = (
    Column(
        "kind",
        "text",
        "criterion (one criterion's distribution) or coherence (representation answers where "
        "the rater chose one image as both more stereotypical and more offensive).",
    ),
    Column("cohort", "text", "The cohort path; a parent counts every rater of its children."),
    Column("criterion", "text", "The criterion's key; representation for coherence rows."),
    Column("variant_a", "text", "The pair's variant a."),
    Column("variant_b", "text", "The pair's variant b."),
    Column("label", "text", "As in the scores table (criterion rows only)."),
    Column("suppressed", "text", "Empty if shown; below_k or complementary, with no numbers."),
    Column("n_raters", "int", "Raters in the row."),
    Column("n_votes", "int", "Votes in the row."),
    Column("share_a", "float", "Share of a among a, tie and b (criterion rows)."),
    Column("share_tie", "float", "Share of ties among the answers counted."),
    Column("share_b", "float", "Share of b among a, tie and b (criterion rows)."),
    Column(
        "share_same",
        "float",
        "Coherence rows: share calling the stereotypical, offensive image the better "
        "representation too.",
    ),
    Column("share_other", "float", "Coherence rows: share calling the other image better."),
    Column("ndfu", "float", "Normalised distance from unimodality of the distribution."),
    Column("agreement", "float", "Van der Eijk's A (criterion rows)."),
    Column("alpha", "float", "Krippendorff's alpha, ordinal (criterion rows)."),
    Column("heterogeneity_p", "float", "Rater heterogeneity permutation p (criterion rows)."),
    Column("gai", "float", "Group association index (criterion rows)."),
    Column("gai_q", "float", "Benjamini-Hochberg q of the GAI's p (criterion rows)."),
)


_SCORE_FIELDS = (
    "n_raters",
    "n_votes",
    "count_a",
    "count_tie",
    "count_b",
    "count_skip",
    *STATISTIC_FIELDS,
)


@dataclass
class ScoreTables:
    """The latest run's rows, labelled and suppressed, as every aggregate export shows them."""

    run: ScoreRun | None
    scores: list[dict[str, Any]]
    coherence: list[dict[str, Any]]

    def suppressed(self) -> list[tuple[str, str, str, str, str]]:
        """(kind, cohort, variant_a, variant_b, reason) of every suppressed cohort, once."""
        seen = {
            (kind, row["cohort"], row["variant_a"], row["variant_b"], row["suppressed"])
            for kind, rows in (("scores", self.scores), ("coherence", self.coherence))
            for row in rows
            if row["suppressed"]
        }
        return sorted(seen)


def score_tables(*, study: Study, run: ScoreRun | None = None) -> ScoreTables:
    """Read a run's Score and CoherenceScore rows and apply k with complementary suppression.

    Per variant pair, every criterion is a slice of the same cohorts, so one hidden set serves
    them all (`cohort_tables_suppress`); the coherence table, whose raters are a subset, hides
    at least those cohorts and whatever its own counts need on top.
    """
    run = run or scores_latest(study=study)
    if run is None:
        return ScoreTables(run=None, scores=[], coherence=[])
    k = study.min_cohort_size
    thresholds = study_thresholds(study=study)
    scores = list(
        Score.objects.filter(run=run)
        .order_by("cohort__path", "criterion__position", "criterion__key", "variant_a__name")
        .values(
            "id",
            "cohort__path",
            "criterion__key",
            "variant_a__name",
            "variant_b__name",
            *_SCORE_FIELDS,
        )
    )
    factions = factions_by_score(run=run)
    coherence = list(
        CoherenceScore.objects.filter(run=run)
        .order_by("cohort__path", "variant_a__name", "variant_b__name")
        .values(
            "cohort__path",
            "variant_a__name",
            "variant_b__name",
            "n_raters",
            "same",
            "tie",
            "other",
            "ndfu",
        )
    )
    slices: dict[tuple[str, str], dict[str, dict[str, int]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for row in scores:
        variants = (row["variant_a__name"], row["variant_b__name"])
        slices[variants][row["criterion__key"]][row["cohort__path"]] = row["n_raters"]
    # A criterion nobody answered (an imported survey that asked only some) is no slice of
    # anyone: its empty rows would count as below k everywhere and hide every cohort of the
    # criteria that were answered.
    hidden = {
        variants: cohort_tables_suppress(
            [counts for counts in by_criterion.values() if any(counts.values())], k=k
        )
        for variants, by_criterion in slices.items()
    }
    unanswered = {
        (variants, criterion)
        for variants, by_criterion in slices.items()
        for criterion, counts in by_criterion.items()
        if not any(counts.values())
    }

    score_rows = []
    for row in scores:
        variants = (row["variant_a__name"], row["variant_b__name"])
        reason = hidden[variants].get(row["cohort__path"], "")
        if (variants, row["criterion__key"]) in unanswered:
            reason = SUPPRESSED_BELOW_K
        out = {
            "cohort": row["cohort__path"],
            "criterion": row["criterion__key"],
            "variant_a": variants[0],
            "variant_b": variants[1],
            "label": "insufficient" if reason == SUPPRESSED_BELOW_K else None,
            "suppressed": reason,
        }
        if reason:
            out.update(dict.fromkeys(_SCORE_FIELDS))
        else:
            own = factions.get(row["id"], ())
            label = score_label_of(values=row, factions=own, thresholds=thresholds)
            out["label"] = label.label
            # Kept for the factions tables; the score columns leave them out.
            out["factions_shown"] = bool(own) and (
                label.label == "split" or label.dissent is not None
            )
            out["_factions"] = own
            out.update({name: _finite(row[name]) for name in _SCORE_FIELDS})
        score_rows.append(out)

    coherence_slices: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for row in coherence:
        variants = (row["variant_a__name"], row["variant_b__name"])
        coherence_slices[variants][row["cohort__path"]] = row["n_raters"]
    coherence_hidden = {
        variants: cohort_cells_suppress(by_cohort, k=k, force=hidden.get(variants, {}))
        for variants, by_cohort in coherence_slices.items()
    }
    coherence_rows = []
    for row in coherence:
        variants = (row["variant_a__name"], row["variant_b__name"])
        reason = coherence_hidden[variants].get(row["cohort__path"], "")
        out = {
            "cohort": row["cohort__path"],
            "variant_a": variants[0],
            "variant_b": variants[1],
            "suppressed": reason,
            "n_raters": None,
            "same": None,
            "tie": None,
            "other": None,
            "ndfu": None,
        }
        if not reason:
            out.update(
                n_raters=row["n_raters"],
                same=row["same"],
                tie=row["tie"],
                other=row["other"],
                ndfu=_finite(row["ndfu"]),
            )
        coherence_rows.append(out)
    return ScoreTables(run=run, scores=score_rows, coherence=coherence_rows)


def _finite(value):
    """NaN and infinities have no JSON spelling; they are written as empty."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _share(part: int | None, whole: int) -> float | None:
    return None if part is None or whole <= 0 else part / whole


def split_report_rows(tables: ScoreTables) -> list[dict[str, Any]]:
    """Flatten the score and coherence rows into the split report's rows."""
    rows = []
    for row in tables.scores:
        counted = sum(row[name] or 0 for name in ("count_a", "count_tie", "count_b"))
        rows.append(
            {
                "kind": "criterion",
                "cohort": row["cohort"],
                "criterion": row["criterion"],
                "variant_a": row["variant_a"],
                "variant_b": row["variant_b"],
                "label": row["label"],
                "suppressed": row["suppressed"],
                "n_raters": row["n_raters"],
                "n_votes": row["n_votes"],
                "share_a": _share(row["count_a"], counted),
                "share_tie": _share(row["count_tie"], counted),
                "share_b": _share(row["count_b"], counted),
                "share_same": None,
                "share_other": None,
                "ndfu": row["ndfu"],
                "agreement": row["agreement"],
                "alpha": row["alpha"],
                "heterogeneity_p": row["heterogeneity_p"],
                "gai": row["gai"],
                "gai_q": row["gai_q"],
            }
        )
    for row in tables.coherence:
        counted = sum(row[name] or 0 for name in ("same", "tie", "other"))
        rows.append(
            {
                "kind": "coherence",
                "cohort": row["cohort"],
                "criterion": "representation",
                "variant_a": row["variant_a"],
                "variant_b": row["variant_b"],
                "label": None,
                "suppressed": row["suppressed"],
                "n_raters": row["n_raters"],
                "n_votes": None if row["suppressed"] else counted,
                "share_a": None,
                "share_tie": _share(row["tie"], counted),
                "share_b": None,
                "share_same": _share(row["same"], counted),
                "share_other": _share(row["other"], counted),
                "ndfu": row["ndfu"],
                "agreement": None,
                "alpha": None,
                "heterogeneity_p": None,
                "gai": None,
                "gai_q": None,
            }
        )
    return rows
