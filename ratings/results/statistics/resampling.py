"""Seeded resampling shared by the statistics: generators, cluster draws, percentile intervals.

Every resampling (bootstrap intervals, permutation tests) draws from a generator seeded by the
run's seed and the cell's key, never from shared global state, so a rerun over the same votes
gives the same numbers whatever order the worker threads take the cells in.
"""

from __future__ import annotations

import numpy as np

# Tags mixed into the seed of each kind of resampling, so that two kinds never share draws.
SEED_BOOTSTRAP, SEED_HETEROGENEITY, SEED_GROUPS, SEED_STRENGTHS, SEED_FACTIONS = 1, 2, 3, 4, 5
# Elements handled per batch of bootstrap or label-permutation draws: large enough that
# numpy's per-call cost vanishes, small enough for bounded memory.
BATCH_ELEMENTS = 1 << 21
# Relative tolerance when a permuted statistic is compared with the observed one: a statistic
# that is equal up to floating-point rounding counts as at least as extreme.
TIE_TOLERANCE = 1e-9


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """Return the generator of one resampling, seeded by the run's seed and the cell's key."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *(int(part) for part in key)]))


def cluster_weights(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Return `count` rows of how often each of n clusters is drawn, with replacement."""
    draws = rng.integers(0, n, size=(count, n))
    draws += (np.arange(count) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=count * n).reshape(count, n)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """Return the central `level` interval of the finite values, or None if there are none."""
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
