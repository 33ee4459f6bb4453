"""The label of a score row (SCORING.md section 8a): consensus, split, contested or insufficient.

A split is a property of raters, not of a histogram: two consistent factions leaning opposite
ways, the smaller large enough. nDFU, van der Eijk's A and alpha are reported beside the label,
and none of them decides it: a consistent third of the raters answering the other way is a
split although its histogram looks like a 62 % majority.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

LABELS = ("consensus", "split", "contested", "insufficient")


@dataclass(frozen=True)
class Thresholds:
    """The label rules of SCORING.md section 8a; each is a study setting but the lean."""

    k: int = 5
    split_min_share: float = 0.2
    split_max_p: float = 0.01
    # Each faction's lean at least this far from 0, on opposite sides (section 8a).
    split_min_lean: float = 0.2
    contested_max_top_share: float = 0.6


class FactionSize(Protocol):
    """What the label reads of a faction: a fitted one, or one stored with a score row."""

    n_raters: int
    share: float
    lean: float | None


@dataclass(frozen=True)
class Dissent:
    """A consistent minority too small to make a split, shown beside the label."""

    n_raters: int
    share: float
    lean: float


@dataclass(frozen=True)
class RowLabel:
    label: str  # one of LABELS
    dissent: Dissent | None


def row_label(
    *,
    n_raters: int,
    histogram: Sequence[int],
    heterogeneity_p: float | None,
    factions: Sequence[FactionSize] | None,
    thresholds: Thresholds,
) -> RowLabel:
    """Label a row `insufficient`, `split`, `contested` or `consensus`, with any dissent.

    `histogram` holds the counts of a, tie and b (skips left out); `factions` the row's two
    factions, larger first, when two fit better than one (else None or one). Two factions that
    are consistent (heterogeneity p < split_max_p) and opposed (leans of opposite sign, each at
    least split_min_lean from 0) make a split when the smaller holds at least split_min_share
    of the raters and at least k of them; a smaller one is dissent, reported beside the label.
    """
    total = sum(histogram)
    if n_raters < thresholds.k or total == 0:
        return RowLabel("insufficient", None)
    dissent = None
    if (
        factions is not None
        and len(factions) == 2
        and heterogeneity_p is not None
        and heterogeneity_p < thresholds.split_max_p
    ):
        larger, smaller = factions
        leans = (larger.lean, smaller.lean)
        opposed = (
            None not in leans
            and min(leans) <= -thresholds.split_min_lean
            and max(leans) >= thresholds.split_min_lean
        )
        if opposed:
            if smaller.share >= thresholds.split_min_share and smaller.n_raters >= thresholds.k:
                return RowLabel("split", None)
            dissent = Dissent(n_raters=smaller.n_raters, share=smaller.share, lean=smaller.lean)
    if max(histogram) / total < thresholds.contested_max_top_share:
        return RowLabel("contested", dissent)
    return RowLabel("consensus", dissent)
