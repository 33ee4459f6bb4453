"""One request per vote: rate.js posts a vote and is answered with the next pair as JSON."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from ratings.models import Assignment, Side, Vote
from ratings.voting.images import impression_url
from tests.rating_pages import (
    SCREEN_ANSWERS,
    client_for,
    completion_route,  # noqa: F401  (a fixture)
    form_answers,
    image_urls,
    prefetch_urls,
    served_assignment_id,
)

RATE = reverse("ratings:rate", args=["test-study"])
VOTE = reverse("ratings:vote", args=["test-study"])
SKIP = reverse("ratings:skip", args=["test-study"])
JSON = {"HTTP_ACCEPT": "application/json"}


def _study(study, **fields) -> None:
    fields = {"attention_check_rate": 0, "min_seconds_per_pair": 0, **fields}
    type(study).objects.filter(pk=study.pk).update(**fields)


def _post(client, url, data) -> tuple[int, dict]:
    response = client.post(url, data, **JSON)
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    return response.status_code, json.loads(response.content)


def _screen_urls(assignment: Assignment) -> list[str]:
    urls = [impression_url("test-study", assignment.pk, side) for side in Side.values]
    return urls if assignment.shown_left == Side.A else urls[::-1]


def test_a_vote_is_answered_with_the_pair_whose_images_were_fetched_ahead(
    study, pair_factory, rater_tamil
):
    _study(study, pairs_per_rater=10)
    for _ in range(4):
        pair_factory()
    client = client_for(rater_tamil)
    page = client.get(RATE).content.decode()
    first = served_assignment_id(page)
    fetched_ahead = prefetch_urls(page)

    status, answer = _post(client, VOTE, {"assignment": first, **form_answers(SCREEN_ANSWERS)})
    assert status == 200
    upcoming = Assignment.objects.select_related("pair").get(pk=answer["assignment"])
    assert str(upcoming.pk) != first and upcoming.rater == rater_tamil
    # The next pair is the one fetched ahead, in its own coin-tossed screen order.
    assert sorted(answer["images"]) == sorted(fetched_ahead)
    assert answer["images"] == _screen_urls(upcoming)
    assert answer["prompt"] == upcoming.pair.prompt.text
    assert [question["key"] for question in answer["questions"]] == [
        "alignment",
        "representation",
        "stereotype",
        "offensiveness",
    ]
    assert "Which image better represents India?" in [q["text"] for q in answer["questions"]]
    assert answer["progress"] == {"done": 1, "quota": 10, "text": "1 of 10 pairs rated"}
    # And the pair after it is reserved now, its images listed for fetching ahead.
    after = Assignment.objects.exclude(pk__in=[first, upcoming.pk]).get(rater=rater_tamil)
    assert sorted(answer["prefetch"]) == sorted(_screen_urls(after))
    assert not set(answer["prefetch"]) & set(answer["images"])

    vote = Vote.objects.get(rater=rater_tamil)
    assert str(Assignment.objects.get(rater=rater_tamil, pair=vote.pair).pk) == first
    # The answer is the next page's content: voting on it goes on the same way.
    status, again = _post(
        client, VOTE, {"assignment": answer["assignment"], **form_answers(SCREEN_ANSWERS)}
    )
    assert status == 200 and again["assignment"] == str(after.pk)
    assert Vote.objects.filter(rater=rater_tamil).count() == 2


def test_the_page_after_votes_in_json_shows_what_the_json_said(study, pair_factory, rater_india):
    _study(study, pairs_per_rater=10)
    for _ in range(3):
        pair_factory()
    client = client_for(rater_india)
    first = served_assignment_id(client.get(RATE).content.decode())
    _, answer = _post(client, VOTE, {"assignment": first, **form_answers(SCREEN_ANSWERS)})
    # A reload (or the form without script) shows the same pair the JSON answered with.
    page = client.get(RATE).content.decode()
    assert served_assignment_id(page) == answer["assignment"]
    assert image_urls(page) == answer["images"]
    assert sorted(prefetch_urls(page)) == sorted(answer["prefetch"])


@pytest.mark.usefixtures("completion_route")
def test_the_vote_that_meets_the_quota_is_answered_with_the_completion_page(
    study, pair_factory, rater_india
):
    _study(study, pairs_per_rater=1)
    pair_factory()
    pair_factory()
    client = client_for(rater_india)
    assignment = served_assignment_id(client.get(RATE).content.decode())
    status, answer = _post(client, VOTE, {"assignment": assignment, **form_answers(SCREEN_ANSWERS)})
    assert status == 200
    assert answer["redirect"] == reverse("ratings:complete", args=["test-study"])
    assert "assignment" not in answer and "images" not in answer
    assert answer["progress"]["done"] == 1


def test_with_nothing_left_the_answer_sends_to_the_page_that_says_so(
    study, pair_factory, rater_india
):
    _study(study, pairs_per_rater=5)
    pair_factory()
    client = client_for(rater_india)
    assignment = served_assignment_id(client.get(RATE).content.decode())
    _, answer = _post(client, VOTE, {"assignment": assignment, **form_answers(SCREEN_ANSWERS)})
    assert answer["redirect"] == RATE
    assert "No pairs left for you" in client.get(answer["redirect"]).content.decode()


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"answer_offensiveness": None}, 400, "missing: offensiveness"),
        ({"assignment": "not-a-uuid"}, 404, "This pair was not served to you."),
    ],
)
def test_a_refused_vote_is_answered_in_json_with_its_reason(
    study, pair_factory, rater_india, change, status, reason
):
    pair_factory()
    client = client_for(rater_india)
    assignment = served_assignment_id(client.get(RATE).content.decode())
    data = {"assignment": assignment, **form_answers(SCREEN_ANSWERS), **change}
    answered, answer = _post(client, VOTE, {k: v for k, v in data.items() if v is not None})
    assert answered == status
    assert reason in answer["error"]
    assert answer["heading"] == "Your vote was not stored"
    assert not Vote.objects.exists()


def test_the_same_vote_posted_twice_in_json_stores_one_row_and_goes_on(
    study, pair_factory, rater_india
):
    _study(study)
    pair_factory()
    pair_factory()
    client = client_for(rater_india)
    data = {
        "assignment": served_assignment_id(client.get(RATE).content.decode()),
        **form_answers(SCREEN_ANSWERS),
    }
    status, first = _post(client, VOTE, data)
    assert status == 200
    # Resent (its answer was lost): the same next pair, and still one vote.
    status, again = _post(client, VOTE, data)
    assert status == 200 and again["assignment"] == first["assignment"]
    assert Vote.objects.filter(rater=rater_india).count() == 1


def test_a_skip_is_answered_with_the_next_pair_too(study, pair_factory, rater_india):
    _study(study)
    for _ in range(3):
        pair_factory()
    client = client_for(rater_india)
    page = client.get(RATE).content.decode()
    skipped = served_assignment_id(page)
    status, answer = _post(client, SKIP, {"assignment": skipped, "reason": "unfamiliar"})
    assert status == 200
    assert sorted(answer["images"]) == sorted(prefetch_urls(page))
    assert Assignment.objects.get(pk=skipped).skip_reason == "unfamiliar"
    status, refused = _post(client, SKIP, {"assignment": skipped, "reason": "unfamiliar"})
    assert status == 409 and "skipped this pair already" in refused["error"]


def test_without_script_the_vote_still_answers_with_the_page(study, pair_factory, rater_india):
    pair_factory()
    client = client_for(rater_india)
    assignment = served_assignment_id(client.get(RATE).content.decode())
    response = client.post(VOTE, {"assignment": assignment, **form_answers(SCREEN_ANSWERS)})
    assert response.status_code == 302 and response.url == RATE
    assert Vote.objects.filter(rater=rater_india).count() == 1
