"""Split versus noise (SCORING.md section 4): the rater heterogeneity permutation test."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import cache

import numpy as np
import scipy.sparse as sp

from ratings.results.statistics.codes import A, B, votes_by_group
from ratings.results.statistics.resampling import TIE_TOLERANCE

# Items rated by at most this many raters are permuted through a table of every arrangement
# (one random draw per item); larger ones by a vectorised Fisher-Yates shuffle.
_TABLE_MAX_ITEM = 6
# The heterogeneity test permutes this many times per batch, over chunks of about this many
# votes: every array of a chunk (draws, received values) then stays a few megabytes.
_PERMUTATION_BATCH = 64
_CHUNK_VOTES = 1 << 15


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
            threshold = observed - TIE_TOLERANCE * max(abs(observed), 1e-12)
            extreme[group] += int((_lean_variance(sums, counts) >= threshold).sum())
    for group, observed, *_ in tests:
        results[group] = (observed, (1 + extreme[group]) / (1 + permutations))
    return results
