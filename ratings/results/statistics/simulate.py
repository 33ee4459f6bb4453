"""Simulated cohorts for testing and calibrating the split statistics (SCORING.md section 10).

Pure code: numpy only. Each function returns a raters x items matrix of coded answers
(a = -1, tie = 0, b = +1, NaN for no answer) and, where factions are planted, which faction
each rater was drawn from, so tests and the calibration benchmark share one definition of
"null cohort" and "planted split".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Kinds of items for null cohorts: every rater of a cohort answers an item from the same
# distribution (raters exchangeable), whatever the kind.
ITEM_KINDS = ("coin", "uniform", "varied", "a_or_tie", "unanimous")
# Fewest answers per rater when raters answer random subsets of the items (the heterogeneity
# statistic counts a rater's lean from three answers up).
MIN_ANSWERS = 3


@dataclass(frozen=True)
class SimulatedCohort:
    answers: np.ndarray  # raters x items, -1 / 0 / +1, NaN for no answer
    faction_of_rater: np.ndarray  # planted faction of each rater; all 0 without factions


def item_distributions(rng: np.random.Generator, n_items: int, kind: str) -> np.ndarray:
    """Return each item's probabilities of a, tie and b, shape (items, 3).

    coin: a or b with p = 0.5, no ties; uniform: a third each; varied: items of varied
    difficulty and tie propensity (logits of a and b against tie drawn per item);
    a_or_tie: 60% a, 40% tie, no b; unanimous: always b.
    """
    if kind == "coin":
        return np.tile([0.5, 0.0, 0.5], (n_items, 1))
    if kind == "uniform":
        return np.full((n_items, 3), 1 / 3)
    if kind == "a_or_tie":
        return np.tile([0.6, 0.4, 0.0], (n_items, 1))
    if kind == "unanimous":
        return np.tile([0.0, 0.0, 1.0], (n_items, 1))
    if kind == "varied":
        difficulty = rng.normal(0.0, 1.5, n_items)
        decisiveness = rng.normal(1.0, 1.0, n_items)
        logits = np.stack([decisiveness - difficulty, np.zeros(n_items), decisiveness + difficulty])
        weights = np.exp(logits.T)
        return weights / weights.sum(axis=1, keepdims=True)
    raise ValueError(f"Unknown item kind {kind!r}; expected one of {ITEM_KINDS}.")


def answered_mask(
    rng: np.random.Generator, n_raters: int, n_items: int, answered_share: float
) -> np.ndarray:
    """Return which items each rater answered: a random subset, at least MIN_ANSWERS each."""
    mask = rng.random((n_raters, n_items)) < answered_share
    floor = min(MIN_ANSWERS, n_items)
    for rater in np.flatnonzero(mask.sum(axis=1) < floor):
        mask[rater, rng.choice(n_items, size=floor, replace=False)] = True
    return mask


def null_cohort(
    rng: np.random.Generator,
    *,
    n_raters: int,
    n_items: int,
    kind: str = "varied",
    answered_share: float = 1.0,
) -> SimulatedCohort:
    """Return a cohort with no factions: raters exchangeable, items as `kind` says."""
    probabilities = item_distributions(rng, n_items, kind)
    cumulative = probabilities.cumsum(axis=1)
    draws = rng.random((n_raters, n_items))
    answers = (draws[:, :, None] > cumulative[None, :, :2]).sum(axis=2) - 1.0
    answers[~answered_mask(rng, n_raters, n_items, answered_share)] = np.nan
    return SimulatedCohort(answers=answers, faction_of_rater=np.zeros(n_raters, dtype=np.intp))


def planted_membership(
    rng: np.random.Generator, n_raters: int, shares: Sequence[float]
) -> np.ndarray:
    """Return a faction per rater: round(share * n) raters in each faction, in random order."""
    sizes = np.round(np.asarray(shares) * n_raters).astype(int)
    sizes[0] += n_raters - sizes.sum()  # rounding leftovers go to the first faction
    return rng.permutation(np.repeat(np.arange(len(sizes)), sizes))


def faction_answers(
    rng: np.random.Generator,
    faction_of_rater: np.ndarray,
    *,
    n_items: int,
    directions: Sequence[int],
    consistency: float,
    tie_share: float = 0.0,
    answered_share: float = 1.0,
) -> np.ndarray:
    """Return answers where each faction picks its direction with probability `consistency`.

    directions[f] is faction f's answer (-1, 0 or +1). Otherwise a rater answers tie with
    probability tie_share * (1 - consistency) and the opposite of the direction with the rest
    (for a faction whose direction is tie, a or b alike).
    """
    faction_of_rater = np.asarray(faction_of_rater)
    direction = np.asarray(directions, dtype=np.float64)[faction_of_rater][:, None]
    shape = (len(faction_of_rater), n_items)
    draws = rng.random(shape)
    other = np.where(direction == 0, rng.choice([-1.0, 1.0], size=shape), -direction)
    strays = np.where(draws < consistency + tie_share * (1 - consistency), 0.0, other)
    answers = np.where(draws < consistency, np.broadcast_to(direction, shape), strays)
    answers[~answered_mask(rng, shape[0], n_items, answered_share)] = np.nan
    return answers


def faction_cohort(
    rng: np.random.Generator,
    *,
    n_raters: int,
    n_items: int,
    shares: Sequence[float] = (0.5, 0.5),
    directions: Sequence[int] = (-1, 1),
    consistency: float = 0.9,
    tie_share: float = 0.0,
    answered_share: float = 1.0,
) -> SimulatedCohort:
    """Return a cohort with planted factions (SCORING.md section 10's consistent factions)."""
    membership = planted_membership(rng, n_raters, shares)
    answers = faction_answers(
        rng,
        membership,
        n_items=n_items,
        directions=directions,
        consistency=consistency,
        tie_share=tie_share,
        answered_share=answered_share,
    )
    return SimulatedCohort(answers=answers, faction_of_rater=membership)


def answers_drop(rng: np.random.Generator, answers: np.ndarray, share: float) -> np.ndarray:
    """Return a copy with `share` of the given answers removed at random."""
    answers = np.array(answers, dtype=np.float64)
    given = np.flatnonzero(~np.isnan(answers))
    dropped = rng.choice(given, size=round(share * len(given)), replace=False)
    answers.flat[dropped] = np.nan
    return answers


_CHOICES = {-1.0: "a", 0.0: "tie", 1.0: "b"}


def long_form_lines(
    cohorts: Mapping[str, np.ndarray],
    *,
    criterion: str = "representation",
    variants: tuple[str, str] = ("base", "tuned"),
    other_criteria: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> list[bytes]:
    """Return simulated answers as the lines of a long-form vote file (`import_votes`).

    `cohorts` maps a cohort path to its raters x items answers (NaN: not answered); raters
    get ids unique to their cohort, items ids shared by all (item j is one pair).
    `other_criteria[criterion][cohort]` adds answers to further criteria on the same raters
    and items (NaN: skipped there).
    """
    lines = [b"rater_id,cohort,item_id,variant_a,variant_b,criterion,choice\n"]
    for cohort, answers in cohorts.items():
        tag = cohort.replace(":", "-")
        extra = {name: by_cohort[cohort] for name, by_cohort in (other_criteria or {}).items()}
        for rater, item in zip(*np.nonzero(~np.isnan(answers)), strict=True):
            head = f"{tag}-r{rater},{cohort},i{item},{variants[0]},{variants[1]}"
            lines.append(f"{head},{criterion},{_CHOICES[answers[rater, item]]}\n".encode())
            for name, matrix in extra.items():
                value = matrix[rater, item]
                choice = "skip" if np.isnan(value) else _CHOICES[float(value)]
                lines.append(f"{head},{name},{choice}\n".encode())
    return lines
