"""The label of a score row (SCORING.md section 8): consensus, split, contested or insufficient."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABELS = ("consensus", "split", "contested", "insufficient")


@dataclass(frozen=True)
class Thresholds:
    """The label rules of SCORING.md section 8; each is a study setting."""

    k: int = 5
    split_min_ndfu: float = 0.5
    split_max_agreement: float = 0.0
    split_min_share: float = 0.25
    split_max_p: float = 0.01
    contested_max_top_share: float = 0.6


def score_label(
    *,
    n_raters: int,
    histogram: tuple[int, int, int] | np.ndarray,
    ndfu: float | None,
    agreement: float | None,
    heterogeneity_p: float | None,
    thresholds: Thresholds,
) -> str:
    """Label a row `insufficient`, `split`, `contested` or `consensus` (SCORING.md section 8).

    `histogram` holds the counts of a, tie and b (skips left out). Alpha never decides a label.
    """
    if n_raters < thresholds.k:
        return "insufficient"
    counts = np.asarray(histogram, dtype=float)
    total = counts.sum()
    if total == 0:
        return "insufficient"
    shares = counts / total
    split = (
        ndfu is not None
        and agreement is not None
        and heterogeneity_p is not None
        and ndfu >= thresholds.split_min_ndfu
        and agreement < thresholds.split_max_agreement
        and min(shares[0], shares[2]) >= thresholds.split_min_share
        and heterogeneity_p < thresholds.split_max_p
    )
    if split:
        return "split"
    if shares.max() < thresholds.contested_max_top_share:
        return "contested"
    return "consensus"
