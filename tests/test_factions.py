"""Factions and the label of a row (ratings/results/factions.py) on arrays, with no database.

The cases of SCORING.md section 10 that concern factions, each with a fixed seed, on cohorts
drawn by ratings/results/simulate.py. The heterogeneity p-value the label needs comes from a
small permutation test of this file's own (the real one lives with the other statistics).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ratings.results.statistics import simulate
from ratings.results.statistics.composition import OTHER_LABEL, faction_composition
from ratings.results.statistics.factions import (
    Faction,
    FactionFit,
    dividing_items,
    faction_profiles,
    factions_fit,
)
from ratings.results.statistics.labels import RowLabel, Thresholds
from ratings.results.statistics.labels import row_label as study_row_label

K = 5


def row_label(*, n_raters, k, heterogeneity_p, fit, top_share, **thresholds) -> RowLabel:
    """Label as the study scorer does, from a fit and the share of the top answer."""
    rest = (1 - top_share) / 2 if top_share is not None else 0
    histogram = [round(1000 * top_share), round(1000 * rest), round(1000 * rest)]
    return study_row_label(
        n_raters=n_raters,
        histogram=histogram,
        heterogeneity_p=heterogeneity_p,
        factions=fit.factions if fit is not None else None,
        thresholds=Thresholds(k=k, **thresholds),
    )


def _heterogeneity_p(answers: np.ndarray, rng: np.random.Generator, permutations: int) -> float:
    """Return the p-value of the variance of rater leans, answers permuted within items."""
    answered = ~np.isnan(answers)
    n_raters, n_items = answers.shape
    values = np.where(answered, answers, 0.0)
    counts = answered.sum(axis=1)
    eligible = counts >= 3

    def variance(sums: np.ndarray) -> np.ndarray:
        return (sums[..., eligible] / counts[eligible]).var(axis=-1)

    observed = variance(values.sum(axis=1))
    # Slot i of a column is its i-th answered row; random keys, with unanswered cells sorted
    # last, deal each column's answers out to its answered rows in random order.
    slot_order = np.argsort(~answered, axis=0, kind="stable")
    slot_rater = np.where(np.take_along_axis(answered, slot_order, axis=0), slot_order, n_raters)
    keys = rng.random((permutations, n_raters, n_items))
    keys[:, ~answered] = 2.0
    received = np.take_along_axis(
        np.broadcast_to(values, keys.shape), np.argsort(keys, axis=1), axis=1
    )
    index = np.arange(permutations)[:, None, None] * (n_raters + 1) + slot_rater[None]
    sums = np.bincount(
        index.ravel(), weights=received.ravel(), minlength=permutations * (n_raters + 1)
    ).reshape(permutations, n_raters + 1)[:, :n_raters]
    extreme = int((variance(sums) >= observed - 1e-9 * max(observed, 1e-12)).sum())
    return (1 + extreme) / (1 + permutations)


def _top_share(answers: np.ndarray) -> float:
    given_answers = answers[~np.isnan(answers)]
    counts = [(given_answers == code).sum() for code in (-1, 0, 1)]
    return max(counts) / sum(counts)


def _label(answers: np.ndarray, seed: int = 0, permutations: int = 500):
    """Fit the factions and label the row as the study scorer would; return both."""
    rng = np.random.default_rng(seed)
    fit = factions_fit(answers, rng=rng, resamples=200)
    p = _heterogeneity_p(answers, rng, permutations)
    n_raters = int((~np.isnan(answers)).any(axis=1).sum())
    label = row_label(
        n_raters=n_raters, k=K, heterogeneity_p=p, fit=fit, top_share=_top_share(answers)
    )
    return label, fit


def _sizes(fit: FactionFit) -> list[int]:
    return sorted(faction.n_raters for faction in fit.factions)


def _planted_sizes(cohort: simulate.SimulatedCohort) -> list[int]:
    return sorted(np.bincount(cohort.faction_of_rater).tolist())


def _same_grouping(fit: FactionFit, planted: np.ndarray) -> int:
    """Return how many raters sit in a different faction than planted (best matching)."""
    found = fit.faction_of_rater
    return min(int((found != planted).sum()), int((found != 1 - planted).sum()))


# SCORING.md section 10's cohorts, by name: how to draw each one and the label it must get.
CASES = {
    "planted split": (
        lambda rng: simulate.faction_cohort(rng, n_raters=30, n_items=40, consistency=0.9),
        "split",
    ),
    "a third prefers the other image": (
        lambda rng: simulate.faction_cohort(
            rng,
            n_raters=24,
            n_items=30,
            shares=(2 / 3, 1 / 3),
            directions=(1, -1),
            consistency=0.85,
            tie_share=0.5,
        ),
        "split",
    ),
    "unanimous": (
        lambda rng: simulate.null_cohort(rng, n_raters=24, n_items=30, kind="unanimous"),
        "consensus",
    ),
    "uniform noise": (
        lambda rng: simulate.null_cohort(rng, n_raters=24, n_items=30, kind="uniform"),
        "contested",
    ),
    "coin flips": (
        lambda rng: simulate.null_cohort(rng, n_raters=24, n_items=30, kind="coin"),
        "contested",
    ),
    "a versus tie": (
        lambda rng: simulate.null_cohort(rng, n_raters=24, n_items=30, kind="a_or_tie"),
        "consensus",
    ),
    "minority below the share": (
        lambda rng: simulate.faction_cohort(
            rng,
            n_raters=24,
            n_items=30,
            shares=(21 / 24, 3 / 24),
            directions=(1, -1),
            consistency=0.9,
            tie_share=0.5,
        ),
        "consensus",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_each_section_10_cohort_gets_its_label(case):
    draw, expected = CASES[case]
    label, _ = _label(draw(np.random.default_rng(11)).answers)
    assert label.label == expected


def test_a_planted_half_split_is_split_with_the_planted_factions():
    cohort = CASES["planted split"][0](np.random.default_rng(11))
    label, fit = _label(cohort.answers)
    assert label == RowLabel("split", None)
    assert _sizes(fit) == _planted_sizes(cohort) == [15, 15]
    assert _same_grouping(fit, cohort.faction_of_rater) == 0
    first, second = fit.factions
    assert first.lean < -0.6 and second.lean > 0.6
    assert first.lean_interval[0] <= first.lean <= first.lean_interval[1] < 0
    assert fit.bic_two < fit.bic_one
    assert np.all(fit.posterior > 0.99)


@pytest.mark.parametrize(
    ("minority", "n_raters", "n_items"), [(0.25, 20, 20), (0.35, 20, 20), (0.5, 16, 20)]
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_consistent_factions_are_split_with_their_planted_sizes(minority, n_raters, n_items, seed):
    # Consistency 0.8: a rater picks their faction's side 80% of the time, else tie or the
    # other side alike. The 25% minority of 20 raters is 5, just k.
    cohort = simulate.faction_cohort(
        np.random.default_rng(seed),
        n_raters=n_raters,
        n_items=n_items,
        shares=(1 - minority, minority),
        consistency=0.8,
        tie_share=0.5,
    )
    label, fit = _label(cohort.answers, seed=seed)
    assert label.label == "split"
    planted, found = _planted_sizes(cohort), _sizes(fit)
    assert abs(found[0] - planted[0]) <= 1 and abs(found[1] - planted[1]) <= 1
    assert _same_grouping(fit, cohort.faction_of_rater) <= 1


def test_a_consistent_third_is_a_split_not_a_lopsided_consensus():
    cohort = CASES["a third prefers the other image"][0](np.random.default_rng(11))
    label, fit = _label(cohort.answers)
    assert label.label == "split"
    assert _sizes(fit) == [8, 16]
    # The majority leans b, the third a: the larger faction comes first.
    assert fit.factions[0].lean > 0.5 and fit.factions[1].lean < -0.5


def test_a_consistent_minority_below_the_share_is_consensus_with_dissent():
    cohort = CASES["minority below the share"][0](np.random.default_rng(11))
    label, _ = _label(cohort.answers)
    assert label.label == "consensus"
    assert label.dissent is not None
    assert label.dissent.n_raters == 3
    assert label.dissent.share == pytest.approx(3 / 24)
    assert label.dissent.lean < -0.5  # the majority leans b


@pytest.mark.parametrize("case", ["unanimous", "uniform noise", "coin flips", "a versus tie"])
def test_cohorts_without_factions_fit_one_faction(case):
    _, fit = _label(CASES[case][0](np.random.default_rng(11)).answers)
    assert fit.n_factions == 1
    assert fit.factions[0].n_raters == 24
    assert fit.bic_two > fit.bic_one


def test_items_of_varied_difficulty_without_rater_differences_are_not_split():
    # Items differ a lot (some nearly all a, some nearly all b, some mostly tie), which gives
    # raters who rated different items different leans; the item effects absorb it.
    cohort = simulate.null_cohort(
        np.random.default_rng(4), n_raters=24, n_items=30, kind="varied", answered_share=0.5
    )
    label, fit = _label(cohort.answers)
    assert label.label != "split"
    assert fit.n_factions == 1


def test_sub_cohorts_unanimous_in_opposite_directions_split_the_parent_only():
    membership = np.repeat([0, 1], 12)
    answers = simulate.faction_answers(
        np.random.default_rng(5), membership, n_items=30, directions=(-1, 1), consistency=1.0
    )
    parent, _ = _label(answers)
    assert parent.label == "split"
    for child in (0, 1):
        label, fit = _label(answers[membership == child])
        assert label.label == "consensus"
        assert fit.n_factions == 1


@pytest.mark.parametrize(
    "case", ["planted split", "a third prefers the other image", "minority below the share"]
)
def test_swapping_a_and_b_flips_the_leans_and_changes_no_faction(case):
    answers = CASES[case][0](np.random.default_rng(11)).answers
    label, fit = _label(answers)
    swapped_label, swapped = _label(-answers)
    assert swapped_label.label == label.label
    assert (swapped_label.dissent is None) == (label.dissent is None)
    assert _sizes(swapped) == _sizes(fit)
    for faction in fit.factions:
        twin = swapped.factions[swapped.faction_of_rater[faction.raters[0]]]
        assert np.array_equal(np.sort(twin.raters), np.sort(faction.raters))
        assert twin.lean == pytest.approx(-faction.lean)
        assert (twin.count_a, twin.count_b) == (faction.count_b, faction.count_a)


@pytest.mark.parametrize("case", CASES)
def test_dropping_30_percent_of_votes_keeps_the_label(case):
    draw, expected = CASES[case]
    answers = draw(np.random.default_rng(11)).answers
    thinned = simulate.answers_drop(np.random.default_rng(12), answers, 0.3)
    assert np.isnan(thinned).mean() == pytest.approx(0.3, abs=0.01)
    label, _ = _label(thinned)
    assert label.label == expected


def test_null_cohorts_are_rarely_split():
    # No group effect: coin-flip, uniform and varied items, 16-30 raters, 20-40 items, half the
    # cohorts with raters answering random subsets. Observed when written: 0 of 200 split,
    # two factions preferred by BIC in 10 (the label also needs heterogeneity and opposed
    # leans of sizeable factions, which none of those 10 had).
    rng = np.random.default_rng(2024)
    labels, two_factions = [], 0
    for index in range(200):
        cohort = simulate.null_cohort(
            rng,
            n_raters=int(rng.integers(16, 31)),
            n_items=int(rng.integers(20, 41)),
            kind=("coin", "uniform", "varied", "varied")[index % 4],
            answered_share=1.0 if index % 2 else float(rng.uniform(0.4, 1.0)),
        )
        label, fit = _label(cohort.answers, seed=index, permutations=200)
        labels.append(label.label)
        two_factions += fit.n_factions == 2
    assert labels.count("split") <= 10
    assert two_factions <= 20
    assert labels.count("contested") > 100  # coin and uniform items: no clear majority


def test_the_same_seed_gives_the_same_factions():
    answers = CASES["a third prefers the other image"][0](np.random.default_rng(11)).answers
    first = factions_fit(answers, rng=np.random.default_rng(3))
    again = factions_fit(answers, rng=np.random.default_rng(3))
    assert np.array_equal(first.faction_of_rater, again.faction_of_rater)
    assert np.array_equal(first.posterior, again.posterior)
    assert [f.lean_interval for f in first.factions] == [f.lean_interval for f in again.factions]


def test_faction_counts_add_up_and_skips_are_reported():
    cohort = simulate.faction_cohort(
        np.random.default_rng(6), n_raters=20, n_items=20, consistency=0.8, tie_share=0.5
    )
    answers = cohort.answers.copy()
    answers[0] = np.nan  # a rater who only skipped
    skips = np.arange(20)
    fit = factions_fit(answers, rng=np.random.default_rng(0), skips=skips)
    assert fit.faction_of_rater[0] == -1 and np.isnan(fit.posterior[0])
    assert sum(f.n_raters for f in fit.factions) == 19
    assert sum(f.share for f in fit.factions) == pytest.approx(1.0)
    assert sum(f.count_a + f.count_tie + f.count_b for f in fit.factions) == 19 * 20
    assert sum(f.count_a for f in fit.factions) == int((answers == -1).sum())
    assert sum(f.count_skip for f in fit.factions) == skips[1:].sum()
    for faction in fit.factions:
        assert faction.count_skip == skips[faction.raters].sum()
        low, high = faction.lean_interval
        assert low < faction.lean < high


def test_the_items_that_divide_the_factions_come_first():
    # Factions oppose each other on 8 items and agree (b) on the other 22.
    rng = np.random.default_rng(7)
    membership = np.repeat([0, 1], 12)
    opposed = np.sort(rng.choice(30, size=8, replace=False))
    answers = np.where(rng.random((24, 30)) < 0.9, 1.0, 0.0)
    answers[:, opposed] = simulate.faction_answers(
        rng, membership, n_items=8, directions=(-1, 1), consistency=0.9
    )
    answers[rng.random(answers.shape) < 0.1] = np.nan
    fit = factions_fit(answers, rng=np.random.default_rng(0))
    assert _sizes(fit) == [12, 12]
    items = dividing_items(answers, fit, top=8)
    assert sorted(item.item for item in items) == opposed.tolist()
    differences = [abs(item.difference) for item in items]
    assert differences == sorted(differences, reverse=True)
    first_rows = fit.factions[0].raters
    for item in items:
        expected = np.nanmean(answers[first_rows, item.item])
        assert item.mean_first == pytest.approx(expected)
        assert item.difference == pytest.approx(item.mean_second - item.mean_first)
        assert item.n_first == int((~np.isnan(answers[first_rows, item.item])).sum())
    assert len(dividing_items(answers, fit)) == 30


def test_one_faction_has_no_dividing_items():
    answers = simulate.null_cohort(np.random.default_rng(8), n_raters=20, n_items=20).answers
    fit = factions_fit(answers, rng=np.random.default_rng(0))
    assert fit.n_factions == 1
    assert dividing_items(answers, fit) == ()


# Composition by label, and its suppression of small cells.


def _fit_of(sizes: list[int]) -> FactionFit:
    """Return a fit whose factions hold consecutive rows, of the given sizes."""
    bounds = np.cumsum([0, *sizes])
    factions = tuple(
        Faction(
            raters=np.arange(bounds[i], bounds[i + 1]),
            n_raters=size,
            share=size / bounds[-1],
            lean=(-0.5, 0.5)[i],
            lean_interval=None,
            count_a=0,
            count_tie=0,
            count_b=0,
            count_skip=None,
        )
        for i, size in enumerate(sizes)
    )
    faction_of_rater = np.repeat(np.arange(len(sizes)), sizes)
    return FactionFit(
        factions=factions,
        faction_of_rater=faction_of_rater,
        posterior=np.ones(bounds[-1]),
        log_likelihood_one=0.0,
        log_likelihood_two=None,
        bic_one=0.0,
        bic_two=None,
    )


def _tables_consistent_with(composition) -> list[np.ndarray]:
    """Return every table of non-negative counts that a reader of the composition cannot rule
    out: the cells shown, the faction totals and the label totals all match."""
    rows, columns = len(composition.faction_totals), len(composition.labels)
    table = np.array([[count or 0 for count in row] for row in composition.counts])
    hidden = [
        (f, c) for f in range(rows) for c in range(columns) if composition.counts[f][c] is None
    ]
    row_left = np.array(composition.faction_totals) - table.sum(axis=1)
    column_left = np.array(composition.label_totals) - table.sum(axis=0)
    found = []
    # The last hidden cell of a column or row can take one value only: the rest of its total.
    last_in_column = {max(i for i, (_, d) in enumerate(hidden) if d == c) for _, c in hidden}
    last_in_row = {max(i for i, (g, _) in enumerate(hidden) if g == f) for f, _ in hidden}

    def fill(index: int) -> None:
        if index == len(hidden):
            if not row_left.any() and not column_left.any():
                found.append(table.copy())
            return
        f, c = hidden[index]
        values = range(min(row_left[f], column_left[c]) + 1)
        if index in last_in_column:
            values = [column_left[c]] if column_left[c] <= row_left[f] else []
        if index in last_in_row:
            values = [v for v in values if v == row_left[f]]
        for value in values:
            table[f, c] = value
            row_left[f] -= value
            column_left[c] -= value
            fill(index + 1)
            row_left[f] += value
            column_left[c] += value
        table[f, c] = 0

    fill(0)
    return found


def _assert_no_small_cell_recoverable(composition, truth: np.ndarray) -> None:
    shown = np.array([[-1 if c is None else c for c in row] for row in composition.counts])
    assert not ((shown > 0) & (shown < K)).any(), "a cell below k is shown"
    if len(composition.labels) == 1:
        return  # one column is the faction sizes themselves, shown anyway
    assert min(composition.label_totals) >= K
    tables = _tables_consistent_with(composition)
    assert any(np.array_equal(table, truth) for table in tables)
    for f, c in zip(*np.nonzero(shown == -1), strict=True):
        if 0 < truth[f, c] < K:
            assert len({int(table[f, c]) for table in tables}) > 1, (f, c)


def test_a_sub_cohort_that_makes_up_one_faction_is_found_and_small_cells_are_hidden():
    # The minority faction (8 raters) is mostly Tamil; the majority (16) is Kerala and Goa,
    # with one Tamil rater.
    membership = np.repeat([0, 1], [16, 8])
    labels = [
        *["india:kerala"] * 9,
        *["india:goa"] * 6,
        "india:tamil",
        *["india:tamil"] * 6,
        *["india:kerala"] * 2,
    ]
    answers = simulate.faction_answers(
        np.random.default_rng(13), membership, n_items=30, directions=(1, -1), consistency=0.85
    )
    fit = factions_fit(answers, rng=np.random.default_rng(0))
    assert np.array_equal(fit.faction_of_rater, membership)
    composition = faction_composition(fit, labels, k=K, rng=np.random.default_rng(0))
    assert composition.labels == ("india:kerala", "india:tamil", "india:goa")
    assert composition.merged == ()
    assert composition.faction_totals == (16, 8)
    assert composition.label_totals == (11, 7, 6)
    assert composition.test == "permutation chi-square"
    assert composition.p < 0.01
    truth = np.array([[9, 1, 6], [2, 6, 0]])
    assert composition.counts[0][1] is None and composition.counts[1][0] is None
    assert composition.shares[0][1] is None
    _assert_no_small_cell_recoverable(composition, truth)
    # Rows in another order, the same raters: the same table.
    order = np.random.default_rng(1).permutation(24)
    position = np.argsort(order)  # new row of each old row
    shuffled = replace(
        fit,
        factions=tuple(replace(f, raters=position[f.raters]) for f in fit.factions),
        faction_of_rater=fit.faction_of_rater[order],
    )
    again = faction_composition(
        shuffled, [labels[i] for i in order], k=K, rng=np.random.default_rng(0)
    )
    assert again.counts == composition.counts


def test_one_faction_has_a_composition_but_no_test():
    composition = faction_composition(
        _fit_of([12]), ["a"] * 6 + ["b"] * 6, k=K, rng=np.random.default_rng(0)
    )
    assert composition.counts == ((6, 6),)
    assert (composition.test, composition.p) == (None, None)


def test_labels_without_association_are_not_significant():
    rng = np.random.default_rng(9)
    labels = [str(label) for label in rng.permutation(["korea"] * 12 + ["korea:jeju"] * 12)]
    composition = faction_composition(_fit_of([12, 12]), labels, k=K, rng=rng)
    assert composition.test == "fisher"
    assert composition.p > 0.05


def test_a_two_by_two_table_uses_fishers_exact_test():
    labels = ["yes"] * 10 + ["no"] * 10
    composition = faction_composition(_fit_of([10, 10]), labels, k=K, rng=np.random.default_rng(0))
    assert composition.test == "fisher"
    assert composition.p < 1e-4
    # Zero cells name no one and stay shown.
    assert composition.labels == ("no", "yes")
    assert composition.counts == ((0, 10), (10, 0))


def test_labels_below_k_are_merged_into_other():
    labels = [*"a" * 8, *"bb", *"cc", *"dd", *"aaaa", "b", "d"]
    composition = faction_composition(_fit_of([14, 6]), labels, k=K, rng=np.random.default_rng(0))
    assert composition.labels == ("a", OTHER_LABEL)
    assert composition.merged == ("b", "c", "d")
    assert composition.label_totals == (12, 8)
    assert composition.counts[1][1] is None  # 2 raters
    _assert_no_small_cell_recoverable(composition, np.array([[8, 6], [4, 2]]))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=2, max_size=4).filter(
        lambda columns: all(first + second for first, second in columns)
    )
)
def test_no_suppressed_count_can_be_recovered(columns):
    truth = np.array(columns).T  # factions x labels
    assume((truth.sum(axis=1) > 0).all())
    names = [f"label{c}" for c in range(truth.shape[1])]
    fit = _fit_of(truth.sum(axis=1).tolist())
    labels = [
        name for row in truth for name, count in zip(names, row, strict=True) for _ in range(count)
    ]
    composition = faction_composition(fit, labels, k=K, rng=np.random.default_rng(0))
    merged = [names.index(name) for name in composition.merged]
    shown = [truth[:, names.index(name)] for name in composition.labels if name != OTHER_LABEL]
    if merged:
        shown.append(truth[:, merged].sum(axis=1))
    _assert_no_small_cell_recoverable(composition, np.stack(shown, axis=1))


# Cross-criterion profile.


def test_a_faction_that_finds_the_stereotypical_image_the_better_representation_shows():
    # Image a (X) is the stereotypical one, all agree. Half the raters also find it the better
    # representation, half the other image.
    rng = np.random.default_rng(10)
    membership = simulate.planted_membership(rng, 24, (0.5, 0.5))
    represents = simulate.faction_answers(
        rng, membership, n_items=30, directions=(-1, 1), consistency=0.85, tie_share=0.5
    )
    stereotypical = simulate.faction_answers(
        rng, membership, n_items=30, directions=(-1, -1), consistency=0.85, tie_share=0.5
    )
    fit = factions_fit(represents, rng=np.random.default_rng(0))
    assert _same_grouping(fit, membership) == 0
    profiles = faction_profiles(fit, {"stereotypical": stereotypical, "represents": represents})
    by_key = {(p.criterion, p.faction): p for p in profiles}
    x_for_represents = min(range(2), key=lambda f: by_key["represents", f].lean)
    other = 1 - x_for_represents
    assert by_key["represents", x_for_represents].lean < -0.5
    assert by_key["stereotypical", x_for_represents].lean < -0.5
    assert by_key["represents", other].lean > 0.5
    assert by_key["stereotypical", other].lean < -0.5
    profile = by_key["stereotypical", other]
    rows = fit.factions[other].raters
    assert profile.n_raters == len(rows)
    assert (profile.count_a, profile.count_tie, profile.count_b) == tuple(
        int((stereotypical[rows] == code).sum()) for code in (-1, 0, 1)
    )


# The label rule on its own.


def _opposed_fit(sizes: list[int], leans: tuple[float, float] = (-0.5, 0.5)) -> FactionFit:
    fit = _fit_of(sizes)
    factions = tuple(
        replace(faction, lean=lean) for faction, lean in zip(fit.factions, leans, strict=True)
    )
    return replace(fit, factions=factions)


def _rule(fit: FactionFit | None, p: float | None = 0.001, top_share: float = 0.7, **kwargs):
    n_raters = sum(f.n_raters for f in fit.factions) if fit else 20
    return row_label(
        n_raters=n_raters, k=K, heterogeneity_p=p, fit=fit, top_share=top_share, **kwargs
    )


def test_fewer_than_k_raters_is_insufficient():
    assert _rule(_opposed_fit([2, 2])).label == "insufficient"


def test_the_split_rule_needs_every_condition():
    assert _rule(_opposed_fit([12, 8])).label == "split"
    # Heterogeneity not significant: the factions may be chance.
    assert _rule(_opposed_fit([12, 8]), p=0.02) == RowLabel("consensus", None)
    assert _rule(_opposed_fit([12, 8]), p=None).label == "consensus"
    # Same side, or one faction too close to indifference.
    assert _rule(_opposed_fit([12, 8], (0.3, 0.9))).label == "consensus"
    assert _rule(_opposed_fit([12, 8], (-0.1, 0.9))).label == "consensus"
    # One faction only.
    assert _rule(_fit_of([20])).label == "consensus"
    assert _rule(None, top_share=0.5).label == "contested"


def test_a_small_consistent_faction_is_dissent_beside_the_label():
    # 4 of 20 is 0.2 of the raters but fewer than k; 3 of 20 is below the share.
    for sizes in ([16, 4], [17, 3]):
        label = _rule(_opposed_fit(sizes))
        assert label.label == "consensus"
        assert label.dissent.n_raters == sizes[1]
        assert label.dissent.share == pytest.approx(sizes[1] / 20)
    contested = _rule(_opposed_fit([17, 3]), top_share=0.5)
    assert contested.label == "contested" and contested.dissent.n_raters == 3
    # The share threshold is a study setting.
    assert _rule(_opposed_fit([15, 5]), split_min_share=0.3).dissent.n_raters == 5
    assert _rule(_opposed_fit([15, 5])).label == "split"
