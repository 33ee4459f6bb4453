"""Agreement within a cohort (SCORING.md section 2): Krippendorff's ordinal alpha."""

from __future__ import annotations

import krippendorff
import numpy as np

from ratings.results.statistics.codes import TIE, A, B


def krippendorff_alpha_ordinal(items: np.ndarray, codes: np.ndarray) -> float | None:
    """Return Krippendorff's ordinal alpha over items; None where it is undefined.

    Built from per-item value counts (the package's `value_counts` form of the raters x items
    matrix, which would be mostly empty). A cohort whose every vote is the same answer has no
    expected disagreement, so alpha is undefined there: the kappa paradox of SCORING.md section 8.
    """
    items, codes = np.asarray(items), np.asarray(codes)
    keep = (codes >= A) & (codes <= B)
    if not keep.any():
        return None
    item_ids, item_index = np.unique(items[keep], return_inverse=True)
    value_counts = np.bincount(
        item_index * 3 + codes[keep].astype(np.intp) + 1, minlength=len(item_ids) * 3
    ).reshape(len(item_ids), 3)
    return alpha_of_value_counts(value_counts)


def alpha_of_value_counts(value_counts: np.ndarray) -> float | None:
    """Return ordinal alpha from per-item counts of a, tie and b; None where it is undefined."""
    value_counts = value_counts[value_counts.sum(axis=1) >= 2]
    if not len(value_counts):
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        value = krippendorff.alpha(
            value_counts=value_counts, value_domain=[A, TIE, B], level_of_measurement="ordinal"
        )
    return float(value) if np.isfinite(value) else None
