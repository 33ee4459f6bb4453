"""The split-aware statistics (ratings/scoring.py) on arrays, with no database.

Every case of SCORING.md section 10 is here with a fixed seed, next to each statistic checked
against values worked out by hand.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import choix
import krippendorff
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratings.results.statistics import heterogeneity
from ratings.results.statistics.agreement import krippendorff_alpha_ordinal
from ratings.results.statistics.bradley_terry import (
    bradley_terry_batch,
    bradley_terry_strengths,
    comparison_matrix,
)
from ratings.results.statistics.cells import cell_statistics
from ratings.results.statistics.codes import MISSING, SKIP, TIE, A, B
from ratings.results.statistics.coherence import coherence
from ratings.results.statistics.distribution import (
    histogram,
    rater_bootstrap_shares,
    share_b,
    share_b_ties_half,
)
from ratings.results.statistics.grasp import (
    AnswerCounts,
    RaterAgreement,
    benjamini_hochberg,
    group_association,
    rater_agreement,
)
from ratings.results.statistics.heterogeneity import (
    rater_heterogeneity,
    rater_heterogeneity_by_group,
)
from ratings.results.statistics.labels import RowLabel, Thresholds, row_label
from ratings.results.statistics.polarization import ndfu, van_der_eijk_agreement
from ratings.results.statistics.resampling import rng_for
from ratings.results.statistics.study import StudyVotes, study_scores

THRESHOLDS = Thresholds()


def crossed(
    n_raters: int, n_items: int, choose: Callable, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every rater rates every item; choose(rng, raters, items) gives the coded votes."""
    rng = np.random.default_rng(seed)
    raters = np.repeat(np.arange(n_raters), n_items)
    items = np.tile(np.arange(n_items), n_raters)
    return raters, items, np.asarray(choose(rng, raters, items), dtype=np.int8)


def planted_split(rng, raters, items):
    # Half the raters choose a with p = 0.9, half choose b with p = 0.9.
    leans_b = raters < raters.max() / 2
    likely, unlikely = np.where(leans_b, B, A), np.where(leans_b, A, B)
    return np.where(rng.random(len(raters)) < 0.9, likely, unlikely)


def unanimous(rng, raters, items):
    return np.full(len(raters), B)


def uniform_noise(rng, raters, items):
    return rng.choice([A, TIE, B], size=len(raters))


def coin_flips(rng, raters, items):
    return rng.choice([A, B], size=len(raters))


def a_or_tie(rng, raters, items):
    return np.where(rng.random(len(raters)) < 0.6, A, TIE)


CASES = {
    "planted split": (planted_split, "split"),
    "unanimous": (unanimous, "consensus"),
    "uniform noise": (uniform_noise, "contested"),
    "coin flips": (coin_flips, "contested"),
    "60% a, 40% tie": (a_or_tie, None),  # anything but split
}


def label_of(raters, items, codes, *, permutations=1000, seed=0) -> tuple[str, object]:
    stats = cell_statistics(
        raters, items, codes, permutations=permutations, bootstrap=500, seed=seed
    )
    return stats.label(THRESHOLDS), stats


# Section 10: the cases every implementation must pass.


@pytest.mark.parametrize("case", CASES)
def test_section_10_labels(case):
    choose, expected = CASES[case]
    label, stats = label_of(*crossed(30, 40, choose, seed=11))
    if expected is None:
        assert label != "split"
        assert stats.count_b == 0 and stats.ndfu == 0
    else:
        assert label == expected


def test_planted_split_is_told_from_coin_flips_by_rater_heterogeneity():
    _, split = label_of(*crossed(30, 40, planted_split, seed=11))
    _, coins = label_of(*crossed(30, 40, coin_flips, seed=11))
    # Both histograms look split ...
    for stats in (split, coins):
        assert stats.ndfu > 0.8 and stats.agreement < -0.8
    # ... but only the planted raters are consistent.
    assert split.heterogeneity_p == pytest.approx(1 / 1001)
    assert coins.heterogeneity_p > 0.05


def test_sub_cohorts_unanimous_in_opposite_directions_split_their_parent():
    # Cohorts: 0 india, 1 india:tamil, 2 india:kerala; label sets: tamil, kerala.
    raters, items, _ = crossed(12, 10, unanimous, seed=0)
    kerala = raters >= 6
    codes = np.where(kerala, B, A).astype(np.int8)[:, None]
    votes = StudyVotes(
        rater=raters,
        item=items,
        variant_pair=np.zeros(len(raters), dtype=np.intp),
        label_set=kerala.astype(np.intp),
        codes=codes,
        membership=np.array([[True, True, False], [True, False, True]]),
        variant_pairs=[(0, 1)],
        criterion_keys=[1],
        cohort_keys=[10, 11, 12],
        variant_keys=[1, 2],
    )
    result = study_scores(
        votes, permutations=500, bootstrap=200, seed=3, factions_max_p=0.01, factions_min_raters=5
    )
    labels = [result.cells[(cohort, 0, 0)].label(THRESHOLDS) for cohort in range(3)]
    assert labels == ["split", "consensus", "consensus"]
    # The parent's two factions are the two sub-cohorts, whole.
    factions = result.factions[(0, 0, 0)]
    sides = [set(factions.raters[f.raters].tolist()) for f in factions.fit.factions]
    assert sorted(map(sorted, sides)) == [list(range(6)), list(range(6, 12))]
    india = result.cells[(0, 0, 0)]
    assert (india.count_a, india.count_b, india.n_raters) == (60, 60, 12)
    assert india.heterogeneity_p == pytest.approx(1 / 501)


@pytest.mark.parametrize("case", CASES)
def test_swapping_a_and_b_flips_the_preference_and_no_split_statistic(case):
    raters, items, codes = crossed(30, 40, CASES[case][0], seed=5)
    swapped = np.where(codes == SKIP, SKIP, -codes).astype(np.int8)
    label, stats = label_of(raters, items, codes)
    swapped_label, swapped_stats = label_of(raters, items, swapped)

    assert swapped_label == label
    assert (swapped_stats.count_a, swapped_stats.count_b) == (stats.count_b, stats.count_a)
    if stats.share_b is not None:
        assert swapped_stats.share_b == pytest.approx(1 - stats.share_b)
        assert swapped_stats.share_b_low == pytest.approx(1 - stats.share_b_high)
        assert swapped_stats.share_b_high == pytest.approx(1 - stats.share_b_low)
    assert swapped_stats.share_b_ties_half == pytest.approx(1 - stats.share_b_ties_half)
    for name in ("ndfu", "agreement", "alpha", "heterogeneity", "heterogeneity_p"):
        assert getattr(swapped_stats, name) == pytest.approx(getattr(stats, name)), name


@pytest.mark.parametrize("case", CASES)
def test_dropping_30_percent_of_votes_keeps_every_label(case):
    raters, items, codes = crossed(30, 40, CASES[case][0], seed=23)
    kept = np.random.default_rng(29).random(len(codes)) >= 0.3
    assert kept.mean() == pytest.approx(0.7, abs=0.03)
    full_label, _ = label_of(raters, items, codes)
    label, _ = label_of(raters[kept], items[kept], codes[kept])
    assert label == full_label


def test_heterogeneity_p_values_are_uniform_under_the_null():
    """200 cohorts whose votes depend on the item only: about 5% significant at 0.05."""
    rng = np.random.default_rng(2024)
    p_values = []
    for cohort in range(200):
        item_odds = rng.dirichlet([1.0, 1.0, 1.0], size=12)  # items differ, raters do not
        raters, items, _ = crossed(20, 12, unanimous, seed=cohort)
        draws = rng.random(len(items))[:, None] > np.cumsum(item_odds[items], axis=1)
        codes = (draws.sum(axis=1) - 1).astype(np.int8)
        _, p = rater_heterogeneity(raters, items, codes, permutations=199, rng=rng_for(7, cohort))
        p_values.append(p)
    p_values = np.array(p_values)
    assert 4 <= (p_values < 0.05).sum() <= 18  # 10 expected; binomial sd about 3
    assert 0.4 <= (p_values < 0.5).mean() <= 0.6
    assert 0.15 <= (p_values < 0.25).mean() <= 0.35


def test_group_association_p_values_are_uniform_under_the_null():
    """200 studies whose groups have nothing to do with the votes: about 5% at 0.05."""
    rng = np.random.default_rng(99)
    groups = np.zeros((1, 30), dtype=bool)
    groups[0, :10] = True
    p_values = []
    for study in range(200):
        item_odds = rng.dirichlet([1.0, 1.0, 1.0], size=15)
        raters, items, _ = crossed(30, 15, unanimous, seed=study)
        draws = rng.random(len(items))[:, None] > np.cumsum(item_odds[items], axis=1)
        codes = (draws.sum(axis=1) - 1).astype(np.int8)
        agreement = rater_agreement(raters, items, codes, n_raters=30)
        (association,) = group_association(
            agreement, groups, permutations=199, rng=rng_for(8, study)
        )
        p_values.append(association.p)
    p_values = np.array(p_values)
    assert 4 <= (p_values < 0.05).sum() <= 18
    assert 0.4 <= (p_values < 0.5).mean() <= 0.6


def test_a_planted_cross_criterion_split_shows_in_the_coherence_table():
    # Every rater calls image b the more stereotypical and more offensive; half of them call
    # it the better representation too, half call the other image better.
    raters, _, _ = crossed(20, 10, unanimous, seed=0)
    stereotype = np.full(len(raters), B)
    offensiveness = np.full(len(raters), B)
    representation = np.where(raters % 2 == 0, B, A)
    split = coherence(raters, stereotype, offensiveness, representation)
    assert (split.same, split.tie, split.other, split.n_raters) == (100, 0, 100, 20)
    assert split.ndfu == pytest.approx(1.0)
    # Where the raters agree on what representation means, it does not show.
    agreed = coherence(raters, stereotype, offensiveness, np.full(len(raters), A))
    assert (agreed.same, agreed.other, agreed.ndfu) == (0, 200, 0.0)


# Each statistic against values worked out by hand.


def test_histogram_and_shares():
    codes = np.array([A, A, B, TIE, SKIP, MISSING])
    assert histogram(codes).tolist() == [2, 1, 1, 1]
    assert share_b(2, 1, 1) == pytest.approx(1 / 3)
    assert share_b_ties_half(2, 1, 1) == pytest.approx(1.5 / 4)
    assert share_b(0, 3, 0) is None
    assert share_b_ties_half(0, 0, 0) is None


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([50, 0, 50], 1.0),
        ([10, 10, 10], 0.0),
        ([5, 10, 5], 0.0),
        ([30, 20, 10], 0.0),
        ([40, 10, 30], 0.5),  # peak 40 at a; the rise from 10 to 30 is 20
        ([10, 0, 40], 0.25),  # peak 40 at b; walking to a, 10 rises from 0
        ([0, 0, 7], 0.0),
        ([0, 0, 0], None),
    ],
)
def test_ndfu(counts, expected):
    assert ndfu(counts) == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([0, 0, 10], 1.0),  # one answer: consensus
        ([10, 0, 10], -1.0),  # perfect polarization
        ([10, 10, 10], 0.0),  # uniform
        ([6, 4, 0], 0.6),  # layer 1-1-0 of 4 each (A = 1/2, weight 0.8), then 1-0-0 (weight 0.2)
        ([30, 40, 210, 130, 530, 50, 10], 0.6113333),  # agrmt's own example
    ],
)
def test_van_der_eijk_agreement(counts, expected):
    assert van_der_eijk_agreement(counts) == pytest.approx(expected, abs=1e-6)


def test_ordinal_alpha_is_krippendorffs_on_the_raters_by_items_matrix():
    rng = np.random.default_rng(4)
    raters, items, codes = crossed(6, 9, uniform_noise, seed=4)
    codes[rng.random(len(codes)) < 0.2] = SKIP
    matrix = np.full((6, 9), np.nan)
    answered = codes != SKIP
    matrix[raters[answered], items[answered]] = codes[answered]
    expected = krippendorff.alpha(
        reliability_data=matrix, value_domain=[A, TIE, B], level_of_measurement="ordinal"
    )
    assert krippendorff_alpha_ordinal(items, codes) == pytest.approx(expected)
    # Raters who agree on items that differ: alpha 1. One answer everywhere: undefined.
    perfect = np.tile(np.array([A, TIE, B]), 4)
    assert krippendorff_alpha_ordinal(np.repeat(np.arange(3), 4), np.repeat(perfect[:3], 4)) == 1.0
    assert krippendorff_alpha_ordinal(items, np.full(len(items), B)) is None


def test_bootstrap_resamples_raters_not_votes():
    # Two raters of ten votes each, one all b and one all a: a resample is both of one rater
    # (share 1 or 0, a quarter of the time each) or one of each (0.5).
    both = np.array([[0, 0, 10], [10, 0, 0]])
    decisive, ties_half = rater_bootstrap_shares(both, resamples=4000, rng=np.random.default_rng(1))
    assert decisive == (0.0, 1.0) and ties_half == (0.0, 1.0)
    # Thirty consistent raters, half each way: the interval reflects 30 raters, not 1200
    # votes (a vote-level bootstrap would give about 0.5 +- 0.03).
    raters, items, codes = crossed(30, 40, planted_split, seed=11)
    stats = cell_statistics(raters, items, codes, permutations=10, bootstrap=1000)
    assert stats.share_b_high - stats.share_b_low > 0.25
    assert stats.share_b_low < stats.share_b < stats.share_b_high


def _exact_heterogeneity_p(raters, items, codes) -> float:
    """Enumerate every within-item permutation (small cases only)."""
    values = {item: codes[items == item] for item in np.unique(items)}
    holders = {item: raters[items == item] for item in values}
    n = raters.max() + 1

    def variance(assignment) -> float:
        sums, counts = np.zeros(n), np.zeros(n)
        for item, order in assignment:
            np.add.at(sums, holders[item], values[item][list(order)])
            np.add.at(counts, holders[item], 1)
        return float((sums / counts).var())

    observed = variance([(item, range(len(values[item]))) for item in values])
    choices = [
        [(item, order) for order in itertools.permutations(range(len(values[item])))]
        for item in values
    ]
    extreme = total = 0
    for assignment in itertools.product(*choices):
        total += 1
        extreme += variance(assignment) >= observed - 1e-12
    return extreme / total


def test_heterogeneity_matches_the_exact_permutation_p_value():
    raters = np.repeat(np.arange(4), 3)
    items = np.tile(np.arange(3), 4)
    codes = np.array([B, B, TIE, B, A, B, A, A, TIE, A, TIE, B], dtype=np.int8)
    exact = _exact_heterogeneity_p(raters, items, codes)  # over 4!^3 = 13,824 permutations
    statistic, p = rater_heterogeneity(
        raters, items, codes, permutations=20000, rng=np.random.default_rng(0)
    )
    leans = np.array([B + B + TIE, B + A + B, A + A + TIE, A + TIE + B]) / 3
    assert statistic == pytest.approx(leans.var())
    assert 0.05 < exact < 0.95
    assert p == pytest.approx(exact, abs=0.01)


def test_heterogeneity_table_and_shuffle_permutations_agree(monkeypatch):
    raters, items, codes = crossed(7, 20, uniform_noise, seed=3)  # seven raters per item
    shuffled = rater_heterogeneity(
        raters, items, codes, permutations=6000, rng=np.random.default_rng(1)
    )
    monkeypatch.setattr(heterogeneity, "_TABLE_MAX_ITEM", 7)
    tabled = rater_heterogeneity(
        raters, items, codes, permutations=6000, rng=np.random.default_rng(1)
    )
    assert tabled[0] == shuffled[0]
    assert 0.05 < shuffled[1] < 0.95
    assert tabled[1] == pytest.approx(shuffled[1], abs=0.03)


def test_heterogeneity_by_group_matches_each_group_tested_alone():
    # Two sub-cohorts under one parent; half the items are rated by both (mixed items), so
    # the parent permutes them whole while each child permutes only its own part.
    rng = np.random.default_rng(8)
    raters, items = [], []
    for item in range(30):
        chosen = rng.choice(12, size=5, replace=False) if item % 2 else rng.choice(6, 4, False)
        raters.extend(chosen)
        items.extend([item] * len(chosen))
    raters, items = np.array(raters), np.array(items)
    lean = np.where(np.arange(12) % 3 == 0, 0.3, -0.1)
    codes = np.clip(np.round(lean[raters] + rng.normal(0, 0.8, len(raters))), -1, 1)
    codes = codes.astype(np.int8)
    label_sets = (raters >= 6).astype(np.intp)
    membership = np.array([[True, True, False], [True, False, True]])
    together = rater_heterogeneity_by_group(
        raters,
        items,
        codes,
        label_sets,
        membership,
        permutations=4000,
        rng=np.random.default_rng(2),
        group_rng=lambda group: np.random.default_rng(100 + group),
    )
    for group, (statistic, p) in enumerate(together):
        mine = membership[label_sets, group]
        alone = rater_heterogeneity(
            raters[mine],
            items[mine],
            codes[mine],
            permutations=4000,
            rng=np.random.default_rng(3),
        )
        assert statistic == pytest.approx(alone[0])
        assert p == pytest.approx(alone[1], abs=0.04), group


@pytest.mark.parametrize("form", ["pairs", "counts"])
def test_group_association_by_hand(form):
    # Raters 0 and 1 (the group) agree on both items; the group is distinct from 2 and 3.
    raters = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    items = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    codes = np.array([A, A, B, A, B, B, B, TIE], dtype=np.int8)
    agreement = rater_agreement(raters, items, codes, n_raters=4, form=form)
    groups = np.array([[True, True, False, False], [False, False, True, True]])
    group, others = group_association(
        agreement, groups, permutations=12000, rng=np.random.default_rng(5)
    )
    assert group.cohesion_in == 1.0  # 2 same of 2 pairs
    assert group.cohesion_cross == 0.5  # 4 same of 8 cross pairs
    assert group.gai == 2.0
    # Of the six ways to pick two raters, only {0, 1} reaches a GAI of 2.
    assert group.p == pytest.approx(1 / 6, abs=0.015)
    assert (others.cohesion_in, others.gai) == (0.0, 0.0)
    assert others.p == pytest.approx(1.0, abs=0.001)


@settings(max_examples=60, deadline=None)
@given(
    n_raters=st.integers(2, 12),
    n_items=st.integers(1, 6),
    n_votes=st.integers(1, 60),
    seed=st.integers(0, 2**16),
)
def test_grasp_sums_from_counts_per_item_equal_those_from_rater_pairs(
    n_raters, n_items, n_votes, seed
):
    # Any answers, a rater answering an item twice and skips included: the sums over pairs of
    # raters equal the sums over items of the pairs of raters who answered them, for every
    # group and for the first k raters of any order.
    rng = np.random.default_rng(seed)
    raters = rng.integers(0, n_raters, n_votes)
    items = rng.integers(0, n_items, n_votes) * 7  # item ids need not be dense
    codes = rng.choice([A, TIE, B, SKIP], n_votes).astype(np.int8)
    pairs = rater_agreement(raters, items, codes, n_raters=n_raters, form="pairs")
    counts = rater_agreement(raters, items, codes, n_raters=n_raters, form="counts")
    for _ in range(4):
        members = rng.random(n_raters) < 0.5
        assert counts.sums(members) == pytest.approx(pairs.sums(members))
    position = np.array([rng.permutation(n_raters) for _ in range(5)])
    sizes = np.arange(1, n_raters + 1)
    if pairs.size and counts.size:
        for mine, theirs in zip(
            counts.prefix_sums(position, sizes), pairs.prefix_sums(position, sizes), strict=True
        ):
            assert mine == pytest.approx(theirs)


def test_grasp_counts_per_item_where_every_rater_answers_the_same_few_items():
    # 3,000 raters on the same two items: 4.5 million pairs of raters, 6,000 answers.
    raters = np.repeat(np.arange(3000), 2)
    items = np.tile([0, 1], 3000)
    # The first thousand choose a on both; the rest choose b on the first item, a on the second.
    codes = np.where((raters < 1000) | (items == 1), A, B).astype(np.int8)
    agreement = rater_agreement(raters, items, codes, n_raters=3000)
    assert isinstance(agreement, AnswerCounts)
    groups = np.zeros((2, 3000), dtype=bool)
    groups[0, :1000] = True  # the third who chose a: cohesive, and apart from the rest
    groups[1, ::3] = True  # a third drawn across both camps
    planted, mixed = group_association(
        agreement, groups, permutations=99, rng=np.random.default_rng(1)
    )
    assert (planted.cohesion_in, planted.cohesion_cross, planted.gai) == (1.0, 0.5, 2.0)
    assert planted.p == pytest.approx(0.01)  # none of 99 permutations reaches it
    assert mixed.gai == pytest.approx(1.0, abs=0.01) and mixed.p > 0.05
    # A sparse study keeps the pairs: each item answered by three raters.
    sparse = rater_agreement(np.arange(300), np.arange(300) // 3, np.full(300, A), n_raters=300)
    assert isinstance(sparse, RaterAgreement)


def test_benjamini_hochberg():
    q = benjamini_hochberg([0.01, 0.04, 0.03, 0.2])
    assert q == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.2])
    assert benjamini_hochberg([]).tolist() == []


def test_bradley_terry_batch_reaches_choix_fixed_point():
    rng = np.random.default_rng(6)
    wins = rng.integers(0, 20, size=(50, 4, 4)).astype(float)
    for matrix in wins:
        np.fill_diagonal(matrix, 0)
    batch = bradley_terry_batch(wins)
    for matrix, params in zip(wins, batch, strict=True):
        assert params == pytest.approx(choix.ilsr_pairwise_dense(matrix, alpha=0.01), abs=1e-6)


def test_bradley_terry_strengths_split_ties_in_half():
    # Variant 2 beats 0 every time, 1 ties 0 every time, 2 and 1 are never compared.
    raters = np.repeat(np.arange(5), 4)
    first = np.tile([0, 0, 0, 0], 5)
    second = np.tile([1, 1, 2, 2], 5)
    codes = np.tile([TIE, TIE, B, B], 5).astype(np.int8)
    strengths = bradley_terry_strengths(
        raters, first, second, codes, n_variants=3, resamples=200, rng=np.random.default_rng(0)
    )
    by_variant = {s.variant: s.strength for s in strengths}
    # Ties are half a win each way: 0 and 1 stay level (up to choix's small regularisation).
    assert by_variant[2] > by_variant[1]
    assert by_variant[1] == pytest.approx(by_variant[0], abs=0.05)
    wins = comparison_matrix(first, second, codes, n_variants=3)
    assert wins.tolist() == [[0, 5, 0], [5, 0, 0], [10, 0, 0]]


class _Side:
    def __init__(self, n_raters: int, share: float, lean: float) -> None:
        self.n_raters, self.share, self.lean = n_raters, share, lean


def test_row_label_rules():
    opposed = (_Side(6, 0.6, 0.8), _Side(4, 0.4, -0.8))
    kwargs = {"heterogeneity_p": 0.001, "thresholds": Thresholds(k=4)}
    label = row_label(n_raters=3, histogram=(5, 0, 5), factions=opposed, **kwargs)
    assert label.label == "insufficient"
    assert row_label(n_raters=10, histogram=(5, 0, 5), factions=opposed, **kwargs).label == "split"
    # A lopsided histogram is split all the same when a consistent faction opposes.
    lopsided = row_label(n_raters=10, histogram=(2, 0, 8), factions=opposed, **kwargs)
    assert lopsided.label == "split"
    # Not significant: a histogram that looks split is only contested, factions or not.
    noisy = {**kwargs, "heterogeneity_p": 0.2}
    assert row_label(n_raters=10, histogram=(5, 0, 5), factions=opposed, **noisy) == RowLabel(
        "contested", None
    )
    # No factions (one fits as well): never split.
    assert row_label(n_raters=10, histogram=(5, 0, 5), factions=None, **kwargs).label == (
        "contested"
    )
    # A consistent minority below the share: consensus, with its dissent beside it.
    small = (_Side(17, 0.85, 0.8), _Side(3, 0.15, -0.8))
    label = row_label(n_raters=20, histogram=(3, 0, 17), factions=small, **kwargs)
    assert label.label == "consensus" and label.dissent.n_raters == 3
    # Factions leaning the same way are no split.
    same_way = (_Side(6, 0.6, 0.8), _Side(4, 0.4, 0.3))
    assert row_label(n_raters=10, histogram=(1, 0, 9), factions=same_way, **kwargs) == RowLabel(
        "consensus", None
    )
