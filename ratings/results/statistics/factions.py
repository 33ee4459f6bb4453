"""Factions among a cohort's raters: who is on each side of a split (SCORING.md sections 8, 8a).

Pure code: numpy and scipy only, no Django and no other ratings module, so it can be tested and
benchmarked on arrays alone. One call works on one cell (cohort x criterion x variant pair):
a raters x items matrix of coded answers, a = -1, tie = 0, b = +1, NaN where a rater gave no
answer to an item (skips are left out by the caller and may be passed as counts per rater).

The model. Two factions are a latent class model with item effects: every item j has its own
answer distribution (two free logits per item, tie as reference), and each class c tilts it
towards a or b by a class lean theta_c,

    P(answer y | class c, item j)  proportional to  exp(beta_jy + theta_c * y),

with theta = -t for one class and +t for the other. One class is the same model with t = 0:
raters exchangeable, every item free to draw its own mix of a, tie and b. That is exactly the
null of the rater-heterogeneity permutation test (section 4), so "two classes fit better" means
what that test means, with the same allowance for items of varied difficulty. Two classes add
only two parameters (t and the mixing share), whatever the number of items: a model with free
per-class, per-item probabilities adds two per item, and BIC then misses real minorities among
16-30 raters (a 25% faction at consistency 0.8 over 20 items, for one). The tilt keeps the
classes on the lean axis, which is what a faction is.

Choice of one or two by BIC, n = raters with an answer. A parametric-bootstrap likelihood
ratio test would need some hundred refits per cell, far beyond the budget of a study's scoring
(~240 cells in 30 s). BIC's two-parameter penalty (2 log n) is not calibrated on its own, but
no label rests on it alone: `split` and dissent also need the heterogeneity test's p < 0.01,
which is calibrated, and opposed leans of sizeable factions (`row_label`).

The fit is EM, vectorised over several starts at once (each iteration is two matrix products
and one Newton step of the M-step, solved in closed form thanks to its block-arrow Hessian). A
ridge prior on each class's logits (see _penalty) keeps items that every rater answered alike
finite, in both models alike; the log-likelihoods BIC compares are taken without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# Prior standard deviation of the logits of a and b against tie (a ridge penalty): wide enough
# to leave items with answers of more than one kind nearly alone, narrow enough that an item
# every rater answered b stays finite (with 24 answers its P(b) settles near 0.99).
_PRIOR_SD = 5.0
# The lean of each of the two classes is sign * t.
_SIGNS = np.array([-1.0, 1.0])
# EM iterations run from every start before all but the best are dropped.
_PRUNE_AFTER = 4
# Largest change of any parameter in one Newton step: far from the optimum (the first steps
# from a rough start) a full step on nearly separated items can overshoot.
_MAX_STEP = 2.0
# Quantiles of the raters' residual leans at which the deterministic starts cut the raters in
# two; symmetric, so swapping a and b maps the set of starts onto itself.
_START_QUANTILES = (0.15, 0.5, 0.85)


@dataclass(frozen=True)
class Faction:
    """One side of a cohort: its raters, their lean and their answers."""

    raters: np.ndarray  # row indices of the raters in the answer matrix
    n_raters: int
    share: float  # of the raters with at least one answer
    lean: float | None  # mean over raters of each rater's mean coded answer
    lean_interval: tuple[float, float] | None  # rater-bootstrap 2.5 and 97.5 percentiles
    count_a: int
    count_tie: int
    count_b: int
    count_skip: int | None  # None when the caller gave no skip counts


@dataclass(frozen=True)
class FactionFit:
    """The factions of one cell: one, or two when two latent classes fit better by BIC."""

    factions: tuple[Faction, ...]  # the larger first
    faction_of_rater: np.ndarray  # index into factions per row; -1 for a rater with no answer
    posterior: np.ndarray  # posterior probability of the rater's faction; NaN without answer
    log_likelihood_one: float
    log_likelihood_two: float | None  # None when too few raters to fit two classes
    bic_one: float
    bic_two: float | None

    @property
    def n_factions(self) -> int:
        return len(self.factions)


@dataclass(frozen=True)
class DividingItem:
    """An item on which the two factions answer most differently."""

    item: int  # column index in the answer matrix
    mean_first: float  # mean coded answer of the first (larger) faction
    mean_second: float
    difference: float  # mean_second - mean_first
    n_first: int  # answers from the first faction
    n_second: int


@dataclass(frozen=True)
class CriterionProfile:
    """How one faction answered another criterion on the same pairs."""

    criterion: str
    faction: int
    n_raters: int  # raters of the faction with at least one answer to this criterion
    count_a: int
    count_tie: int
    count_b: int
    lean: float | None  # mean over those raters of their mean coded answer


# The model.


def _one_hot(answers: np.ndarray) -> sp.csr_matrix:
    """Return a sparse raters x (items * 3) indicator matrix of the answers a, tie, b.

    Sparse even for a full matrix (two thirds of it are zeros): the EM's two products per
    iteration then cost in proportion to the answers, tens of times less than dense ones.
    """
    raters, items = np.nonzero(~np.isnan(answers))
    columns = items * 3 + answers[raters, items].astype(np.intp) + 1
    return sp.csr_matrix(
        (np.ones(len(raters)), (raters, columns)), shape=(len(answers), answers.shape[1] * 3)
    )


def _log_probabilities(beta: np.ndarray, lean: np.ndarray) -> np.ndarray:
    """Return log P(y | class, item), shape (starts, classes, items, 3).

    beta: (starts, items, 2) logits of a and b against tie; lean: (starts, classes).
    """
    shift = lean[:, :, None]
    logits = np.zeros((*lean.shape, beta.shape[1], 3))
    logits[..., 0] = beta[:, None, :, 0] - shift
    logits[..., 2] = beta[:, None, :, 1] + shift
    top = logits.max(axis=-1, keepdims=True)
    # logsumexp by hand: scipy's generic one costs more than the rest of an EM iteration.
    return logits - (top + np.log(np.exp(logits - top).sum(axis=-1, keepdims=True)))


def _newton_step(
    beta: np.ndarray,
    t: np.ndarray | None,
    counts: np.ndarray,
    log_p: np.ndarray,
    share: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the M-step's parameters after one Newton step on the expected log-posterior.

    counts: expected answers (starts, classes, items, 3); log_p at the current parameters;
    share: the classes' shares (starts, classes). The Hessian has one 2 x 2 block per item plus
    a row and column for t, so the Newton system is solved per item and through the Schur
    complement for t, all in closed form. With t None, one class and item logits only.
    """
    p = np.exp(log_p)
    p_a, p_b = p[..., 0], p[..., 2]
    n = counts.sum(axis=-1)
    ridge = 1.0 / _PRIOR_SD**2
    # Through the prior (see _penalty), the class-weighted mean sign of the lean.
    m = (share @ _SIGNS)[:, None] if t is not None else 0.0
    lean = t[:, None] if t is not None else 0.0
    g_a = (counts[..., 0] - n * p_a).sum(axis=1) - (beta[..., 0] - m * lean) * ridge
    g_b = (counts[..., 2] - n * p_b).sum(axis=1) - (beta[..., 1] + m * lean) * ridge
    h_aa = (n * p_a * (1 - p_a)).sum(axis=1) + ridge
    h_bb = (n * p_b * (1 - p_b)).sum(axis=1) + ridge
    h_ab = -(n * p_a * p_b).sum(axis=1)
    det = h_aa * h_bb - h_ab**2
    # Inverse of each item's block, applied to its gradient.
    solve_a = (h_bb * g_a - h_ab * g_b) / det
    solve_b = (h_aa * g_b - h_ab * g_a) / det
    if t is None:
        step = np.stack([solve_a, solve_b], axis=-1)
        largest = np.abs(step).max(axis=(1, 2))
        scale = np.minimum(1.0, _MAX_STEP / np.maximum(largest, 1e-12))
        return beta + step * scale[:, None, None], None
    mean = p_b - p_a
    s = _SIGNS[None, :, None]
    u_a = (n * s * p_a * (-1 - mean)).sum(axis=1) - m * ridge
    u_b = (n * s * p_b * (1 - mean)).sum(axis=1) + m * ridge
    n_items = beta.shape[1]
    g_t = (s * (counts[..., 2] - counts[..., 0] - n * mean)).sum(axis=(1, 2)) - ridge * (
        m[:, 0] * (beta[..., 1] - beta[..., 0]).sum(axis=1) + 2 * n_items * t
    )
    h_tt = (n * (p_a + p_b - mean**2)).sum(axis=(1, 2)) + 2 * n_items * ridge
    inv_u_a = (h_bb * u_a - h_ab * u_b) / det
    inv_u_b = (h_aa * u_b - h_ab * u_a) / det
    schur = h_tt - (u_a * inv_u_a + u_b * inv_u_b).sum(axis=1)
    step_t = (g_t - (u_a * solve_a + u_b * solve_b).sum(axis=1)) / schur
    step = np.stack([solve_a - inv_u_a * step_t[:, None], solve_b - inv_u_b * step_t[:, None]], -1)
    largest = np.maximum(np.abs(step).max(axis=(1, 2)), np.abs(step_t))
    scale = np.minimum(1.0, _MAX_STEP / np.maximum(largest, 1e-12))
    return beta + step * scale[:, None, None], t + step_t * scale


def _penalty(beta: np.ndarray, t: np.ndarray | None, share: np.ndarray | None) -> np.ndarray:
    """Return the ridge penalty (minus the log prior) of each start's parameters.

    The prior is on each class's own logits of a and b (beta_a - s t and beta_b + s t),
    weighted by the class's share, not on beta and t apart: with a prior on beta alone, a
    second class could sharpen every item at once through t and beat one class on data that
    one class explains as well (a unanimous cohort), only by escaping the prior.
    """
    if t is None:
        return 0.5 * (beta**2).sum(axis=(1, 2)) / _PRIOR_SD**2
    lean = _SIGNS[None, :, None] * t[:, None, None]
    class_a = beta[:, None, :, 0] - lean
    class_b = beta[:, None, :, 1] + lean
    per_class = (class_a**2 + class_b**2).sum(axis=2)
    return 0.5 * (share * per_class).sum(axis=1) / _PRIOR_SD**2


def _fit_one_class(
    indicators: sp.csr_matrix, n_items: int, tolerance: float, max_iterations: int
) -> tuple[np.ndarray, float]:
    """Return the item logits and log-likelihood of the one-class model."""
    counts = np.asarray(indicators.sum(axis=0)).reshape(1, 1, n_items, 3)
    # Start from the smoothed answer shares; Newton then converges in a few steps.
    start = np.log(counts[0, 0] + 0.5)
    beta = (start[:, [0, 2]] - start[:, [1]])[None]
    previous = -np.inf
    zero = np.zeros((1, 1))
    for _ in range(max_iterations):
        log_p = _log_probabilities(beta, zero)
        objective = float((counts * log_p).sum() - _penalty(beta, None, None)[0])
        if abs(objective - previous) < tolerance:
            break
        previous = objective
        beta, _ = _newton_step(beta, None, counts, log_p, np.ones((1, 1)))
    log_p = _log_probabilities(beta, zero)
    return beta[0], float((counts * log_p).sum())


def _fit_two_classes(
    indicators: sp.csr_matrix,
    n_items: int,
    beta_one: np.ndarray,
    weights: np.ndarray,
    tolerance: float,
    max_iterations: int,
) -> tuple[np.ndarray, float]:
    """Run EM from each start's initial class weights; return the best posterior and its LL.

    weights: (starts, 2, raters) initial responsibilities. Every start begins with the item
    logits of the one-class fit and lean 0, and with an M-step on its own weights.
    """
    n_starts, _, n_raters = weights.shape
    by_column = indicators.T.tocsr()
    beta = np.repeat(beta_one[None], n_starts, axis=0)
    t = np.zeros(n_starts)
    share = weights.mean(axis=2)
    previous = objective = np.full(n_starts, -np.inf)
    log_likelihood = np.full(n_starts, -np.inf)
    for iteration in range(max_iterations):
        log_p = _log_probabilities(beta, _SIGNS[None, :] * t[:, None])
        flat = log_p.reshape(n_starts * 2, n_items * 3)
        joint = (indicators @ flat.T).T.reshape(n_starts, 2, n_raters)
        if iteration:
            joint += np.log(share)[:, :, None]
            marginal = np.logaddexp(joint[:, 0], joint[:, 1])
            log_likelihood = marginal.sum(axis=1)
            objective = log_likelihood - _penalty(beta, t, share)
            if np.all(np.abs(objective - previous) < tolerance):
                break
            previous = objective
            weights = np.exp(joint - marginal[:, None, :])
            share = np.clip(weights.mean(axis=2), 1e-10, None)
            if iteration == _PRUNE_AFTER and n_starts > 1:
                # The starts have found their basins: carry on with the best alone, which
                # makes a large cell's fit several times cheaper (every array has a row per
                # start). The same data give the same choice, so the fit stays deterministic.
                keep = slice(int(np.argmax(objective)), int(np.argmax(objective)) + 1)
                beta, t, share, weights = beta[keep], t[keep], share[keep], weights[keep]
                log_p, previous, objective = log_p[keep], previous[keep], objective[keep]
                log_likelihood = log_likelihood[keep]
                n_starts = 1
        counts = (by_column @ weights.reshape(n_starts * 2, n_raters).T).T.reshape(
            n_starts, 2, n_items, 3
        )
        beta, t = _newton_step(beta, t, counts, log_p, share)
    # The posterior and log-likelihood of the last E-step, and the objective they go with.
    best = int(np.argmax(objective))
    return weights[best], float(log_likelihood[best])


def _rater_leans(answers: np.ndarray) -> np.ndarray:
    """Return each rater's mean coded answer; NaN for a rater with no answer."""
    rows, columns = np.nonzero(~np.isnan(answers))
    return _row_means(rows, answers[rows, columns], len(answers))


def _row_means(rows: np.ndarray, values: np.ndarray, n_rows: int) -> np.ndarray:
    # From the answered entries alone: a large cell's matrix is mostly NaN.
    total = np.bincount(rows, weights=values, minlength=n_rows)
    count = np.bincount(rows, minlength=n_rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _starts(answers: np.ndarray, random_starts: int, rng: np.random.Generator) -> np.ndarray:
    """Return initial class weights (starts, 2, raters).

    The deterministic starts cut the raters at quantiles of their residual lean (answer minus
    the item's mean answer, averaged per rater), where factions show first; random partitions
    guard against a residual ordering that hides them.
    """
    rows, columns = np.nonzero(~np.isnan(answers))
    values = answers[rows, columns]
    item_means = _row_means(columns, values, answers.shape[1])
    residual = _row_means(rows, values - item_means[columns], len(answers))
    n_raters = len(answers)
    order = np.argsort(residual, kind="stable")
    starts = []
    for quantile in _START_QUANTILES:
        cut = min(max(round(quantile * n_raters), 1), n_raters - 1)
        second = np.zeros(n_raters)
        second[order[cut:]] = 1.0
        starts.append(second)
    for _ in range(random_starts):
        starts.append((rng.random(n_raters) < 0.5) * 1.0)
    second = np.clip(np.array(starts), 0.02, 0.98)  # soft, so that no class starts empty
    return np.stack([1 - second, second], axis=1)


def factions_fit(
    answers: np.ndarray,
    *,
    rng: np.random.Generator,
    skips: np.ndarray | None = None,
    random_starts: int = 3,
    resamples: int = 1000,
    tolerance: float = 1e-2,
    max_iterations: int = 300,
) -> FactionFit:
    """Fit one faction against two over the raters of one cell and describe each faction.

    `answers` is raters x items with a = -1, tie = 0, b = +1 and NaN for no answer; `skips`
    optionally holds each rater's count of skips, reported per faction. The EM runs from three
    deterministic starts and `random_starts` random ones drawn from `rng`, then the leans'
    bootstrap (`resamples` draws, 0 for none) draws from `rng`: the same generator state gives
    the same result. EM stops when no start's log-posterior moves by `tolerance` nats in an
    iteration: BIC weighs the two fits at log n nats per parameter, so a hundredth of a nat
    decides nothing, and near the null (overlapping classes, where EM crawls) a tighter
    tolerance costs ten times the iterations for no change of choice.
    """
    answers = np.asarray(answers, dtype=np.float64)
    answered = ~np.isnan(answers)
    active = np.flatnonzero(answered.any(axis=1))
    used_items = answered[active].any(axis=0)
    sub = answers[np.ix_(active, np.flatnonzero(used_items))]
    n_active, n_items = sub.shape
    indicators = _one_hot(sub)
    if n_items:
        beta_one, log_likelihood_one = _fit_one_class(indicators, n_items, tolerance, 100)
    else:
        beta_one, log_likelihood_one = np.zeros((0, 2)), 0.0
    penalty_per_parameter = np.log(max(n_active, 1))
    bic_one = -2 * log_likelihood_one + 2 * n_items * penalty_per_parameter
    log_likelihood_two = bic_two = None
    # Each rater's class: 0 unless two classes fit better and both keep raters.
    classes = np.zeros(n_active, dtype=np.intp)
    posterior = np.ones(n_active)
    if n_active >= 4 and n_items >= 2:
        weights, log_likelihood_two = _fit_two_classes(
            indicators,
            n_items,
            beta_one,
            _starts(sub, random_starts, rng),
            tolerance,
            max_iterations,
        )
        bic_two = -2 * log_likelihood_two + (2 * n_items + 2) * penalty_per_parameter
        assigned = np.argmax(weights, axis=0)
        if bic_two < bic_one and 0 < assigned.sum() < n_active:
            classes = assigned
            posterior = weights.max(axis=0)

    leans = _rater_leans(answers)
    members = [active[classes == c] for c in np.unique(classes)]
    # Larger faction first; equal sizes, the one leaning more to a first.
    members.sort(key=lambda rows: (-len(rows), float(np.mean(leans[rows]))))
    faction_of_rater = np.full(len(answers), -1, dtype=np.intp)
    posterior_of_rater = np.full(len(answers), np.nan)
    posterior_of_rater[active] = posterior
    factions = []
    for index, rows in enumerate(members):
        faction_of_rater[rows] = index
        factions.append(_faction(answers[rows], rows, leans[rows], n_active, skips, resamples, rng))
    return FactionFit(
        factions=tuple(factions),
        faction_of_rater=faction_of_rater,
        posterior=posterior_of_rater,
        log_likelihood_one=log_likelihood_one,
        log_likelihood_two=log_likelihood_two,
        bic_one=float(bic_one),
        bic_two=None if bic_two is None else float(bic_two),
    )


def _faction(
    answers: np.ndarray,
    rows: np.ndarray,
    leans: np.ndarray,
    n_active: int,
    skips: np.ndarray | None,
    resamples: int,
    rng: np.random.Generator,
) -> Faction:
    """Describe one faction: size, lean with its rater-bootstrap interval, answer counts."""
    interval = None
    if resamples > 0 and len(leans) > 1:
        # Resample whole raters: one rater's answers are not independent of each other.
        draws = leans[rng.integers(0, len(leans), size=(resamples, len(leans)))].mean(axis=1)
        low, high = np.percentile(draws, [2.5, 97.5])
        interval = (float(low), float(high))
    return Faction(
        raters=rows,
        n_raters=len(rows),
        share=len(rows) / n_active,
        lean=float(leans.mean()) if len(leans) else None,
        lean_interval=interval,
        count_a=int((answers == -1).sum()),
        count_tie=int((answers == 0).sum()),
        count_b=int((answers == 1).sum()),
        count_skip=None if skips is None else int(np.asarray(skips)[rows].sum()),
    )


# What the factions answer differently, who they are, and what else they think.


def dividing_items(
    answers: np.ndarray, fit: FactionFit, *, top: int | None = None
) -> tuple[DividingItem, ...]:
    """Return the items that divide the two factions most, largest difference first.

    Items that one faction never answered are left out; with one faction there are none.
    """
    if fit.n_factions != 2:
        return ()
    answers = np.asarray(answers, dtype=np.float64)
    sides = []
    for faction in fit.factions:
        part = answers[faction.raters]
        answered = ~np.isnan(part)
        count = answered.sum(axis=0)
        total = np.where(answered, part, 0.0).sum(axis=0)
        sides.append((count, total))
    (n_first, sum_first), (n_second, sum_second) = sides
    both = np.flatnonzero((n_first > 0) & (n_second > 0))
    mean_first = sum_first[both] / n_first[both]
    mean_second = sum_second[both] / n_second[both]
    difference = mean_second - mean_first
    order = np.lexsort((both, -np.abs(difference)))[:top]
    return tuple(
        DividingItem(
            item=int(both[i]),
            mean_first=float(mean_first[i]),
            mean_second=float(mean_second[i]),
            difference=float(difference[i]),
            n_first=int(n_first[both[i]]),
            n_second=int(n_second[both[i]]),
        )
        for i in order
    )


def faction_profiles(
    fit: FactionFit, other_answers: Mapping[str, np.ndarray]
) -> tuple[CriterionProfile, ...]:
    """Return each faction's answers to other criteria on the same pairs (same rows, items).

    This is where a faction that prefers an image for representation also shows as finding it
    the more stereotypical (SCORING.md sections 6 and 8).
    """
    profiles = []
    for criterion, matrix in other_answers.items():
        matrix = np.asarray(matrix, dtype=np.float64)
        leans = _rater_leans(matrix)
        for index, faction in enumerate(fit.factions):
            part = matrix[faction.raters]
            rated = leans[faction.raters]
            rated = rated[~np.isnan(rated)]
            profiles.append(
                CriterionProfile(
                    criterion=criterion,
                    faction=index,
                    n_raters=len(rated),
                    count_a=int((part == -1).sum()),
                    count_tie=int((part == 0).sum()),
                    count_b=int((part == 1).sum()),
                    lean=float(rated.mean()) if len(rated) else None,
                )
            )
    return tuple(profiles)
