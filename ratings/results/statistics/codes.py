"""How the statistics read votes (SCORING.md): codes, and which votes count in which cohort.

A vote on one criterion is coded a = -1, tie = 0, b = +1; `skip` ("can't judge") is counted
but left out of every statistic. MISSING marks a vote that has no answer to a criterion (one
added to the study after the vote); it is not counted at all.

The statistics are pure code, numpy arrays in and numbers out: nothing in this package imports
Django.
"""

from __future__ import annotations

import numpy as np

A, TIE, B, SKIP = -1, 0, 1, 2
MISSING = 3
CODES = {"a": A, "tie": TIE, "b": B, "skip": SKIP}


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
