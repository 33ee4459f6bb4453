"""One cell: everything of SCORING.md sections 1 to 4 for one cohort, criterion and variant pair."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ratings.results.statistics.agreement import alpha_of_value_counts
from ratings.results.statistics.codes import MISSING, SKIP
from ratings.results.statistics.distribution import (
    histogram,
    rater_bootstrap_shares,
    share_b,
    share_b_ties_half,
)
from ratings.results.statistics.factions import factions_fit
from ratings.results.statistics.heterogeneity import rater_heterogeneity
from ratings.results.statistics.labels import RowLabel, Thresholds, row_label
from ratings.results.statistics.polarization import ndfu, van_der_eijk_agreement
from ratings.results.statistics.resampling import (
    SEED_BOOTSTRAP,
    SEED_FACTIONS,
    SEED_HETEROGENEITY,
    rng_for,
)


@dataclass
class CellStatistics:
    """The statistics of one cohort on one criterion and variant pair (GRASP filled later)."""

    n_raters: int
    n_votes: int
    count_a: int
    count_tie: int
    count_b: int
    count_skip: int
    share_b: float | None = None
    share_b_low: float | None = None
    share_b_high: float | None = None
    share_b_ties_half: float | None = None
    share_b_ties_half_low: float | None = None
    share_b_ties_half_high: float | None = None
    alpha: float | None = None
    ndfu: float | None = None
    agreement: float | None = None
    heterogeneity: float | None = None
    heterogeneity_p: float | None = None
    cohesion_in: float | None = None
    cohesion_cross: float | None = None
    gai: float | None = None
    gai_p: float | None = None
    gai_q: float | None = None
    # The two factions, larger first, where two fit better than one (section 8); else None.
    factions: tuple | None = None

    @property
    def histogram(self) -> tuple[int, int, int]:
        return self.count_a, self.count_tie, self.count_b

    def row_label(self, thresholds: Thresholds) -> RowLabel:
        return row_label(
            n_raters=self.n_raters,
            histogram=self.histogram,
            heterogeneity_p=self.heterogeneity_p,
            factions=self.factions,
            thresholds=thresholds,
        )

    def label(self, thresholds: Thresholds) -> str:
        return self.row_label(thresholds).label


def cell_distribution(
    raters: np.ndarray,
    n_raters: int,
    items: np.ndarray,
    n_items: int,
    codes: np.ndarray,
    *,
    bootstrap: int,
    rng: np.random.Generator,
) -> CellStatistics:
    """Return sections 1 to 3 of one cell; raters and items are dense indices below n_*."""
    count_a, count_tie, count_b, count_skip = (int(c) for c in histogram(codes))
    stats = CellStatistics(
        n_raters=int(np.count_nonzero(np.bincount(raters, minlength=n_raters))),
        n_votes=len(codes),
        count_a=count_a,
        count_tie=count_tie,
        count_b=count_b,
        count_skip=count_skip,
    )
    if count_a + count_tie + count_b == 0:
        return stats
    stats.share_b = share_b(count_a, count_tie, count_b)
    stats.share_b_ties_half = share_b_ties_half(count_a, count_tie, count_b)
    answered = codes != SKIP
    rater_counts = np.bincount(
        raters[answered] * 3 + codes[answered].astype(np.intp) + 1, minlength=n_raters * 3
    ).reshape(n_raters, 3)
    rater_counts = rater_counts[rater_counts.sum(axis=1) > 0]
    decisive_interval, ties_half_interval = rater_bootstrap_shares(
        rater_counts, resamples=bootstrap, rng=rng
    )
    if decisive_interval and stats.share_b is not None:
        stats.share_b_low, stats.share_b_high = decisive_interval
    if ties_half_interval:
        stats.share_b_ties_half_low, stats.share_b_ties_half_high = ties_half_interval
    value_counts = np.bincount(
        items[answered] * 3 + codes[answered].astype(np.intp) + 1, minlength=n_items * 3
    ).reshape(n_items, 3)
    stats.alpha = alpha_of_value_counts(value_counts)
    counts = (count_a, count_tie, count_b)
    stats.ndfu = ndfu(counts)
    stats.agreement = van_der_eijk_agreement(counts)
    return stats


def cell_statistics(
    raters: np.ndarray,
    items: np.ndarray,
    codes: np.ndarray,
    *,
    permutations: int = 1000,
    bootstrap: int = 1000,
    seed: int = 0,
    key: Sequence[int] = (),
    factions_max_p: float | None = 0.01,
) -> CellStatistics:
    """Return the statistics of SCORING.md sections 1-4 for one cell's votes.

    `raters` and `items` identify each vote's rater and item (pair); `codes` are the coded
    answers (a -1, tie 0, b +1, skip 2; MISSING votes are ignored). `seed` and `key` seed the
    bootstrap and the permutation test, so the same votes give the same numbers. Factions
    are fitted when the heterogeneity p is below `factions_max_p` (None: never), as the
    study scorer does.
    """
    raters, items, codes = np.asarray(raters), np.asarray(items), np.asarray(codes)
    present = codes != MISSING
    raters, items, codes = raters[present], items[present], codes[present]
    rater_ids, rater_index = np.unique(raters, return_inverse=True)
    item_ids, item_index = np.unique(items, return_inverse=True)
    stats = cell_distribution(
        rater_index,
        len(rater_ids),
        item_index,
        len(item_ids),
        codes,
        bootstrap=bootstrap,
        rng=rng_for(seed, SEED_BOOTSTRAP, *key),
    )
    stats.heterogeneity, stats.heterogeneity_p = rater_heterogeneity(
        rater_index,
        item_index,
        codes,
        permutations=permutations,
        rng=rng_for(seed, SEED_HETEROGENEITY, *key),
    )
    if (
        factions_max_p is not None
        and stats.heterogeneity_p is not None
        and stats.heterogeneity_p < factions_max_p
    ):
        answered = codes != SKIP
        answers = np.full((len(rater_ids), len(item_ids)), np.nan)
        answers[rater_index[answered], item_index[answered]] = codes[answered]
        fit = factions_fit(answers, rng=rng_for(seed, SEED_FACTIONS, *key), resamples=bootstrap)
        if fit.n_factions == 2:
            stats.factions = fit.factions
    return stats
