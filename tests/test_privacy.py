"""Pseudonyms and cohort labels in exports."""

from __future__ import annotations

from ratings.exports.privacy import cohort_labels_release, rater_pseudonym


def test_pseudonym_is_stable_per_study_and_differs_between_studies():
    assert rater_pseudonym(salt="s1", rater_id=7) == rater_pseudonym(salt="s1", rater_id=7)
    assert rater_pseudonym(salt="s1", rater_id=7) != rater_pseudonym(salt="s2", rater_id=7)
    assert rater_pseudonym(salt="s1", rater_id=7) != rater_pseudonym(salt="s1", rater_id=8)
    assert len(rater_pseudonym(salt="s1", rater_id=7)) == len("r_") + 20


def test_labels_meeting_k_are_kept():
    labels = {rater: ["india"] for rater in range(5)}
    assert cohort_labels_release(labels, k=5) == {"india": "india"}


def test_small_subcohort_is_rolled_up_into_its_parent():
    labels = {rater: ["india:tamil"] for rater in range(3)}
    labels.update({rater: ["india"] for rater in range(3, 8)})
    assert cohort_labels_release(labels, k=5) == {"india:tamil": "india", "india": "india"}


def test_parent_left_below_k_by_visible_children_is_rolled_up_too():
    # 6 Kerala raters are shown; 2 Tamil and 1 plain India would leave an "india" group of 3,
    # which is the parent minus its visible child: it must not be shown at all.
    labels = {r: ["india:kerala"] for r in range(6)}
    labels.update({r: ["india:tamil"] for r in range(6, 8)})
    labels[8] = ["india"]
    release = cohort_labels_release(labels, k=5)
    assert release["india:kerala"] == "india:kerala"
    assert release["india:tamil"] is None
    assert release["india"] is None


def test_small_culture_is_dropped():
    assert cohort_labels_release({1: ["korea"], 2: ["korea"]}, k=5) == {"korea": None}
