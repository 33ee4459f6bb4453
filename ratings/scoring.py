"""Split-aware statistics of votes (SCORING.md). Pure code: numpy arrays in, numbers out.

A vote on one criterion is coded a = -1, tie = 0, b = +1; `skip` ("can't judge") is counted
but left out of every statistic. MISSING marks a vote that has no answer to a criterion (one
added to the study after the vote); it is not counted at all.

Every resampling (bootstrap intervals, permutation tests) draws from a generator seeded by the
run's seed and the cell's key, never from shared global state, so a rerun over the same votes
gives the same numbers whatever order the worker threads take the cells in.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache

import krippendorff
import numpy as np
import scipy.sparse as sp
from scipy.linalg import LinAlgWarning

A, TIE, B, SKIP = -1, 0, 1, 2
MISSING = 3
CODES = {"a": A, "tie": TIE, "b": B, "skip": SKIP}

LABELS = ("consensus", "split", "contested", "insufficient")

# Tags mixed into the seed of each kind of resampling, so that two kinds never share draws.
_SEED_BOOTSTRAP, _SEED_HETEROGENEITY, _SEED_GROUPS, _SEED_STRENGTHS = 1, 2, 3, 4
# Items rated by at most this many raters are permuted through a table of every arrangement
# (one random draw per item); larger ones by a vectorised Fisher-Yates shuffle.
_TABLE_MAX_ITEM = 6
# Elements handled per batch of bootstrap or label-permutation draws: large enough that
# numpy's per-call cost vanishes, small enough for bounded memory.
_BATCH_ELEMENTS = 1 << 21
# The heterogeneity test permutes this many times per batch, over chunks of about this many
# votes: every array of a chunk (draws, received values) then stays a few megabytes.
_PERMUTATION_BATCH = 64
_CHUNK_VOTES = 1 << 15
# Relative tolerance when a permuted statistic is compared with the observed one: a statistic
# that is equal up to floating-point rounding counts as at least as extreme.
_TIE_TOLERANCE = 1e-9


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


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """Return the generator of one resampling, seeded by the run's seed and the cell's key."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *(int(part) for part in key)]))


# Section 1: the distribution.


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


def _cluster_weights(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Return `count` rows of how often each of n clusters is drawn, with replacement."""
    draws = rng.integers(0, n, size=(count, n))
    draws += (np.arange(count) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=count * n).reshape(count, n)


def _percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


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
    batch = max(1, _BATCH_ELEMENTS // max(n, 1))
    for start in range(0, resamples, batch):
        count = min(batch, resamples - start)
        totals.append(_cluster_weights(n, count, rng) @ rater_counts)
    total = np.concatenate(totals)
    a, tie, b = total[:, 0], total[:, 1], total[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        decisive = b / (a + b)
        ties_half = (b + tie / 2) / (a + tie + b)
    return _percentile_interval(decisive), _percentile_interval(ties_half)


# Section 2: agreement within the cohort.


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
    return _alpha_of_value_counts(value_counts)


# Section 3: polarization of the distribution.


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


# Section 4: split versus noise, rater heterogeneity.


@cache
def _arrangements(size: int) -> np.ndarray:
    """Return every permutation of range(size), one per row."""
    return np.array(list(itertools.permutations(range(size))), dtype=np.intp)


def _lean_variance(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Return the variance of leans (sum / count) over raters, per column of `sums`."""
    leans = sums / counts[:, None]
    return leans.var(axis=0)


def _sums_dtype(largest_count: int) -> type:
    return np.int16 if largest_count < np.iinfo(np.int16).max else np.int32


class _TableGroup:
    """Items of one small size, permuted through a table of every arrangement of their slots.

    Each item's ordered values form a pattern; the table maps (pattern, arrangement) to the
    value each slot receives. One 32-bit draw per item picks an arrangement by multiply-shift
    (bias below 2e-7), so a permutation costs one table lookup per vote and no sorting.
    Arrangements act on positions, not values: negating every vote (swapping a and b) negates
    every permuted sum exactly, so a swap changes no p-value.
    """

    def __init__(self, values: np.ndarray, slots: sp.csc_matrix) -> None:
        self.items, self.size = values.shape
        self.arrangements = len(_arrangements(self.size))
        self.slots = slots
        codes = (values.astype(np.int64) + 1) @ (3 ** np.arange(self.size, dtype=np.int64))
        _, first, pattern_of_item = np.unique(codes, return_index=True, return_inverse=True)
        order = _arrangements(self.size)
        self.tables = [
            np.ascontiguousarray(values[first][:, order[:, slot]].ravel().astype(np.int16))
            for slot in range(self.size)
        ]
        self.base = (pattern_of_item.astype(np.intp) * self.arrangements)[:, None]

    def sums(self, count: int, rng: np.random.Generator, dtype: type) -> np.ndarray:
        draws = rng.bit_generator.random_raw((self.items * count + 1) // 2)
        bits = draws.view(np.uint32)[: self.items * count].reshape(self.items, count)
        index = (bits.astype(np.uint64) * np.uint64(self.arrangements)) >> np.uint64(32)
        index = index.astype(np.intp)
        index += self.base
        received = np.empty((self.size, self.items, count), dtype=dtype)
        for slot in range(self.size):
            np.take(self.tables[slot], index, out=received[slot])
        return self.slots @ received.reshape(self.size * self.items, count)


class _ShuffleGroup:
    """Items of one larger size, permuted by a Fisher-Yates shuffle vectorised over items."""

    def __init__(self, values: np.ndarray, slots: sp.csc_matrix) -> None:
        self.values = values.astype(np.int16)
        self.slots = slots
        self.items, self.size = values.shape

    def sums(self, count: int, rng: np.random.Generator, dtype: type) -> np.ndarray:
        received = np.repeat(self.values.astype(dtype)[:, :, None], count, axis=2)
        for slot in range(self.size - 1):
            other = slot + rng.integers(0, self.size - slot, size=(self.items, 1, count))
            here = received[:, slot : slot + 1, :].copy()
            received[:, slot : slot + 1, :] = np.take_along_axis(received, other, axis=1)
            np.put_along_axis(received, other, here, axis=1)
        stacked = np.ascontiguousarray(received.transpose(1, 0, 2))
        return self.slots @ stacked.reshape(self.size * self.items, count)


class _Permuter:
    """Permute the votes of some items among their raters and sum what each row receives.

    Votes come sorted by item; `rows` gives the output row of each vote (-1: not summed).
    Items whose votes all agree never change: their sums are added as they are, not permuted.
    """

    def __init__(self, items: np.ndarray, values: np.ndarray, rows: np.ndarray, n_rows: int):
        self.n_rows = n_rows
        self.groups: list[_TableGroup | _ShuffleGroup] = []
        self.votes = 0
        self.constant = np.zeros(n_rows, dtype=np.int64)
        if not len(items):
            return
        starts = np.flatnonzero(np.r_[True, items[1:] != items[:-1]])
        sizes = np.diff(np.r_[starts, len(items)])
        varies = np.minimum.reduceat(values, starts) != np.maximum.reduceat(values, starts)
        still = ~np.repeat(varies, sizes) & (rows >= 0)
        self.constant = np.bincount(rows[still], weights=values[still], minlength=n_rows).astype(
            np.int64
        )
        for size in np.unique(sizes[varies]):
            of_size = starts[varies & (sizes == size)]
            per_chunk = max(1, _CHUNK_VOTES // int(size))
            for first in range(0, len(of_size), per_chunk):
                chosen = of_size[first : first + per_chunk]
                positions = chosen[:, None] + np.arange(size)
                slot_rows = rows[positions].T.ravel()  # slot-major: column slot * items + item
                counted = slot_rows >= 0
                slots = sp.csc_matrix(
                    (
                        np.ones(int(counted.sum()), dtype=np.int16),
                        (slot_rows[counted], np.flatnonzero(counted)),
                    ),
                    shape=(n_rows, size * len(chosen)),
                )
                group_class = _TableGroup if size <= _TABLE_MAX_ITEM else _ShuffleGroup
                self.groups.append(group_class(values[positions], slots))
                self.votes += int(size * len(chosen))

    def sums(self, count: int, rng: np.random.Generator, dtype: type) -> np.ndarray:
        total = np.repeat(self.constant.astype(dtype)[:, None], count, axis=1)
        for group in self.groups:
            total += group.sums(count, rng, dtype)
        return total


def rater_heterogeneity(
    raters: np.ndarray,
    items: np.ndarray,
    codes: np.ndarray,
    *,
    permutations: int,
    rng: np.random.Generator,
    min_items: int = 3,
) -> tuple[float | None, float | None]:
    """Return the variance of rater leans and its permutation p-value (SCORING.md section 4).

    A rater's lean is the mean of their coded votes over the items they rated (raters with
    fewer than `min_items` a/tie/b votes are left out of the statistic, though their votes stay
    in the permutations). The null permutes the votes among the raters of each item, which
    keeps item difficulty and the histogram and breaks rater consistency; the p-value is
    one-sided, (1 + #{permuted >= observed}) / (1 + permutations).

    This is what tells a split (half the raters always a, half always b) from coin-flipping
    raters, which give the same histogram. It needs items that raters of both leanings rated:
    when two camps never rate the same items, consistency cannot be told from item effects.
    """
    codes = np.asarray(codes)
    _, rater_index = np.unique(np.asarray(raters), return_inverse=True)
    _, item_index = np.unique(np.asarray(items), return_inverse=True)
    ((statistic, p),) = rater_heterogeneity_by_group(
        rater_index,
        item_index,
        codes,
        np.zeros(len(codes), dtype=np.intp),
        np.ones((1, 1), dtype=bool),
        permutations=permutations,
        rng=rng,
        group_rng=lambda group: rng,  # one group holds every vote: nothing is partial
        min_items=min_items,
    )
    return statistic, p


def rater_heterogeneity_by_group(
    raters: np.ndarray,
    items: np.ndarray,
    codes: np.ndarray,
    label_sets: np.ndarray,
    membership: np.ndarray,
    *,
    permutations: int,
    rng: np.random.Generator,
    group_rng: Callable[[int], np.random.Generator],
    min_items: int = 3,
) -> list[tuple[float | None, float | None]]:
    """Return the rater heterogeneity test of every group (cohort) at once.

    Each vote has a label set (`label_sets`, an index into `membership`), and
    membership[label set, group] says whether the vote counts in the group. The test of each
    group is `rater_heterogeneity` over the group's votes. Raters and items are dense indices
    (non-negative integers; gaps only cost memory); votes in the same order give the same
    draws.

    Why at once: an item whose every vote counts in a group is permuted the same way for that
    group as for any other group holding all its votes (a sub-culture and its culture, when the
    item's raters are all of that sub-culture). Such items are permuted once, and each group
    sums what its raters received from them; only items that a group holds in part get draws
    of their own (from `group_rng(group)`). Each group's test stays exact; the groups' tests
    share draws, as tests over the same votes may. The work is then about one pass over the
    votes per permutation, not one per level of the hierarchy.

    The permutations run in batches: each rater's permuted sum is one sparse product per item
    size (items of up to six raters through a table of arrangements, larger ones shuffled).
    """
    membership = np.asarray(membership, dtype=bool)
    n_sets, n_groups = membership.shape
    results: list[tuple[float | None, float | None]] = [(None, None)] * n_groups
    codes = np.asarray(codes)
    keep = (codes >= A) & (codes <= B)
    if not keep.any():
        return results
    order = np.flatnonzero(keep)
    order = order[np.argsort(np.asarray(items)[order], kind="stable")]
    rater_index = np.asarray(raters)[order].astype(np.intp)
    item_index = np.asarray(items)[order].astype(np.intp)
    values = codes[order].astype(np.int8)
    label_sets = np.asarray(label_sets)[order].astype(np.intp)
    n_raters = int(rater_index.max()) + 1
    dtype = _sums_dtype(int(np.bincount(rater_index).max()))

    # Which groups hold every vote of each item: the membership of its label set, or for an
    # item whose votes carry several label sets (a mixed item), the AND over them.
    starts = np.flatnonzero(np.r_[True, item_index[1:] != item_index[:-1]])
    item_of_start = item_index[starts]
    mixed_item = np.minimum.reduceat(label_sets, starts) != np.maximum.reduceat(label_sets, starts)
    n_items = int(item_index.max()) + 1
    mixed = np.zeros(n_items, dtype=bool)
    mixed[item_of_start[mixed_item]] = True
    set_of_item = np.zeros(n_items, dtype=np.intp)
    set_of_item[item_of_start] = label_sets[starts]
    mixed_votes = np.flatnonzero(mixed[item_index])
    mixed_wholes = np.zeros((0, n_groups), dtype=bool)
    class_of_item = set_of_item.copy()
    if len(mixed_votes):
        mixed_starts = np.flatnonzero(np.r_[True, np.diff(item_index[mixed_votes]) != 0])
        anded = np.logical_and.reduceat(membership[label_sets[mixed_votes]], mixed_starts, axis=0)
        packed, mixed_class = np.unique(np.packbits(anded, axis=1), axis=0, return_inverse=True)
        mixed_wholes = np.unpackbits(packed, axis=1, count=n_groups).astype(bool)
        class_of_item[item_index[mixed_votes[mixed_starts]]] = n_sets + mixed_class.ravel()
    # An item's class stands for the groups holding all its votes: its label set, or one
    # class per distinct combination among the mixed items.
    classes = np.concatenate([membership, mixed_wholes])
    whole_of_class = classes.any(axis=1)

    # The shared permutation: items whole for some group, summed per (rater, class) row.
    vote_class = class_of_item[item_index]
    shared_votes = whole_of_class[vote_class]
    row_keys = rater_index * len(classes) + vote_class
    if n_raters * len(classes) <= 1 << 26:
        present = np.zeros(n_raters * len(classes), dtype=bool)
        present[row_keys[shared_votes]] = True
        row_keys_shared = np.flatnonzero(present)
        row_of_key = np.cumsum(present) - 1
        row_of_vote = row_of_key[row_keys[shared_votes]]
    else:
        row_keys_shared, row_of_vote = np.unique(row_keys[shared_votes], return_inverse=True)
    rows = np.full(len(values), -1, dtype=np.intp)
    rows[shared_votes] = row_of_vote
    shared = _Permuter(item_index, values, rows, len(row_keys_shared))
    row_rater = row_keys_shared // len(classes)
    row_class = row_keys_shared % len(classes)
    observed_rows = np.bincount(
        row_of_vote, weights=values[shared_votes], minlength=len(row_keys_shared)
    )
    whole = classes[class_of_item]  # (items, groups) for the partial check below

    tests = []
    for group, in_group in enumerate(votes_by_group(label_sets, membership)):
        if not len(in_group):
            continue
        per_rater = np.bincount(rater_index[in_group], minlength=n_raters)
        eligible = per_rater >= min_items
        n_eligible = int(eligible.sum())
        if n_eligible < 2:
            continue
        position = np.full(n_raters, -1, dtype=np.intp)
        position[eligible] = np.arange(n_eligible)
        counts = per_rater[eligible].astype(np.float64)
        observed_sums = np.bincount(
            rater_index[in_group], weights=values[in_group], minlength=n_raters
        )[eligible]
        observed = float(_lean_variance(observed_sums[:, None], counts)[0])
        # Rows of the shared sums that this group's eligible raters receive.
        takes = classes[row_class, group] & eligible[row_rater]
        gather = sp.csr_matrix(
            (
                np.ones(int(takes.sum()), dtype=np.int16),
                (position[row_rater[takes]], np.flatnonzero(takes)),
            ),
            shape=(n_eligible, len(row_keys_shared)),
        )
        # Items the group holds in part: only mixed items can be; they get their own draws.
        maybe = in_group[mixed[item_index[in_group]]]
        partial_votes = np.sort(maybe[~whole[item_index[maybe], group]])
        partial = _Permuter(
            item_index[partial_votes],
            values[partial_votes],
            position[rater_index[partial_votes]],
            n_eligible,
        )
        # What neither permutation moves: the observed sums less what both contribute.
        fixed = observed_sums - gather @ observed_rows
        partial_eligible = partial_votes[eligible[rater_index[partial_votes]]]
        fixed -= np.bincount(
            position[rater_index[partial_eligible]],
            weights=values[partial_eligible],
            minlength=n_eligible,
        )
        tests.append((group, observed, counts, gather, partial, fixed))
    if not tests:
        return results

    extreme = {group: 0 for group, *_ in tests}
    batch = _PERMUTATION_BATCH
    partial_rngs = {group: group_rng(group) for group, *_ in tests}
    for start in range(0, permutations, batch):
        count = min(batch, permutations - start)
        shared_sums = shared.sums(count, rng, dtype) if len(row_keys_shared) else None
        for group, observed, counts, gather, partial, fixed in tests:
            sums = np.repeat(fixed[:, None], count, axis=1)
            if shared_sums is not None:
                sums += gather @ shared_sums
            if partial.votes or partial.constant.any():
                sums += partial.sums(count, partial_rngs[group], dtype)
            threshold = observed - _TIE_TOLERANCE * max(abs(observed), 1e-12)
            extreme[group] += int((_lean_variance(sums, counts) >= threshold).sum())
    for group, observed, *_ in tests:
        results[group] = (observed, (1 + extreme[group]) / (1 + permutations))
    return results


def votes_by_group(label_sets: np.ndarray, membership: np.ndarray) -> list[np.ndarray]:
    """Return, for each group, the indices of the votes that count in it.

    label_sets[v] is vote v's set of cohort labels (a row of membership), and membership[s, g]
    says whether a vote with label set s counts in group g. Within a group, votes come in the
    order of their label sets, and in their own order within each set.
    """
    label_sets = np.asarray(label_sets)
    order = np.argsort(label_sets, kind="stable")
    bounds = np.searchsorted(label_sets[order], np.arange(len(membership) + 1))
    groups = []
    for group in range(membership.shape[1]):
        parts = [order[bounds[s] : bounds[s + 1]] for s in np.flatnonzero(membership[:, group])]
        groups.append(np.concatenate(parts) if parts else np.zeros(0, dtype=np.intp))
    return groups


# Section 5: group association (GRASP).


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
    thresholds = observed[testable] - _TIE_TOLERANCE * np.maximum(np.abs(observed[testable]), 1)
    extreme = np.zeros(int(testable.sum()), dtype=np.int64)
    batch = int(np.clip(_BATCH_ELEMENTS // max(len(first), n, 1), 1, permutations))
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


# Section 6: cross-criterion coherence.


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


# Section 7: more than two variants, Bradley-Terry.


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
    batch = max(1, _BATCH_ELEMENTS // max(n_raters, 1))
    for start in range(0, resamples, batch):
        count = min(batch, resamples - start)
        boot.append(
            bradley_terry_batch((_cluster_weights(n_raters, count, rng) @ flat).reshape(-1, v, v))
        )
    samples = np.concatenate(boot) if boot else np.zeros((0, v))
    strengths = []
    for index, variant in enumerate(present):
        interval = _percentile_interval(samples[:, index]) if len(samples) else None
        strengths.append(
            Strength(
                variant=int(variant),
                strength=float(point[index]),
                low=interval[0] if interval else None,
                high=interval[1] if interval else None,
            )
        )
    return strengths


# One cell: everything of sections 1 to 4 for one cohort, criterion and variant pair.


@dataclass
class CellStatistics:
    """The statistics of one cohort on one criterion and variant pair (GRASP filled later)."""

    n_raters: int
    n_votes: int
    count_a: int
    count_tie: int
    count_b: int
    count_skip: int
    share_b: float | None = None
    share_b_low: float | None = None
    share_b_high: float | None = None
    share_b_ties_half: float | None = None
    share_b_ties_half_low: float | None = None
    share_b_ties_half_high: float | None = None
    alpha: float | None = None
    ndfu: float | None = None
    agreement: float | None = None
    heterogeneity: float | None = None
    heterogeneity_p: float | None = None
    cohesion_in: float | None = None
    cohesion_cross: float | None = None
    gai: float | None = None
    gai_p: float | None = None
    gai_q: float | None = None

    @property
    def histogram(self) -> tuple[int, int, int]:
        return self.count_a, self.count_tie, self.count_b

    def label(self, thresholds: Thresholds) -> str:
        return score_label(
            n_raters=self.n_raters,
            histogram=self.histogram,
            ndfu=self.ndfu,
            agreement=self.agreement,
            heterogeneity_p=self.heterogeneity_p,
            thresholds=thresholds,
        )


def _cell_distribution(
    raters: np.ndarray,
    n_raters: int,
    items: np.ndarray,
    n_items: int,
    codes: np.ndarray,
    *,
    bootstrap: int,
    rng: np.random.Generator,
) -> CellStatistics:
    """Return sections 1 to 3 of one cell; raters and items are dense indices below n_*."""
    count_a, count_tie, count_b, count_skip = (int(c) for c in histogram(codes))
    stats = CellStatistics(
        n_raters=int(np.count_nonzero(np.bincount(raters, minlength=n_raters))),
        n_votes=len(codes),
        count_a=count_a,
        count_tie=count_tie,
        count_b=count_b,
        count_skip=count_skip,
    )
    if count_a + count_tie + count_b == 0:
        return stats
    stats.share_b = share_b(count_a, count_tie, count_b)
    stats.share_b_ties_half = share_b_ties_half(count_a, count_tie, count_b)
    answered = codes != SKIP
    rater_counts = np.bincount(
        raters[answered] * 3 + codes[answered].astype(np.intp) + 1, minlength=n_raters * 3
    ).reshape(n_raters, 3)
    rater_counts = rater_counts[rater_counts.sum(axis=1) > 0]
    decisive_interval, ties_half_interval = rater_bootstrap_shares(
        rater_counts, resamples=bootstrap, rng=rng
    )
    if decisive_interval and stats.share_b is not None:
        stats.share_b_low, stats.share_b_high = decisive_interval
    if ties_half_interval:
        stats.share_b_ties_half_low, stats.share_b_ties_half_high = ties_half_interval
    value_counts = np.bincount(
        items[answered] * 3 + codes[answered].astype(np.intp) + 1, minlength=n_items * 3
    ).reshape(n_items, 3)
    stats.alpha = _alpha_of_value_counts(value_counts)
    counts = (count_a, count_tie, count_b)
    stats.ndfu = ndfu(counts)
    stats.agreement = van_der_eijk_agreement(counts)
    return stats


def _alpha_of_value_counts(value_counts: np.ndarray) -> float | None:
    value_counts = value_counts[value_counts.sum(axis=1) >= 2]
    if not len(value_counts):
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        value = krippendorff.alpha(
            value_counts=value_counts, value_domain=[A, TIE, B], level_of_measurement="ordinal"
        )
    return float(value) if np.isfinite(value) else None


def cell_statistics(
    raters: np.ndarray,
    items: np.ndarray,
    codes: np.ndarray,
    *,
    permutations: int = 1000,
    bootstrap: int = 1000,
    seed: int = 0,
    key: Sequence[int] = (),
) -> CellStatistics:
    """Return the statistics of SCORING.md sections 1-4 for one cell's votes.

    `raters` and `items` identify each vote's rater and item (pair); `codes` are the coded
    answers (a -1, tie 0, b +1, skip 2; MISSING votes are ignored). `seed` and `key` seed the
    bootstrap and the permutation test, so the same votes give the same numbers.
    """
    raters, items, codes = np.asarray(raters), np.asarray(items), np.asarray(codes)
    present = codes != MISSING
    raters, items, codes = raters[present], items[present], codes[present]
    rater_ids, rater_index = np.unique(raters, return_inverse=True)
    item_ids, item_index = np.unique(items, return_inverse=True)
    stats = _cell_distribution(
        rater_index,
        len(rater_ids),
        item_index,
        len(item_ids),
        codes,
        bootstrap=bootstrap,
        rng=rng_for(seed, _SEED_BOOTSTRAP, *key),
    )
    stats.heterogeneity, stats.heterogeneity_p = rater_heterogeneity(
        rater_index,
        item_index,
        codes,
        permutations=permutations,
        rng=rng_for(seed, _SEED_HETEROGENEITY, *key),
    )
    return stats


# A whole study: every cohort (every level), criterion and variant pair.


@dataclass(frozen=True)
class StudyVotes:
    """A study's scored votes as arrays, one entry per vote, ready for scoring.

    rater, item, variant_pair and label_set are dense indices per vote; codes holds one column
    per criterion (a -1, tie 0, b 1, skip 2, MISSING 3), already in the variant pair's own
    orientation. variant_pairs[i] is (variant a, variant b) of pair i, as dense variant
    indices. membership[label_set, cohort] says whether a vote with that set of cohort labels
    counts in that cohort: ancestors included, so `india:tamil` counts in `india`.
    The *_keys are stable integer ids (database ids) that seed each cell's resampling.
    """

    rater: np.ndarray
    item: np.ndarray
    variant_pair: np.ndarray
    label_set: np.ndarray
    codes: np.ndarray
    membership: np.ndarray
    variant_pairs: Sequence[tuple[int, int]]
    criterion_keys: Sequence[int]
    cohort_keys: Sequence[int]
    variant_keys: Sequence[int]

    @property
    def n_variants(self) -> int:
        return len(self.variant_keys)

    @property
    def n_cohorts(self) -> int:
        return self.membership.shape[1]


@dataclass
class StudyScores:
    """Everything scored for a study, by dense indices into its StudyVotes."""

    # (cohort, criterion, variant pair) -> statistics
    cells: dict[tuple[int, int, int], CellStatistics] = field(default_factory=dict)
    # (cohort, variant pair) -> coherence
    coherence: dict[tuple[int, int], Coherence] = field(default_factory=dict)
    # (cohort, criterion) -> strengths
    strengths: dict[tuple[int, int], list[Strength]] = field(default_factory=dict)


def _workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _run_all(tasks: Iterable[Callable[[], None]], workers: int) -> None:
    """Run tasks on a small thread pool: numpy and scipy release the GIL in the heavy loops."""
    tasks = list(tasks)
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            task()
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(task) for task in tasks]:
            future.result()


@dataclass(frozen=True)
class _Slice:
    """The answered votes of one variant pair on one criterion, with dense indices."""

    pair_index: int
    criterion: int
    raters: np.ndarray
    n_raters: int
    items: np.ndarray
    n_items: int
    codes: np.ndarray
    label_sets: np.ndarray
    seed_key: tuple[int, ...]


def study_scores(
    votes: StudyVotes,
    *,
    permutations: int,
    bootstrap: int,
    seed: int,
    coherence_criteria: tuple[int, int, int] | None = None,
    gai_min_raters: int = 1,
    workers: int | None = None,
) -> StudyScores:
    """Score every cohort (every level) x criterion x variant pair of a study.

    Every cohort in `membership` gets a cell for every criterion and variant pair, empty when
    it has no votes there, so a table of scores has one row per cohort at every level.
    `coherence_criteria` gives the columns of stereotype, offensiveness and representation.
    GAI q-values (Benjamini-Hochberg) are taken over every cell with a GAI p-value and at
    least `gai_min_raters` raters: the cells that can be shown.

    The work runs as tasks on a small thread pool, per variant pair and criterion: the cells'
    distributions, the heterogeneity tests of all cohorts together, and GRASP.
    """
    workers = workers or _workers()
    result = StudyScores()
    tasks: list[tuple[int, Callable[[], None]]] = []
    heterogeneity: dict[tuple[int, int], list[tuple[float | None, float | None]]] = {}
    groups: dict[tuple[int, int], list[GroupAssociation]] = {}

    for pair_index, variant_pair in enumerate(votes.variant_pairs):
        in_pair = votes.variant_pair == pair_index
        for criterion in range(votes.codes.shape[1]):
            chosen = np.flatnonzero(in_pair & (votes.codes[:, criterion] != MISSING))
            rater_ids, raters = np.unique(votes.rater[chosen], return_inverse=True)
            item_ids, items = np.unique(votes.item[chosen], return_inverse=True)
            part = _Slice(
                pair_index=pair_index,
                criterion=criterion,
                raters=raters,
                n_raters=len(rater_ids),
                items=items,
                n_items=len(item_ids),
                codes=votes.codes[chosen, criterion],
                label_sets=votes.label_set[chosen],
                seed_key=(
                    votes.criterion_keys[criterion],
                    *(votes.variant_keys[variant] for variant in variant_pair),
                ),
            )
            size = len(chosen)
            tasks.append(
                (size, lambda part=part: _distributions(votes, part, result, bootstrap, seed))
            )
            tasks.append(
                (
                    2 * size,
                    lambda part=part: heterogeneity.__setitem__(
                        (part.criterion, part.pair_index),
                        _heterogeneity_tests(votes, part, permutations, seed),
                    ),
                )
            )
            tasks.append(
                (
                    size,
                    lambda part=part: groups.__setitem__(
                        (part.criterion, part.pair_index),
                        _group_tests(votes, part, permutations, seed),
                    ),
                )
            )

        if coherence_criteria is not None:
            stereotype, offensiveness, representation = coherence_criteria
            rater = votes.rater[in_pair]
            codes = votes.codes[in_pair]
            by_cohort = votes_by_group(votes.label_set[in_pair], votes.membership)
            for cohort, mine in enumerate(by_cohort):
                result.coherence[(cohort, pair_index)] = coherence(
                    rater[mine],
                    codes[mine, stereotype],
                    codes[mine, offensiveness],
                    codes[mine, representation],
                )

    tasks.extend(_strength_tasks(votes, result, bootstrap, seed))
    # Largest first, so that the pool does not end waiting on one big task.
    tasks.sort(key=lambda task: -task[0])
    _run_all((task for _, task in tasks), workers)

    for (criterion, pair_index), tests in heterogeneity.items():
        for cohort, (statistic, p) in enumerate(tests):
            cell = result.cells[(cohort, criterion, pair_index)]
            cell.heterogeneity, cell.heterogeneity_p = statistic, p
    for (criterion, pair_index), associations in groups.items():
        for cohort, association in enumerate(associations):
            cell = result.cells[(cohort, criterion, pair_index)]
            cell.cohesion_in = association.cohesion_in
            cell.cohesion_cross = association.cohesion_cross
            cell.gai = association.gai
            cell.gai_p = association.p

    tested = [
        key
        for key, cell in result.cells.items()
        if cell.gai_p is not None and cell.n_raters >= gai_min_raters
    ]
    if tested:
        q_values = benjamini_hochberg([result.cells[key].gai_p for key in tested])
        for key, q in zip(tested, q_values, strict=True):
            result.cells[key].gai_q = float(q)
    return result


def _distributions(
    votes: StudyVotes, part: _Slice, result: StudyScores, bootstrap: int, seed: int
) -> None:
    """Fill in sections 1 to 3 of every cohort's cell of one variant pair and criterion."""
    for cohort, mine in enumerate(votes_by_group(part.label_sets, votes.membership)):
        result.cells[(cohort, part.criterion, part.pair_index)] = _cell_distribution(
            part.raters[mine],
            part.n_raters,
            part.items[mine],
            part.n_items,
            part.codes[mine],
            bootstrap=bootstrap,
            rng=rng_for(seed, _SEED_BOOTSTRAP, votes.cohort_keys[cohort], *part.seed_key),
        )


def _heterogeneity_tests(
    votes: StudyVotes, part: _Slice, permutations: int, seed: int
) -> list[tuple[float | None, float | None]]:
    return rater_heterogeneity_by_group(
        part.raters,
        part.items,
        part.codes,
        part.label_sets,
        votes.membership,
        permutations=permutations,
        rng=rng_for(seed, _SEED_HETEROGENEITY, *part.seed_key),
        group_rng=lambda cohort: rng_for(
            seed, _SEED_HETEROGENEITY, votes.cohort_keys[cohort], *part.seed_key
        ),
    )


def _group_tests(
    votes: StudyVotes, part: _Slice, permutations: int, seed: int
) -> list[GroupAssociation]:
    """Return GRASP cohesion, GAI and its p-value for every cohort on one criterion and pair.

    Raters are those with an answer here; a rater belongs to a cohort when any of their votes
    here counts in it.
    """
    if not part.n_raters:
        return []
    agreement = rater_agreement(part.raters, part.items, part.codes, n_raters=part.n_raters)
    members = np.zeros((votes.n_cohorts, part.n_raters), dtype=bool)
    for cohort, mine in enumerate(votes_by_group(part.label_sets, votes.membership)):
        members[cohort, part.raters[mine]] = True
    return group_association(
        agreement,
        members,
        permutations=permutations,
        rng=rng_for(seed, _SEED_GROUPS, *part.seed_key),
    )


def _strength_tasks(
    votes: StudyVotes, result: StudyScores, bootstrap: int, seed: int
) -> list[tuple[int, Callable[[], None]]]:
    """Return the Bradley-Terry tasks: cohorts whose votes compare more than two variants."""
    pair_first = np.array([first for first, _ in votes.variant_pairs], dtype=np.intp)
    pair_second = np.array([second for _, second in votes.variant_pairs], dtype=np.intp)
    vote_first, vote_second = pair_first[votes.variant_pair], pair_second[votes.variant_pair]
    tasks: list[tuple[int, Callable[[], None]]] = []
    if votes.n_variants <= 2:
        return tasks
    for cohort, mine in enumerate(votes_by_group(votes.label_set, votes.membership)):
        if len(np.unique(np.r_[vote_first[mine], vote_second[mine]])) <= 2:
            continue
        for criterion in range(votes.codes.shape[1]):

            def score(cohort: int = cohort, criterion: int = criterion, mine=mine) -> None:
                chosen = mine[votes.codes[mine, criterion] != MISSING]
                result.strengths[(cohort, criterion)] = bradley_terry_strengths(
                    votes.rater[chosen],
                    vote_first[chosen],
                    vote_second[chosen],
                    votes.codes[chosen, criterion],
                    n_variants=votes.n_variants,
                    resamples=bootstrap,
                    rng=rng_for(
                        seed,
                        _SEED_STRENGTHS,
                        votes.cohort_keys[cohort],
                        votes.criterion_keys[criterion],
                    ),
                )

            tasks.append((len(mine), score))
    return tasks
