"""More than two variants (SCORING.md section 7): Bradley-Terry strengths and their intervals."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgWarning

from ratings.results.statistics.codes import TIE, A, B
from ratings.results.statistics.resampling import (
    BATCH_ELEMENTS,
    cluster_weights,
    percentile_interval,
)


def comparison_matrix(
    first: np.ndarray, second: np.ndarray, codes: np.ndarray, *, n_variants: int
) -> np.ndarray:
    """Return wins[i, j]: how often variant i beat variant j, each tie counting half each way."""
    wins = np.zeros((n_variants, n_variants))
    decisive_a, decisive_b, tied = codes == A, codes == B, codes == TIE
    np.add.at(wins, (first[decisive_a], second[decisive_a]), 1.0)
    np.add.at(wins, (second[decisive_b], first[decisive_b]), 1.0)
    np.add.at(wins, (first[tied], second[tied]), 0.5)
    np.add.at(wins, (second[tied], first[tied]), 0.5)
    return wins


def bradley_terry(wins: np.ndarray, *, alpha: float = 0.01) -> np.ndarray | None:
    """Return Bradley-Terry log-strengths (mean zero) by choix's I-LSR; None if it fails.

    `alpha` is choix's regularisation, a small pseudo-count on every pair, so that a variant
    that never won still gets a finite strength.
    """
    import choix  # imported here: it loads scipy.stats, seconds that other callers never need

    try:
        with warnings.catch_warnings():
            # The chain's generator is singular by construction; choix solves around that,
            # but this scipy warns about it from outside choix's own filter.
            warnings.simplefilter("ignore", LinAlgWarning)
            return choix.ilsr_pairwise_dense(np.asarray(wins, dtype=np.float64), alpha=alpha)
    except (RuntimeError, ValueError):
        return None


def bradley_terry_batch(
    wins: np.ndarray, *, alpha: float = 0.01, max_iter: int = 100, tol: float = 1e-8
) -> np.ndarray:
    """Return the Bradley-Terry log-strengths of many comparison matrices (batch, V, V) at once.

    The same fixed point as choix's `ilsr_pairwise_dense` (iterated Luce spectral ranking with
    the same regularisation), vectorised over the batch so that a thousand bootstrap resamples
    cost a few batched linear solves rather than a thousand Python loops. Rows that do not
    converge are NaN.
    """
    wins = np.asarray(wins, dtype=np.float64)
    count, n, _ = wins.shape
    weights = np.ones((count, n))
    params = np.zeros((count, n))
    converged = np.zeros(count, dtype=bool)
    for _ in range(max_iter):
        rates = alpha + np.transpose(wins, (0, 2, 1)) / (weights[:, :, None] + weights[:, None, :])
        idx = np.arange(n)
        rates[:, idx, idx] = 0.0
        rates[:, idx, idx] = -rates.sum(axis=2)
        # The stationary distribution pi solves pi Q = 0 with its entries summing to one.
        system = np.transpose(rates, (0, 2, 1)).copy()
        system[:, -1, :] = 1.0
        target = np.zeros((count, n, 1))
        target[:, -1, 0] = 1.0
        with np.errstate(all="ignore"):
            try:
                stationary = np.linalg.solve(system, target)[:, :, 0]
            except np.linalg.LinAlgError:
                return np.full((count, n), np.nan)
            logs = np.log(stationary)
        new = logs - logs.mean(axis=1, keepdims=True)
        done = np.abs(new - params).sum(axis=1) < tol
        params = np.where(converged[:, None], params, new)
        converged |= done
        if converged.all():
            break
        weights = np.exp(params)
        weights *= n / weights.sum(axis=1, keepdims=True)
    params[~converged] = np.nan
    return params


@dataclass(frozen=True)
class Strength:
    variant: int
    strength: float
    low: float | None
    high: float | None


def bradley_terry_strengths(
    raters: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    codes: np.ndarray,
    *,
    n_variants: int,
    resamples: int,
    rng: np.random.Generator,
) -> list[Strength]:
    """Return each variant's Bradley-Terry strength with a rater-cluster bootstrap interval.

    Ties count as half a win each way (not dropped): "both equally" is evidence that the two
    are close. Variants are dense indices below n_variants; only those compared appear.
    """
    keep = (codes >= A) & (codes <= B)
    raters, first, second, codes = raters[keep], first[keep], second[keep], codes[keep]
    present = np.unique(np.r_[first, second])
    if len(present) < 2:
        return []
    local = np.full(n_variants, -1, dtype=np.intp)
    local[present] = np.arange(len(present))
    first, second = local[first], local[second]
    v = len(present)
    point = bradley_terry(comparison_matrix(first, second, codes, n_variants=v))
    if point is None:
        return []
    _, rater_index = np.unique(raters, return_inverse=True)
    n_raters = int(rater_index.max()) + 1
    per_rater = np.zeros((n_raters, v, v))
    for rater in range(n_raters):  # raters are few next to votes; each matrix is tiny
        mine = rater_index == rater
        per_rater[rater] = comparison_matrix(first[mine], second[mine], codes[mine], n_variants=v)
    flat = per_rater.reshape(n_raters, v * v)
    boot = []
    batch = max(1, BATCH_ELEMENTS // max(n_raters, 1))
    for start in range(0, resamples, batch):
        count = min(batch, resamples - start)
        boot.append(
            bradley_terry_batch((cluster_weights(n_raters, count, rng) @ flat).reshape(-1, v, v))
        )
    samples = np.concatenate(boot) if boot else np.zeros((0, v))
    strengths = []
    for index, variant in enumerate(present):
        interval = percentile_interval(samples[:, index]) if len(samples) else None
        strengths.append(
            Strength(
                variant=int(variant),
                strength=float(point[index]),
                low=interval[0] if interval else None,
                high=interval[1] if interval else None,
            )
        )
    return strengths
