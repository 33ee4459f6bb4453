"""The distribution of a cell's votes (SCORING.md section 1): counts, b's shares, intervals."""

from __future__ import annotations

import numpy as np

from ratings.results.statistics.codes import MISSING
from ratings.results.statistics.resampling import (
    BATCH_ELEMENTS,
    cluster_weights,
    percentile_interval,
)


def histogram(codes: np.ndarray) -> np.ndarray:
    """Return the counts of a, tie, b and skip among coded votes (MISSING left out)."""
    codes = np.asarray(codes)
    codes = codes[codes != MISSING]
    return np.bincount(codes.astype(np.intp) + 1, minlength=4)[:4]


def share_b(count_a: float, count_tie: float, count_b: float) -> float | None:
    """Return b's decisive win share, b / (a + b); None without a decisive vote."""
    decisive = count_a + count_b
    return float(count_b / decisive) if decisive else None


def share_b_ties_half(count_a: float, count_tie: float, count_b: float) -> float | None:
    """Return b's share with each tie as half a win, (b + tie/2) / (a + tie + b)."""
    total = count_a + count_tie + count_b
    return float((count_b + count_tie / 2) / total) if total else None


def rater_bootstrap_shares(
    rater_counts: np.ndarray, *, resamples: int, rng: np.random.Generator
) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """Return rater-cluster bootstrap intervals (2.5 and 97.5 percentiles) of both b shares.

    `rater_counts` holds each rater's counts of a, tie and b. Raters are resampled with
    replacement, whole: one rater's votes are not independent of each other, so resampling
    single votes would make the intervals too narrow.
    """
    rater_counts = np.asarray(rater_counts, dtype=np.float64)
    n = len(rater_counts)
    if n == 0 or resamples < 1:
        return None, None
    totals = []
    batch = max(1, BATCH_ELEMENTS // max(n, 1))
    for start in range(0, resamples, batch):
        count = min(batch, resamples - start)
        totals.append(cluster_weights(n, count, rng) @ rater_counts)
    total = np.concatenate(totals)
    a, tie, b = total[:, 0], total[:, 1], total[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        decisive = b / (a + b)
        ties_half = (b + tie / 2) / (a + tie + b)
    return percentile_interval(decisive), percentile_interval(ties_half)
