"""Constraints the database itself enforces, and the cohort hierarchy."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from ratings.models import Answer, Cohort, Vote
from ratings.studies import cohort_ensure


def test_database_refuses_a_second_vote_by_the_same_rater_on_the_same_pair(
    pair_factory, rater_india
):
    pair = pair_factory()
    fields = {
        "study": pair.study,
        "pair": pair,
        "rater": rater_india,
        "shown_left": "a",
        "cohort_paths": ["india"],
        "time_on_task_ms": 1000,
    }
    Vote.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Vote.objects.create(**fields)
    assert Vote.objects.filter(pair=pair, rater=rater_india).count() == 1


def test_database_refuses_an_answer_that_is_not_a_b_tie_or_skip(pair_factory, rater_india):
    pair = pair_factory()
    vote = Vote.objects.create(
        study=pair.study,
        pair=pair,
        rater=rater_india,
        shown_left="b",
        cohort_paths=["india"],
        time_on_task_ms=10,
    )
    criterion = pair.study.criteria.get(key="stereotype")
    with pytest.raises(IntegrityError), transaction.atomic():
        Answer.objects.create(vote=vote, criterion=criterion, choice="left")


def test_cohort_subtree_includes_descendants_and_not_lookalike_names(db):
    for path in ["india", "india:tamil", "india:tamil:contemporary", "india:kerala", "indiana"]:
        cohort_ensure(path=path)
    assert set(Cohort.objects.subtree("india").values_list("path", flat=True)) == {
        "india",
        "india:tamil",
        "india:tamil:contemporary",
        "india:kerala",
    }
    assert set(Cohort.objects.subtree("india:tamil").values_list("path", flat=True)) == {
        "india:tamil",
        "india:tamil:contemporary",
    }


def test_cohort_parent_and_depth_follow_the_path(db):
    period = cohort_ensure(path="India:Tamil:contemporary")
    assert period.path == "india:tamil:contemporary"
    assert period.depth == 3
    assert period.parent.path == "india:tamil"
    assert period.parent.parent.path == "india"
    assert period.parent.parent.parent is None


def test_cohort_path_deeper_than_culture_subculture_period_is_refused(db):
    from ratings.cohorts import CohortPathError

    with pytest.raises(CohortPathError):
        cohort_ensure(path="india:tamil:contemporary:extra")
    assert not Cohort.objects.exists()
