"""Quality checks: attention checks, the time check, flagging, and what flagged votes become."""

from __future__ import annotations

import csv
import io
import itertools
import random
import threading
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from ratings.assignment.checks import attention_check_due
from ratings.assignment.services import assignment_for_rater
from ratings.exports.tables import votes_long_csv
from ratings.models import Assignment, AssignmentKind, Participation, Side, Vote
from ratings.results.selectors import votes_for_scoring
from ratings.voting.services import VoteRefused, vote_cast
from tests.rating_pages import (
    SCREEN_ANSWERS,
    client_for,
    form_answers,
    image_of,
    image_urls,
    serve_and_vote,
    served_assignment_id,
)

ALL_TIES = dict.fromkeys(SCREEN_ANSWERS, "tie")
ALL_LEFT = dict.fromkeys(SCREEN_ANSWERS, "1")
ALL_RIGHT = dict.fromkeys(SCREEN_ANSWERS, "2")


def _study_with(study, **fields):
    fields = {"min_seconds_per_pair": 3, "max_failed_checks": 1, **fields}
    type(study).objects.filter(pk=study.pk).update(**fields)
    study.refresh_from_db()
    return study


def _participation(study, rater) -> Participation:
    return Participation.objects.get(study=study, rater=rater)


def test_checks_are_served_at_the_studys_rate_alternating_kinds(study, pair_factory, rater_india):
    _study_with(study, attention_check_rate=0.5)
    for _ in range(6):  # an identical check spends a pair: its images are not shown again
        pair_factory()
    kinds = [serve_and_vote(study, rater_india)[0].kind for _ in range(6)]
    assert kinds == ["pair", "identical", "pair", "repeat", "pair", "identical"]


def test_checks_come_at_random_positions_at_the_studys_rate_on_average():
    """A weighted coin, not a counter: positions vary, never two checks in a row."""
    coin = random.Random(10)
    study = SimpleNamespace(attention_check_rate=0.1)
    positions: list[list[int]] = []
    total = checks = 0
    for _ in range(400):
        served = SimpleNamespace(last_kind=None)
        state = SimpleNamespace(study=study, served=served)
        mine = []
        for position in range(1, 51):
            check = attention_check_due(state, coin=coin)
            served.last_kind = "identical" if check else AssignmentKind.PAIR
            if check:
                mine.append(position)
        positions.append(mine)
        total, checks = total + 50, checks + len(mine)
        assert all(b - a > 1 for a, b in itertools.pairwise(mine))
        assert 1 not in mine  # a rater's first assignment is a pair
    assert 0.09 <= checks / total <= 0.11  # 20,000 draws: the rate, within 5 standard errors
    # Not the 10th, 20th, ...: checks fall on every position from the 2nd on.
    assert set(range(2, 51)) <= {p for mine in positions for p in mine}
    assert len({tuple(mine) for mine in positions}) > 300


def test_no_checks_at_rate_zero(study, pair_factory, rater_india):
    _study_with(study, attention_check_rate=0)
    for _ in range(5):
        pair_factory()
    assert {serve_and_vote(study, rater_india)[0].kind for _ in range(5)} == {"pair"}


def test_identical_check_shows_one_in_group_image_twice(study, pair_factory, rater_india):
    _study_with(study, attention_check_rate=0.5)
    pair_factory(cohort_path="korea")
    india = [pair_factory(cohort_path="india") for _ in range(2)]
    first, _ = serve_and_vote(study, rater_india)
    # From a pair the rater has not seen: an image is never shown to a rater twice.
    (source,) = [pair for pair in india if pair.pk != first.pair_id]
    client = client_for(rater_india)
    page = client.get(reverse("ratings:rate", args=["test-study"])).content.decode()
    check = Assignment.objects.get(pk=served_assignment_id(page))
    assert check.kind == AssignmentKind.IDENTICAL_CHECK
    pair = check.pair
    assert pair.is_attention_check
    assert pair.image_a_id == pair.image_b_id
    assert pair.variant_a_id == pair.variant_b_id
    assert pair.image_a_id in {source.image_a_id, source.image_b_id}
    left, right = image_urls(page)
    # One image twice, under two URLs of this impression: a check looks like any pair.
    assert left != right
    assert image_of(left) == image_of(right) == pair.image_a
    assert client.get(left).content == client.get(right).content


@pytest.mark.parametrize(
    ("answers", "passed"),
    [
        (ALL_TIES, True),
        ({**ALL_TIES, "offensiveness": "skip"}, False),  # "can't judge" is no answer to a check
        ({**ALL_TIES, "alignment": "1"}, False),
    ],
)
def test_identical_check_passes_only_when_every_answer_is_both_equally(
    study, pair_factory, rater_india, answers, passed
):
    _study_with(study, attention_check_rate=0.5)
    pair_factory()
    pair_factory()
    serve_and_vote(study, rater_india)
    check, vote = serve_and_vote(study, rater_india, answers)
    assert check.kind == AssignmentKind.IDENTICAL_CHECK
    assert vote.kind == AssignmentKind.IDENTICAL_CHECK
    assert vote.check_passed is passed
    participation = _participation(study, rater_india)
    assert (participation.checks_passed, participation.checks_failed) == (
        (1, 0) if passed else (0, 1)
    )


def _to_repeat_check(study, rater, first_answers):
    """Vote on three pairs (the second vote answers an identical check), then serve the repeat."""
    _study_with(study, attention_check_rate=0.5)
    first, _ = serve_and_vote(study, rater, first_answers)
    serve_and_vote(study, rater, ALL_TIES)  # the identical check
    serve_and_vote(study, rater)
    repeat = assignment_for_rater(study=study, rater=rater)
    assert repeat.kind == AssignmentKind.REPEAT_CHECK
    return first, repeat


def test_repeat_check_shows_an_earlier_pair_with_sides_swapped(study, pair_factory, rater_india):
    for _ in range(3):
        pair_factory()
    _study_with(study, attention_check_rate=0.5, min_seconds_per_pair=0)
    client = client_for(rater_india)
    url = reverse("ratings:rate", args=["test-study"])
    first_page = client.get(url).content.decode()
    first = Assignment.objects.get(pk=served_assignment_id(first_page))
    first_urls = image_urls(first_page)
    client.post(
        reverse("ratings:vote", args=["test-study"]),
        {"assignment": first.pk, **form_answers(ALL_LEFT)},
    )
    for answers in (ALL_TIES, SCREEN_ANSWERS):
        page = client.get(url).content.decode()
        client.post(
            reverse("ratings:vote", args=["test-study"]),
            {"assignment": served_assignment_id(page), **form_answers(answers)},
        )
    page = client.get(url).content.decode()
    repeat = Assignment.objects.get(pk=served_assignment_id(page))
    assert repeat.kind == AssignmentKind.REPEAT_CHECK
    assert repeat.repeat_of_id == first.pk
    assert repeat.pair_id == first.pair_id
    assert repeat.shown_left != first.shown_left
    # The same images, sides swapped, under URLs of their own: none repeats the first pair's.
    shown = [image_of(url) for url in image_urls(page)]
    assert shown == [image_of(url) for url in reversed(first_urls)]
    assert not set(image_urls(page)) & set(first_urls)


@pytest.mark.parametrize(
    ("again", "passed"),
    [
        (ALL_RIGHT, True),  # the same variant each time: it moved to the right
        (ALL_LEFT, False),  # the same screen side: the answers follow the side, not the image
        ({**ALL_RIGHT, "stereotype": "tie"}, False),
    ],
)
def test_repeat_check_fails_on_inconsistent_answers(
    study, pair_factory, rater_india, again, passed
):
    for _ in range(3):
        pair_factory()
    first, repeat = _to_repeat_check(study, rater_india, ALL_LEFT)
    assert repeat.shown_left == (Side.B if first.shown_left == Side.A else Side.A)
    before = _participation(study, rater_india).checks_failed
    repeat.refresh_from_db()
    vote = vote_cast(
        rater=rater_india,
        assignment_id=repeat.pk,
        answers=again,
        now=repeat.served_at + timedelta(seconds=10),
    )
    assert vote.kind == AssignmentKind.REPEAT_CHECK
    assert vote.check_passed is passed
    assert _participation(study, rater_india).checks_failed == before + (0 if passed else 1)
    # The earlier vote and the repeat are both kept.
    assert Vote.objects.filter(rater=rater_india, pair=first.pair).count() == 2


def test_repeat_check_compares_only_answers_given_both_times(study, pair_factory, rater_india):
    for _ in range(3):
        pair_factory()
    earlier = {**ALL_LEFT, "offensiveness": "skip"}
    _, repeat = _to_repeat_check(study, rater_india, earlier)
    repeat.refresh_from_db()
    vote = vote_cast(
        rater=rater_india,
        assignment_id=repeat.pk,
        answers={**ALL_RIGHT, "alignment": "skip", "offensiveness": "1"},
        now=repeat.served_at + timedelta(seconds=10),
    )
    assert vote.check_passed is True


def test_repeat_check_with_nothing_to_compare_counts_neither_way(study, pair_factory, rater_india):
    for _ in range(3):
        pair_factory()
    _, repeat = _to_repeat_check(study, rater_india, ALL_LEFT)
    before = _participation(study, rater_india)
    repeat.refresh_from_db()
    vote = vote_cast(
        rater=rater_india,
        assignment_id=repeat.pk,
        answers=dict.fromkeys(SCREEN_ANSWERS, "skip"),
        now=repeat.served_at + timedelta(seconds=10),
    )
    assert vote.check_passed is None
    after = _participation(study, rater_india)
    assert (after.checks_passed, after.checks_failed) == (
        before.checks_passed,
        before.checks_failed,
    )


def test_vote_faster_than_the_minimum_fails_the_time_check(study, pair_factory, rater_india):
    _study_with(study, attention_check_rate=0, min_seconds_per_pair=3)
    pair_factory()
    pair_factory()
    _, slow = serve_and_vote(study, rater_india, seconds=3.5)
    assert slow.too_fast is False
    assert _participation(study, rater_india).checks_failed == 0
    _, fast = serve_and_vote(study, rater_india, seconds=2.9)
    assert fast.too_fast is True
    assert fast.time_on_task_ms == 2900
    assert _participation(study, rater_india).checks_failed == 1


def test_passed_check_answered_too_fast_counts_as_failed(study, pair_factory, rater_india):
    _study_with(study, attention_check_rate=0.5)
    pair_factory()
    pair_factory()
    serve_and_vote(study, rater_india)
    _, vote = serve_and_vote(study, rater_india, ALL_TIES, seconds=1)
    assert vote.check_passed is True and vote.too_fast is True
    participation = _participation(study, rater_india)
    assert (participation.checks_passed, participation.checks_failed) == (0, 1)


def test_time_on_task_starts_when_a_reserved_pair_is_shown(study, pair_factory, rater_india):
    _study_with(study, attention_check_rate=0)
    pair_factory()
    pair_factory()
    client = client_for(rater_india)
    url = reverse("ratings:rate", args=["test-study"])
    page = client.get(url).content.decode()
    current = Assignment.objects.get(pk=served_assignment_id(page))
    upcoming = Assignment.objects.exclude(pk=current.pk).get(rater=rater_india)
    # The next pair waited, reserved, while this one was rated: its clock has not started.
    Assignment.objects.filter(pk=upcoming.pk).update(served_at=current.served_at)
    voted_at = current.served_at + timedelta(seconds=30)
    vote_cast(rater=rater_india, assignment_id=current.pk, answers=SCREEN_ANSWERS, now=voted_at)
    upcoming.refresh_from_db()
    assert upcoming.served_at == voted_at


def test_rater_is_flagged_once_failed_checks_exceed_the_allowance(study, pair_factory, rater_india):
    _study_with(study, attention_check_rate=0, max_failed_checks=1)
    for _ in range(3):
        pair_factory()
    serve_and_vote(study, rater_india, seconds=1)
    assert _participation(study, rater_india).flagged is False
    serve_and_vote(study, rater_india, seconds=1)
    participation = _participation(study, rater_india)
    assert participation.checks_failed == 2
    assert participation.flagged is True
    serve_and_vote(study, rater_india, seconds=10)  # a good vote later does not unflag
    assert _participation(study, rater_india).flagged is True


def test_flagged_votes_stay_in_the_export_and_leave_the_scores(
    study, pair_factory, rater_india, rater_tamil
):
    _study_with(study, attention_check_rate=0.5, max_failed_checks=0)
    for _ in range(2):
        pair_factory()
    _, good = serve_and_vote(study, rater_tamil)
    _, good_check = serve_and_vote(study, rater_tamil, ALL_TIES)
    _, flagged_vote = serve_and_vote(study, rater_india)
    _, failed_check = serve_and_vote(study, rater_india, ALL_LEFT)
    assert _participation(study, rater_india).flagged
    assert not _participation(study, rater_tamil).flagged

    rows = list(csv.DictReader(io.StringIO("".join(votes_long_csv(study=study)))))
    by_vote = {}
    for row in rows:
        by_vote.setdefault(int(row["vote_id"]), set()).add(
            (row["rater_flagged"], row["attention_check"])
        )
    assert by_vote == {
        good.pk: {("false", "")},
        good_check.pk: {("false", "identical")},
        flagged_vote.pk: {("true", "")},
        failed_check.pk: {("true", "identical")},
    }

    assert set(votes_for_scoring(study=study)) == {good}
    assert set(votes_for_scoring(study=study, include_flagged=True)) == {good, flagged_vote}


def test_the_same_vote_posted_twice_stores_one_row(study, pair_factory, rater_india):
    pair_factory()
    client = client_for(rater_india)
    page = client.get(reverse("ratings:rate", args=["test-study"])).content.decode()
    data = {"assignment": served_assignment_id(page), **form_answers(SCREEN_ANSWERS)}
    url = reverse("ratings:vote", args=["test-study"])
    assert client.post(url, data).status_code == 302
    # Resent (the first answer lost on its way): the rater goes on; still one row.
    again = client.post(url, data)
    assert again.status_code == 302
    assert Vote.objects.filter(rater=rater_india).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_vote_posted_twice_at_once_stores_one_row(study, pair_factory, rater_india):
    _study_with(study, attention_check_rate=0, min_seconds_per_pair=60)
    pair_factory()
    assignment = assignment_for_rater(study=study, rater=rater_india)
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def post() -> None:
        start.wait()
        try:
            outcomes.append(
                vote_cast(rater=rater_india, assignment_id=assignment.pk, answers=SCREEN_ANSWERS)
            )
        except VoteRefused as refusal:
            outcomes.append(refusal.status)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(type(outcome).__name__ for outcome in outcomes) == ["Vote", "int"]
    assert 409 in outcomes
    assert Vote.objects.filter(rater=rater_india).count() == 1
    # The losing request counted nothing: one too-fast vote, one failed check.
    assert _participation(study, rater_india).checks_failed == 1


def test_vote_for_a_pair_not_served_to_the_rater_is_refused(
    study, pair_factory, rater_india, rater_tamil
):
    pair_factory()
    url = reverse("ratings:vote", args=["test-study"])
    others = assignment_for_rater(study=study, rater=rater_tamil)
    for assignment_id in [others.pk, uuid.uuid4(), "not-a-uuid"]:
        response = client_for(rater_india).post(
            url, {"assignment": assignment_id, **form_answers(SCREEN_ANSWERS)}
        )
        assert response.status_code == 404
        assert "This pair was not served to you." in response.content.decode()
    assert not Vote.objects.exists()


def test_anonymous_vote_is_refused(study):
    response = Client().post(reverse("ratings:vote", args=["test-study"]), {})
    assert response.status_code == 302
    assert not Vote.objects.exists()


def test_vote_in_a_study_closed_meanwhile_is_refused_with_a_reason(
    study, pair_factory, rater_india
):
    pair_factory()
    client = client_for(rater_india)
    page = client.get(reverse("ratings:rate", args=["test-study"])).content.decode()
    type(study).objects.filter(pk=study.pk).update(active=False)
    response = client.post(
        reverse("ratings:vote", args=["test-study"]),
        {"assignment": served_assignment_id(page), **form_answers(SCREEN_ANSWERS)},
    )
    assert response.status_code == 409
    assert "This study is closed." in response.content.decode()
    assert not Vote.objects.exists()
