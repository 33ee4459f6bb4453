"""The make-up of two factions by a rater label (sub-cohort or a demographic answer), SCORING.md 8.

Pure code. Cells below k are hidden, with complements, so that no hidden count can be derived
from the faction sizes, the label totals and the cells shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ratings.results.statistics.factions import FactionFit

# Labels held by fewer than k raters go into one column of this name.
OTHER_LABEL = "(other)"


@dataclass(frozen=True)
class Composition:
    """Factions by rater label (sub-cohort path or a demographic answer), cells below k hidden.

    Labels held by fewer than k raters are merged into OTHER_LABEL first, so every column total
    shown has at least k raters; then cells with 1 to k - 1 raters are hidden (None), and so
    are further cells until none of them can be derived from the faction sizes, the column
    totals and the cells shown. A zero names no one and stays shown unless hidden as a
    complement. The test of association runs on the labels as given.
    """

    labels: tuple[str, ...]  # columns, OTHER_LABEL last when present
    merged: tuple[str, ...]  # labels merged into OTHER_LABEL
    counts: tuple[tuple[int | None, ...], ...]  # factions x labels; None where suppressed
    faction_totals: tuple[int, ...]
    label_totals: tuple[int, ...]
    test: str | None  # "fisher" (2 x 2), "permutation chi-square", or None when untestable
    statistic: float | None  # odds ratio for Fisher, Pearson's chi-square otherwise
    p: float | None

    @property
    def shares(self) -> tuple[tuple[float | None, ...], ...]:
        """Return each cell as a share of its faction; None where the count is suppressed."""
        return tuple(
            tuple(None if count is None or not total else count / total for count in row)
            for row, total in zip(self.counts, self.faction_totals, strict=True)
        )


def faction_composition(
    fit: FactionFit,
    labels: Sequence[str],
    *,
    k: int,
    rng: np.random.Generator,
    permutations: int = 2000,
) -> Composition:
    """Return the factions x labels table with its association test and small cells hidden.

    `labels` gives one label per row of the answer matrix (raters with no answer are ignored).
    The test is Fisher's exact test for a 2 x 2 table, otherwise a permutation test of Pearson's
    chi-square (labels permuted across raters, factions fixed), one-sided,
    (1 + #{permuted >= observed}) / (1 + permutations). Labels are strings: give raters who
    did not answer a demographic question a label of their own ("no answer").
    """
    if not fit.factions:
        return Composition((), (), (), (), (), None, None, None)
    rows = np.concatenate([faction.raters for faction in fit.factions]).astype(np.intp)
    faction = np.concatenate(
        [np.full(f.n_raters, index, dtype=np.intp) for index, f in enumerate(fit.factions)]
    )
    rater_labels = [labels[row] for row in rows]
    names, label_index = np.unique(np.array(rater_labels, dtype=object), return_inverse=True)
    names = [str(name) for name in names]
    table = np.zeros((fit.n_factions, len(names)), dtype=np.int64)
    np.add.at(table, (faction, label_index), 1)
    test, statistic, p = _association(table, faction, label_index, rng, permutations)

    # Merge labels below k (smallest first) until the merged column has none or k raters.
    totals = table.sum(axis=0)
    merged = sorted(np.flatnonzero(totals < k).tolist(), key=lambda i: (totals[i], names[i]))
    kept = [i for i in np.argsort(-totals, kind="stable") if i not in merged]
    while merged and totals[merged].sum() < k and kept:
        merged.append(kept.pop())  # the smallest label left
    columns = [table[:, kept]]
    shown = [names[i] for i in kept]
    if merged:
        columns.append(table[:, merged].sum(axis=1, keepdims=True))
        shown.append(OTHER_LABEL)
    shown_table = np.concatenate(columns, axis=1)
    hidden = _suppress(shown_table, k)
    return Composition(
        labels=tuple(shown),
        merged=tuple(sorted(names[i] for i in merged)),
        counts=tuple(
            tuple(None if hidden[f, c] else int(shown_table[f, c]) for c in range(len(shown)))
            for f in range(len(shown_table))
        ),
        faction_totals=tuple(int(total) for total in shown_table.sum(axis=1)),
        label_totals=tuple(int(total) for total in shown_table.sum(axis=0)),
        test=test,
        statistic=statistic,
        p=p,
    )


def _association(
    table: np.ndarray,
    faction: np.ndarray,
    label_index: np.ndarray,
    rng: np.random.Generator,
    permutations: int,
) -> tuple[str | None, float | None, float | None]:
    """Return the test of association between faction and label: name, statistic, p."""
    n_factions, n_labels = table.shape
    if n_factions < 2 or n_labels < 2:
        return None, None, None
    if table.shape == (2, 2):
        odds_ratio, p = stats.fisher_exact(table)
        return "fisher", float(odds_ratio), float(p)
    expected = table.sum(axis=1)[:, None] * table.sum(axis=0)[None, :] / table.sum()

    def chi_square(observed: np.ndarray) -> np.ndarray:
        return ((observed - expected) ** 2 / expected).sum(axis=(-2, -1))

    observed = float(chi_square(table))
    cells = n_factions * n_labels
    extreme = 0
    batch = max(1, min(permutations, (1 << 20) // max(len(faction), 1)))
    for start in range(0, permutations, batch):
        count = min(batch, permutations - start)
        shuffled = rng.permuted(np.broadcast_to(label_index, (count, len(label_index))), axis=1)
        keys = np.arange(count)[:, None] * cells + faction[None, :] * n_labels + shuffled
        tables = np.bincount(keys.ravel(), minlength=count * cells).reshape(
            count, n_factions, n_labels
        )
        extreme += int((chi_square(tables) >= observed * (1 - 1e-9)).sum())
    return "permutation chi-square", observed, (1 + extreme) / (1 + permutations)


def _suppress(table: np.ndarray, k: int) -> np.ndarray:
    """Return which cells of a factions x labels table to hide.

    A reader knows each faction's size, each label's total (at least k raters once small
    labels are merged) and the cells shown. Cells of 1 to k - 1 raters are hidden, then
    complements until none of them can be derived. With two factions a hidden cell whose
    column shows its other cell follows from the column total, so hidden cells come in whole
    columns; within the hidden columns, one faction's cells must add up to its size less the
    cells shown, which pins a cell exactly when its column's bounds leave it one value. Further
    columns are hidden, smallest first, until no small cell is pinned or none is left. (One
    faction's cells are the label totals themselves: nothing there is the table's to hide.)
    """
    hidden = (table > 0) & (table < k)
    if len(table) != 2:
        return hidden
    hidden[:, hidden.any(axis=0)] = True
    totals = table.sum(axis=0)
    while True:
        columns = np.flatnonzero(hidden[0])
        # The first faction's hidden cells add up to `free`; each lies in [0, its column total].
        free = table[0, columns].sum()
        low = np.maximum(0, free - (totals[columns].sum() - totals[columns]))
        high = np.minimum(totals[columns], free)
        pinned = (low == high) & ((table[:, columns] > 0) & (table[:, columns] < k)).any(axis=0)
        shown = np.flatnonzero(~hidden[0])
        if not pinned.any() or not len(shown):
            return hidden
        hidden[:, shown[np.argmin(totals[shown])]] = True
