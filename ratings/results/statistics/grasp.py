"""Group association (SCORING.md section 5): GRASP cohesion, the GAI and its permutation test."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ratings.results.statistics.codes import A, B
from ratings.results.statistics.resampling import BATCH_ELEMENTS, TIE_TOLERANCE

# Sums of GRASP over a group: same answers and common items, within it and across its edge.
Sums = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

# Above this many rater pairs per answer, GRASP's sums come from counts per item instead of the
# pairs (AnswerCounts): where every rater answers the same few items, the pairs grow with the
# square of the raters (9,000 raters on one item: 40 million pairs, gigabytes), the counts
# with the answers.
PAIRS_PER_ANSWER_LIMIT = 4


@dataclass(frozen=True)
class RaterAgreement:
    """Pairwise agreement between raters: for each pair that rated an item in common (r < s),
    on how many common items they gave the same answer."""

    n_raters: int
    first: np.ndarray
    second: np.ndarray
    same: np.ndarray
    common: np.ndarray

    @property
    def size(self) -> int:
        """The length of the arrays one permutation reads."""
        return len(self.first)

    def sums(self, members: np.ndarray) -> tuple[float, float, float, float]:
        inside = members[self.first] & members[self.second]
        across = members[self.first] ^ members[self.second]
        return (
            self.same[inside].sum(),
            self.common[inside].sum(),
            self.same[across].sum(),
            self.common[across].sum(),
        )

    def prefix_sums(self, position: np.ndarray, sizes: np.ndarray) -> Sums:
        """The sums for the groups of the first k raters of each order, for each k in sizes.

        `position` (orders x raters) gives each rater's place in each order. Edge sums per
        prefix come from histograms of each pair's later (or earlier) position and a
        cumulative sum.
        """
        count, n = position.shape
        at_first, at_second = position[:, self.first], position[:, self.second]
        offsets = (np.arange(count) * n)[:, None]
        later = np.maximum(at_first, at_second) + offsets
        earlier = np.minimum(at_first, at_second) + offsets

        def prefix(where: np.ndarray, weights: np.ndarray) -> np.ndarray:
            # Column k - 1: the weight of pairs whose position (later or earlier) is below k.
            totals = np.bincount(
                where.ravel(),
                weights=np.broadcast_to(weights, where.shape).ravel(),
                minlength=count * n,
            )
            return np.cumsum(totals.reshape(count, n), axis=1)[:, sizes - 1]

        in_same, in_common = prefix(later, self.same), prefix(later, self.common)
        cross_same = prefix(earlier, self.same) - in_same
        cross_common = prefix(earlier, self.common) - in_common
        return in_same, in_common, cross_same, cross_common


@dataclass(frozen=True)
class _KeyCounts:
    """How many answers each rater gave under each key (an item, or an item and answer)."""

    rater: np.ndarray  # one entry per (rater, key) with answers, sorted by key
    key: np.ndarray
    count: np.ndarray
    totals: np.ndarray  # per key (indexed by key): every rater's answers under it

    @classmethod
    def of(cls, raters: np.ndarray, keys: np.ndarray, n_raters: int) -> _KeyCounts:
        combined, count = np.unique(keys.astype(np.int64) * n_raters + raters, return_counts=True)
        key, rater = np.divmod(combined, n_raters)
        count = count.astype(np.float64)
        return cls(
            rater=rater.astype(np.intp),
            key=key,
            count=count,
            totals=np.bincount(key, weights=count),
        )

    def sums(self, members: np.ndarray) -> tuple[float, float]:
        # Over pairs of raters r < s, sum c_r c_s per key: (n^2 - sum of c^2) / 2 within the
        # group, n (N - n) across its edge, n the group's answers under the key and N all.
        chosen = members[self.rater]
        n_group = np.bincount(self.key[chosen], weights=self.count[chosen])
        squares = np.bincount(self.key[chosen], weights=self.count[chosen] ** 2)
        inside = ((n_group**2 - squares) / 2).sum()
        return inside, (n_group * (self.totals[: len(n_group)] - n_group)).sum()

    def prefix_sums(self, position: np.ndarray, sizes: np.ndarray) -> tuple:
        count, n = position.shape
        at = position[:, self.rater]  # orders x entries
        # Within each key, the entries in the order's order (the keys stay where they are:
        # entries are sorted by key, and key * n + position sorts by key first).
        order = np.argsort(self.key * n + at, axis=1, kind="stable")
        ordered_count = self.count[order]
        # So each ordered entry's key is the entry's own at that place: per-key values need no
        # reordering. The answers under the same key from raters earlier in the order:
        before_key = (np.cumsum(self.totals) - self.totals)[self.key]
        earlier = np.cumsum(ordered_count, axis=1) - ordered_count - before_key
        offsets = (np.arange(count) * n)[:, None]
        where = np.take_along_axis(at, order, axis=1) + offsets

        def prefix(weights: np.ndarray, where: np.ndarray = where) -> np.ndarray:
            totals = np.bincount(where.ravel(), weights=weights.ravel(), minlength=count * n)
            return np.cumsum(totals.reshape(count, n), axis=1)[:, sizes - 1]

        # Within the first k: the pairs of entries under a key, each counted at its later one.
        inside = prefix(earlier * ordered_count)
        everyone = prefix(ordered_count * self.totals[self.key])  # sum of n N over keys
        squares = prefix(np.broadcast_to(ordered_count**2, where.shape))
        return inside, everyone - 2 * inside - squares


@dataclass(frozen=True)
class AnswerCounts:
    """GRASP's sums from each rater's answers counted per item and per item and answer, for
    studies where rater pairs would far outnumber the answers (PAIRS_PER_ANSWER_LIMIT).

    The same sums as RaterAgreement's: a sum over pairs of raters of their common items is a
    sum over items of the pairs of raters who answered it.
    """

    n_raters: int
    by_answer: _KeyCounts
    by_item: _KeyCounts

    @property
    def size(self) -> int:
        return len(self.by_answer.rater) + len(self.by_item.rater)

    def sums(self, members: np.ndarray) -> tuple[float, float, float, float]:
        same_in, same_cross = self.by_answer.sums(members)
        common_in, common_cross = self.by_item.sums(members)
        return same_in, common_in, same_cross, common_cross

    def prefix_sums(self, position: np.ndarray, sizes: np.ndarray) -> Sums:
        same_in, same_cross = self.by_answer.prefix_sums(position, sizes)
        common_in, common_cross = self.by_item.prefix_sums(position, sizes)
        return same_in, common_in, same_cross, common_cross


def rater_agreement(
    raters: np.ndarray,
    items: np.ndarray,
    codes: np.ndarray,
    *,
    n_raters: int,
    form: str = "auto",
) -> RaterAgreement | AnswerCounts:
    """Return what GRASP needs of the raters' answers (dense rater indices below n_raters).

    The agreement of every pair of raters who answered an item in common, or, where those
    pairs would outnumber the answers PAIRS_PER_ANSWER_LIMIT times (or `form` is "counts"),
    the answers counted per item: both give the same sums.
    """
    keep = (codes >= A) & (codes <= B)
    raters, items, codes = raters[keep], items[keep], codes[keep].astype(np.intp)
    if not len(raters):
        empty = np.zeros(0, dtype=np.intp)
        return RaterAgreement(n_raters, empty, empty, empty.astype(float), empty.astype(float))
    _, item_index = np.unique(items, return_inverse=True)
    per_item = np.bincount(item_index).astype(np.float64)
    pairs = (per_item * (per_item - 1) / 2).sum()
    if form == "counts" or (form == "auto" and pairs > PAIRS_PER_ANSWER_LIMIT * len(raters)):
        return AnswerCounts(
            n_raters=n_raters,
            by_answer=_KeyCounts.of(raters, item_index * 3 + codes + 1, n_raters),
            by_item=_KeyCounts.of(raters, item_index, n_raters),
        )
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
    agreement: RaterAgreement | AnswerCounts,
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
    size at once (`prefix_sums`). The p-value is one-sided (GAI at least as high), with
    permuted GAIs that are undefined counted as at least as high.
    """
    groups = np.asarray(groups, dtype=bool)
    n = agreement.n_raters

    results: list[GroupAssociation] = []
    sizes = groups.sum(axis=1)
    observed = np.full(len(groups), np.nan)
    for index, members in enumerate(groups):
        same_in, common_in, same_cross, common_cross = agreement.sums(members)
        cohesion_in = _ratio(same_in, common_in)
        cohesion_cross = _ratio(same_cross, common_cross)
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
    if not testable.any() or permutations < 1 or not agreement.size:
        return results

    tested_sizes = sizes[testable]
    thresholds = observed[testable] - TIE_TOLERANCE * np.maximum(np.abs(observed[testable]), 1)
    extreme = np.zeros(int(testable.sum()), dtype=np.int64)
    batch = int(np.clip(BATCH_ELEMENTS // max(agreement.size, n, 1), 1, permutations))
    ranks = np.arange(n)
    for start in range(0, permutations, batch):
        count = min(batch, permutations - start)
        order = rng.permuted(np.broadcast_to(ranks, (count, n)), axis=1)
        position = np.empty_like(order)
        np.put_along_axis(position, order, np.broadcast_to(ranks, (count, n)), axis=1)
        in_same, in_common, cross_same, cross_common = agreement.prefix_sums(position, tested_sizes)
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
