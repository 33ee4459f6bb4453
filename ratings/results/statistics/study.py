"""A whole study: every cohort (every level), criterion and variant pair, on a small thread pool."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ratings.results.statistics.bradley_terry import Strength, bradley_terry_strengths
from ratings.results.statistics.cells import CellStatistics, cell_distribution
from ratings.results.statistics.codes import MISSING, SKIP, votes_by_group
from ratings.results.statistics.coherence import Coherence, coherence
from ratings.results.statistics.factions import (
    CriterionProfile,
    DividingItem,
    FactionFit,
    dividing_items,
    faction_profiles,
    factions_fit,
)
from ratings.results.statistics.grasp import (
    GroupAssociation,
    benjamini_hochberg,
    group_association,
    rater_agreement,
)
from ratings.results.statistics.heterogeneity import rater_heterogeneity_by_group
from ratings.results.statistics.resampling import (
    SEED_BOOTSTRAP,
    SEED_FACTIONS,
    SEED_GROUPS,
    SEED_HETEROGENEITY,
    SEED_STRENGTHS,
    rng_for,
)


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


@dataclass(frozen=True)
class CellFactions:
    """The factions of one cell, its matrix rows and columns as dense rater and item indices."""

    fit: FactionFit
    raters: np.ndarray  # dense rater index of each row of the fit
    items: np.ndarray  # dense item index of each column
    dividing: tuple[DividingItem, ...]  # item = column index into `items`
    profiles: tuple[CriterionProfile, ...]  # criterion = str(dense criterion index)


# How many of the dividing items a cell keeps: the dashboard and exports show the first few.
DIVIDING_ITEMS_KEPT = 10


@dataclass
class StudyScores:
    """Everything scored for a study, by dense indices into its StudyVotes."""

    # (cohort, criterion, variant pair) -> statistics
    cells: dict[tuple[int, int, int], CellStatistics] = field(default_factory=dict)
    # (cohort, variant pair) -> coherence
    coherence: dict[tuple[int, int], Coherence] = field(default_factory=dict)
    # (cohort, criterion) -> strengths
    strengths: dict[tuple[int, int], list[Strength]] = field(default_factory=dict)
    # (cohort, criterion, variant pair) -> factions, where they were fitted
    factions: dict[tuple[int, int, int], CellFactions] = field(default_factory=dict)


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
    votes: np.ndarray  # index of each vote in the StudyVotes
    rater_keys: np.ndarray  # dense study rater index of each slice rater
    item_keys: np.ndarray
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
    factions_max_p: float | None = None,
    factions_min_raters: int = 2,
    workers: int | None = None,
) -> StudyScores:
    """Score every cohort (every level) x criterion x variant pair of a study.

    Every cohort in `membership` gets a cell for every criterion and variant pair, empty when
    it has no votes there, so a table of scores has one row per cohort at every level.
    `coherence_criteria` gives the columns of stereotype, offensiveness and representation.
    GAI q-values (Benjamini-Hochberg) are taken over every cell with a GAI p-value and at
    least `gai_min_raters` raters: the cells that can be shown.
    Factions (section 8) are fitted in every cell with at least `factions_min_raters` raters
    whose heterogeneity p is below `factions_max_p`: only there can a row be split or show
    dissent (section 8a), and elsewhere the raters are one exchangeable group.

    The work runs as tasks on a small thread pool, per variant pair and criterion: the cells'
    distributions, the heterogeneity tests of all cohorts together, and GRASP.
    """
    workers = workers or _workers()
    result = StudyScores()
    tasks: list[tuple[int, Callable[[], None]]] = []
    heterogeneity: dict[tuple[int, int], list[tuple[float | None, float | None]]] = {}
    groups: dict[tuple[int, int], list[GroupAssociation]] = {}
    slices: list[_Slice] = []

    for pair_index, variant_pair in enumerate(votes.variant_pairs):
        in_pair = votes.variant_pair == pair_index
        for criterion in range(votes.codes.shape[1]):
            chosen = np.flatnonzero(in_pair & (votes.codes[:, criterion] != MISSING))
            rater_ids, raters = np.unique(votes.rater[chosen], return_inverse=True)
            item_ids, items = np.unique(votes.item[chosen], return_inverse=True)
            part = _Slice(
                pair_index=pair_index,
                criterion=criterion,
                votes=chosen,
                rater_keys=rater_ids,
                item_keys=item_ids,
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
            slices.append(part)
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
    if factions_max_p is not None:
        faction_tasks = [
            (len(part.votes), lambda part=part: _faction_fits(
                votes, part, result, bootstrap, seed, factions_max_p, factions_min_raters
            ))
            for part in slices
        ]  # fmt: skip
        faction_tasks.sort(key=lambda task: -task[0])
        _run_all((task for _, task in faction_tasks), workers)
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
        result.cells[(cohort, part.criterion, part.pair_index)] = cell_distribution(
            part.raters[mine],
            part.n_raters,
            part.items[mine],
            part.n_items,
            part.codes[mine],
            bootstrap=bootstrap,
            rng=rng_for(seed, SEED_BOOTSTRAP, votes.cohort_keys[cohort], *part.seed_key),
        )


def _faction_fits(
    votes: StudyVotes,
    part: _Slice,
    result: StudyScores,
    bootstrap: int,
    seed: int,
    max_p: float,
    min_raters: int,
) -> None:
    """Fit the factions of every cohort's cell of one variant pair and criterion that may split.

    The answer matrix has a row per rater and a column per item of the cell (NaN where a rater
    did not answer); skips are counted per rater. The profile reads the same votes' answers to
    every other criterion.
    """
    for cohort, mine in enumerate(votes_by_group(part.label_sets, votes.membership)):
        key = (cohort, part.criterion, part.pair_index)
        cell = result.cells[key]
        if (
            cell.heterogeneity_p is None
            or cell.heterogeneity_p >= max_p
            or cell.n_raters < min_raters
        ):
            continue
        rater_ids, rows = np.unique(part.raters[mine], return_inverse=True)
        item_ids, columns = np.unique(part.items[mine], return_inverse=True)
        codes = part.codes[mine]
        answered = codes != SKIP
        answers = np.full((len(rater_ids), len(item_ids)), np.nan)
        answers[rows[answered], columns[answered]] = codes[answered]
        skips = np.bincount(rows[~answered], minlength=len(rater_ids))
        fit = factions_fit(
            answers,
            rng=rng_for(seed, SEED_FACTIONS, votes.cohort_keys[cohort], *part.seed_key),
            skips=skips,
            resamples=bootstrap,
        )
        if fit.n_factions != 2:
            continue
        cell.factions = fit.factions
        others = {}
        vote_index = part.votes[mine]
        for other in range(votes.codes.shape[1]):
            if other == part.criterion:
                continue
            other_codes = votes.codes[vote_index, other]
            given = (other_codes != MISSING) & (other_codes != SKIP)
            matrix = np.full(answers.shape, np.nan)
            matrix[rows[given], columns[given]] = other_codes[given]
            others[str(other)] = matrix
        result.factions[key] = CellFactions(
            fit=fit,
            raters=part.rater_keys[rater_ids],
            items=part.item_keys[item_ids],
            dividing=dividing_items(answers, fit, top=DIVIDING_ITEMS_KEPT),
            profiles=faction_profiles(fit, others),
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
        rng=rng_for(seed, SEED_HETEROGENEITY, *part.seed_key),
        group_rng=lambda cohort: rng_for(
            seed, SEED_HETEROGENEITY, votes.cohort_keys[cohort], *part.seed_key
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
        rng=rng_for(seed, SEED_GROUPS, *part.seed_key),
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
                        SEED_STRENGTHS,
                        votes.cohort_keys[cohort],
                        votes.criterion_keys[criterion],
                    ),
                )

            tasks.append((len(mine), score))
    return tasks
