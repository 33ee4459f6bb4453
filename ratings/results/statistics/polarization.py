"""Polarization of a distribution (SCORING.md section 3): nDFU and van der Eijk's agreement A."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


def ndfu(histogram_counts: Sequence[float] | np.ndarray) -> float | None:
    """Return the normalized distance from unimodality of a histogram over ordered bins.

    From the (first) peak m, walk outwards; the DFU is the largest rise met, h[i] minus the
    lowest bin between m and i, and nDFU divides it by h[m]: 0 for a unimodal or flat histogram,
    1 for a perfect 50/0/50 split.
    """
    counts = np.asarray(histogram_counts, dtype=np.float64)
    if not len(counts) or counts.sum() <= 0:
        return None
    peak = int(np.argmax(counts))
    rise = 0.0
    for i in range(peak + 1, len(counts)):
        rise = max(rise, counts[i] - counts[peak:i].min())
    for i in range(peak - 1, -1, -1):
        rise = max(rise, counts[i] - counts[i + 1 : peak + 1].min())
    return float(rise / counts[peak])


def _pattern_agreement(pattern: np.ndarray) -> float:
    """Return van der Eijk's agreement of one layer (a 0/1 pattern over K ordered bins)."""
    k = len(pattern)
    filled = int(pattern.sum())
    if filled == 1:
        return 1.0
    bimodal = unimodal = 0  # triples 1-0-1, and 1-1-0 or 0-1-1
    for i, j, m in itertools.combinations(range(k), 3):
        triple = (pattern[i], pattern[j], pattern[m])
        if triple == (1, 0, 1):
            bimodal += 1
        elif triple in ((1, 1, 0), (0, 1, 1)):
            unimodal += 1
    if unimodal + bimodal == 0:
        return 0.0  # a flat layer: no agreement
    unimodality = ((k - 2) * unimodal - (k - 1) * bimodal) / ((k - 2) * (unimodal + bimodal))
    return unimodality * (1 - (filled - 1) / (k - 1))


def van_der_eijk_agreement(frequencies: Sequence[float] | np.ndarray) -> float | None:
    """Return van der Eijk's (2001) agreement A over ordered bins, in [-1, 1].

    A port of agrmt's `agreement`: the distribution is peeled into layers (each the smallest
    non-zero count times the pattern of non-empty bins), each layer's agreement follows from
    its pattern, and A is their average weighted by layer size. +1: consensus; 0: uniform;
    -1: perfect polarization.
    """
    remainder = np.asarray(frequencies, dtype=np.float64).copy()
    if len(remainder) < 3 or (remainder < 0).any():
        return None
    total = remainder.sum()
    if total <= 0:
        return None
    agreement = 0.0
    for _ in range(len(remainder)):
        pattern = (remainder > 0).astype(int)
        if not pattern.any():
            break
        layer = pattern * remainder[remainder > 0].min()
        agreement += layer.sum() / total * _pattern_agreement(pattern)
        remainder = remainder - layer
    return float(agreement)
