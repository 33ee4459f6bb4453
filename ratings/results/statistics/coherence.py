"""Cross-criterion coherence (SCORING.md section 6): how raters who chose an image as more
stereotypical and more offensive answered representation for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ratings.results.statistics.codes import TIE, A, B
from ratings.results.statistics.polarization import ndfu


@dataclass(frozen=True)
class Coherence:
    """Representation answers where the rater chose one image as more stereotypical and offensive.

    same: that image was also the better representation; other: the other image; tie: both.
    """

    n_raters: int
    same: int
    tie: int
    other: int
    ndfu: float | None


def coherence(
    raters: np.ndarray,
    stereotype: np.ndarray,
    offensiveness: np.ndarray,
    representation: np.ndarray,
) -> Coherence:
    """Return the cross-criterion coherence of a cohort's votes (SCORING.md section 6)."""
    chosen = (stereotype == offensiveness) & ((stereotype == A) | (stereotype == B))
    answered = (representation >= A) & (representation <= B)
    selected = chosen & answered
    image, answer = stereotype[selected], representation[selected]
    same = int((answer == image).sum())
    tie = int((answer == TIE).sum())
    other = int((answer == -image).sum())
    return Coherence(
        n_raters=len(np.unique(raters[selected])),
        same=same,
        tie=tie,
        other=other,
        ndfu=ndfu([same, tie, other]) if selected.any() else None,
    )
