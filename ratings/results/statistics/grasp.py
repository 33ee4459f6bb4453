"""Group association (SCORING.md section 5): GRASP cohesion, the GAI and its permutation test."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ratings.results.statistics.codes import A, B
from ratings.results.statistics.resampling import BATCH_ELEMENTS, TIE_TOLERANCE


@dataclass(frozen=True)
class RaterAgreement:
    """Pairwise agreement between raters: for each pair that rated an item in common (r < s),
    on how many common items they gave the same answer."""

    n_raters: int
    first: np.ndarray
    second: np.ndarray
    same: np.ndarray
    common: np.ndarray


def rater_agreement(
    raters: np.ndarray, items: np.ndarray, codes: np.ndarray, *, n_raters: int
) -> RaterAgreement:
    """Return the agreement of every pair of raters (dense rater indices below n_raters)."""
    keep = (codes >= A) & (codes <= B)
    raters, items, codes = raters[keep], items[keep], codes[keep].astype(np.intp)
    if not len(raters):
        empty = np.zeros(0, dtype=np.intp)
        return RaterAgreement(n_raters, empty, empty, empty.astype(float), empty.astype(float))
    _, item_index = np.unique(items, return_inverse=True)
    n_items = int(item_index.max()) + 1
    ones = np.ones(len(raters), dtype=np.float64)
    rated = sp.csr_matrix((ones, (item_index, raters)), shape=(n_items, n_raters))
    by_value = sp.csr_matrix(
        (ones, (item_index * 3 + codes + 1, raters)), shape=(n_items * 3, n_raters)
    )
    common = sp.triu(rated.T @ rated, k=1).tocoo()
    same = sp.triu(by_value.T @ by_value, k=1).tocsr()
    same_values = np.asarray(same[common.row, common.col]).ravel()
    return RaterAgreement(
        n_raters=n_raters,
        first=common.row.astype(np.intp),
        second=common.col.astype(np.intp),
        same=same_values,
        common=common.data.astype(np.float64),
    )


@dataclass(frozen=True)
class GroupAssociation:
    cohesion_in: float | None
    cohesion_cross: float | None
    gai: float | None
    p: float | None


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / denominator


def group_association(
    agreement: RaterAgreement,
    groups: np.ndarray,
    *,
    permutations: int,
    rng: np.random.Generator,
) -> list[GroupAssociation]:
    """Return GRASP's cohesion and group association index of each group, with p-values.

    `groups` is a boolean (groups x raters) membership matrix. In-group cohesion C_I is the
    share of same answers over the (rater pair, common item) instances within the group;
    cross-group cohesion C_X the same over pairs with one rater in the group and one outside.
    GAI = C_I / C_X (> 1: a cohesive, distinct group; < 1: divided within).

    The null permutes group labels across raters (answers fixed): each permutation orders the
    raters at random and takes the first |G| as the group, so one ordering serves every group
    size at once. Edge sums per prefix come from histograms of each pair's later position and a
    cumulative sum. The p-value is one-sided (GAI at least as high), with permuted GAIs that
    are undefined counted as at least as high.
    """
    groups = np.asarray(groups, dtype=bool)
    n = agreement.n_raters
    first, second = agreement.first, agreement.second
    same, common = agreement.same, agreement.common

    results: list[GroupAssociation] = []
    sizes = groups.sum(axis=1)
    observed = np.full(len(groups), np.nan)
    for index, members in enumerate(groups):
        inside = members[first] & members[second]
        across = members[first] ^ members[second]
        cohesion_in = _ratio(same[inside].sum(), common[inside].sum())
        cohesion_cross = _ratio(same[across].sum(), common[across].sum())
        gai = _ratio(cohesion_in, cohesion_cross)
        observed[index] = gai
        results.append(
            GroupAssociation(
                cohesion_in=_finite(cohesion_in),
                cohesion_cross=_finite(cohesion_cross),
                gai=_finite(gai),
                p=None,
            )
        )
    testable = np.isfinite(observed) & (sizes >= 2) & (sizes < n)
    if not testable.any() or permutations < 1 or not len(first):
        return results

    tested_sizes = sizes[testable]
    thresholds = observed[testable] - TIE_TOLERANCE * np.maximum(np.abs(observed[testable]), 1)
    extreme = np.zeros(int(testable.sum()), dtype=np.int64)
    batch = int(np.clip(BATCH_ELEMENTS // max(len(first), n, 1), 1, permutations))
    ranks = np.arange(n)
    for start in range(0, permutations, batch):
        count = min(batch, permutations - start)
        order = rng.permuted(np.broadcast_to(ranks, (count, n)), axis=1)
        position = np.empty_like(order)
        np.put_along_axis(position, order, np.broadcast_to(ranks, (count, n)), axis=1)
        at_first, at_second = position[:, first], position[:, second]
        later = np.maximum(at_first, at_second)
        earlier = np.minimum(at_first, at_second)
        offsets = (np.arange(count) * n)[:, None]
        later += offsets
        earlier += offsets

        def prefix(where: np.ndarray, weights: np.ndarray, _count: int = count) -> np.ndarray:
            # Column k - 1: the weight of pairs whose position (later or earlier) is below k.
            totals = np.bincount(
                where.ravel(),
                weights=np.broadcast_to(weights, where.shape).ravel(),
                minlength=_count * n,
            )
            return np.cumsum(totals.reshape(_count, n), axis=1)[:, tested_sizes - 1]

        in_same, in_common = prefix(later, same), prefix(later, common)
        cross_same = prefix(earlier, same) - in_same
        cross_common = prefix(earlier, common) - in_common
        permuted = _ratio(_ratio(in_same, in_common), _ratio(cross_same, cross_common))
        extreme += ((permuted >= thresholds) | ~np.isfinite(permuted)).sum(axis=0)
    p_values = (1 + extreme) / (1 + permutations)
    for index, p in zip(np.flatnonzero(testable), p_values, strict=True):
        results[index] = GroupAssociation(
            cohesion_in=results[index].cohesion_in,
            cohesion_cross=results[index].cohesion_cross,
            gai=results[index].gai,
            p=float(p),
        )
    return results


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return Benjamini-Hochberg adjusted p-values (q), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    n = len(p)
    if not n:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(n)
    q[order] = np.minimum(adjusted, 1.0)
    return q


def _finite(value: float | np.floating) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
