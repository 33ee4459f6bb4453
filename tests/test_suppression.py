"""Complementary suppression of cohort tables (ratings.privacy), by example and by property.

The model of the property tests: every rater holds one cohort path; a cohort's row counts its
own raters and every rater below it, as the scores do. A reader sees the rows shown and the
study's total (other exports give it away). The invariant, exactly:

1. every row shown has at least k raters, and every row below a hidden row is hidden;
2. for the study total and for every row shown, the raters it has that no shown child has
   (the only group a reader can compute as "parent minus shown children") number 0 or >= k;
3. consequently no hidden row with fewer than k raters is a linear combination of the shown
   rows and the total, so none of its counts (raters, votes, a/tie/b, and the shares made from
   them) can be recovered by any arithmetic on the table.

Rule 3 is checked with linear algebra over the raters' groups, not assumed from rule 2. The
study total is taken as known whatever this table does; where nothing but the total is left,
the table adds nothing to it, so a study with fewer than k raters in all is not this table's
to protect.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ratings.cohorts import cohort_path_parent
from ratings.exports.privacy import (
    STUDY_TOTAL,
    SUPPRESSED_BELOW_K,
    SUPPRESSED_COMPLEMENTARY,
    cohort_cells_suppress,
    cohort_labels_release,
    cohort_tables_suppress,
)


def _totals(own: dict[str, int]) -> dict[str, int]:
    """A row's raters: its own and every descendant's."""
    return {
        path: sum(
            count for other, count in own.items() if other == path or other.startswith(path + ":")
        )
        for path in own
    }


def _children(paths) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {STUDY_TOTAL: []}
    for path in paths:
        children.setdefault(path, [])
        children.setdefault(cohort_path_parent(path) or STUDY_TOTAL, []).append(path)
    return children


@st.composite
def hierarchies(draw) -> tuple[dict[str, int], int]:
    """Draw cohorts up to three levels deep with each one's own raters, and k."""
    own: dict[str, int] = {}
    for root in range(draw(st.integers(1, 4))):
        own[f"c{root}"] = draw(st.integers(0, 12))
        for child in range(draw(st.integers(0, 4))):
            own[f"c{root}:s{child}"] = draw(st.integers(0, 12))
            for grandchild in range(draw(st.integers(0, 2))):
                own[f"c{root}:s{child}:p{grandchild}"] = draw(st.integers(0, 9))
    return own, draw(st.integers(1, 11))


def _check_invariant(own: dict[str, int], hidden: dict[str, str], k: int) -> None:
    n = _totals(own)
    children = _children(own)
    shown = [path for path in own if path not in hidden]
    # 1. Rows shown meet k; hidden rows hide their subtrees.
    for path in shown:
        assert n[path] >= k, (path, n[path], k)
    for path in hidden:
        for child in children[path]:
            assert child in hidden, (path, child)
    # 2. Parent minus shown children: nobody, or at least k raters.
    totals = {**n, STUDY_TOTAL: sum(own.values())}
    for parent in [STUDY_TOTAL, *shown]:
        if parent == STUDY_TOTAL and not shown:
            continue
        uncovered = totals[parent] - sum(n[c] for c in children[parent] if c not in hidden)
        assert uncovered == 0 or uncovered >= k, (parent, uncovered, k, hidden)
    # 3. Linear algebra over the groups of raters holding one path each.
    atoms = [path for path in own if own[path] > 0]

    def indicator(path: str) -> np.ndarray:
        return np.array(
            [1.0 if atom == path or atom.startswith(path + ":") else 0.0 for atom in atoms]
        )

    if not atoms:
        return
    published = np.array([np.ones(len(atoms))] + [indicator(path) for path in shown])
    rank = np.linalg.matrix_rank(published)
    for path in hidden:
        if 0 < n[path] < k and n[path] < totals[STUDY_TOTAL]:
            extended = np.vstack([published, indicator(path)])
            assert np.linalg.matrix_rank(extended) > rank, (path, hidden)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(hierarchies())
def test_no_hidden_cohort_can_be_recovered_from_the_rows_shown(drawn):
    own, k = drawn
    hidden = cohort_cells_suppress(_totals(own), k=k)
    _check_invariant(own, hidden, k)
    # Only what must be hidden is: rows below k, and complements chosen for a reason.
    for path, reason in hidden.items():
        assert reason in (SUPPRESSED_BELOW_K, SUPPRESSED_COMPLEMENTARY)
        if reason == SUPPRESSED_BELOW_K:
            assert _totals(own)[path] < k


@settings(max_examples=200, deadline=None, derandomize=True)
@given(hierarchies(), st.lists(st.integers(0, 6), min_size=1, max_size=3), st.randoms())
def test_one_hidden_set_keeps_every_slice_safe(drawn, shifts, random):
    own, k = drawn
    # Slices (criteria, coherence) over the same cohorts with different raters in each.
    slices_own = [
        {path: max(0, count - random.randint(0, shift)) for path, count in own.items()}
        for shift in shifts
    ]
    hidden = cohort_tables_suppress([_totals(slice_own) for slice_own in slices_own], k=k)
    for slice_own in slices_own:
        _check_invariant(slice_own, hidden, k)


def test_a_lone_small_child_is_protected_by_hiding_its_smallest_sibling():
    n = {"india": 30, "india:tamil": 3, "india:kerala": 12, "india:bengal": 15}
    hidden = cohort_cells_suppress(n, k=5, total=30)
    # Without the complement, india - kerala - bengal = 3 would be Tamil's count.
    assert hidden == {"india:tamil": SUPPRESSED_BELOW_K, "india:kerala": SUPPRESSED_COMPLEMENTARY}


def test_a_parents_own_few_raters_are_protected_too():
    # Two raters chose plain "india": india - tamil - kerala would single them out.
    n = {"india": 22, "india:tamil": 8, "india:kerala": 12}
    assert cohort_cells_suppress(n, k=5, total=22) == {"india:tamil": SUPPRESSED_COMPLEMENTARY}


def test_children_that_cover_their_parent_need_no_complement():
    n = {"india": 20, "india:tamil": 8, "india:kerala": 12, "korea": 9}
    assert cohort_cells_suppress(n, k=5) == {}


def test_a_lone_small_culture_hides_the_next_smallest_against_the_study_total():
    n = {"india": 20, "korea": 3, "nigeria": 9, "mexico": 40}
    assert cohort_cells_suppress(n, k=5) == {
        "korea": SUPPRESSED_BELOW_K,
        "nigeria": SUPPRESSED_COMPLEMENTARY,
    }


def test_hiding_a_complement_hides_its_subtree():
    n = {"india": 24, "india:tamil": 2, "india:kerala": 22, "india:kerala:old": 10}
    hidden = cohort_cells_suppress(n, k=5, total=24)
    assert hidden == {
        "india:tamil": SUPPRESSED_BELOW_K,
        "india:kerala": SUPPRESSED_COMPLEMENTARY,
        "india:kerala:old": SUPPRESSED_COMPLEMENTARY,
    }


def test_a_row_hidden_in_one_slice_is_hidden_in_all():
    alignment = {"india": 20, "india:tamil": 10, "india:kerala": 10}
    coherence = {"india": 20, "india:tamil": 4, "india:kerala": 16}
    hidden = cohort_tables_suppress([alignment, coherence], k=5)
    assert hidden == {
        "india:tamil": SUPPRESSED_BELOW_K,
        "india:kerala": SUPPRESSED_COMPLEMENTARY,
    }


@st.composite
def raters_with_labels(draw) -> tuple[dict[int, list[str]], int]:
    paths = ["india", "india:tamil", "india:kerala", "korea", "nigeria", "mexico:north"]
    counts = draw(st.lists(st.integers(0, 9), min_size=len(paths), max_size=len(paths)))
    labels: dict[int, list[str]] = {}
    for path, count in zip(paths, counts, strict=True):
        for _ in range(count):
            labels[len(labels)] = [path]
    return labels, draw(st.integers(1, 8))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(raters_with_labels())
def test_released_labels_meet_k_and_the_unlabelled_never_stand_out(drawn):
    labels, k = drawn
    release = cohort_labels_release(labels, k=k, protect_unlabelled=True)
    shown = Counter(release[paths[0]] for paths in labels.values())
    unlabelled = shown.pop(None, 0)
    assert all(count >= k for count in shown.values()), shown
    # The raters shown with no label are nobody, at least k, or everyone.
    assert unlabelled == 0 or unlabelled >= k or not shown
    # A label is only ever shown as itself or one of its ancestors.
    for original, label in release.items():
        assert label is None or original == label or original.startswith(label + ":")


def test_without_protection_the_unlabelled_keep_their_old_rule():
    labels = {rater: ["india"] for rater in range(6)}
    labels.update({6: ["korea"], 7: ["korea"]})
    assert cohort_labels_release(labels, k=5) == {"india": "india", "korea": None}
    assert cohort_labels_release(labels, k=5, protect_unlabelled=True) == {
        "india": None,
        "korea": None,
    }
