"""One outcome per assignment (issue 14): a vote and a skip exclude each other in the
database; a resent vote goes on, different answers get a true 409; control characters get
400; the database unavailable gets 503 with Retry-After, and nothing is stored twice."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from django.db import close_old_connections, connection, connections
from django.urls import reverse

from ratings.models import Assignment, Participation, Vote
from ratings.voting import services as voting_services
from tests.rating_pages import SCREEN_ANSWERS, client_for, form_answers, served_assignment_id

RATE = reverse("ratings:rate", args=["test-study"])
VOTE = reverse("ratings:vote", args=["test-study"])
SKIP = reverse("ratings:skip", args=["test-study"])
JSON = {"HTTP_ACCEPT": "application/json"}


def _study(study, **fields) -> None:
    fields = {"attention_check_rate": 0, "min_seconds_per_pair": 0, **fields}
    type(study).objects.filter(pk=study.pk).update(**fields)


def _at_once(*calls):
    """Run the calls in threads released together; return their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait()
            results[index] = call()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_a_vote_and_a_skip_at_once_leave_one_outcome(study, pair_factory, rater_india):
    _study(study, pairs_per_rater=40)
    for _ in range(12):
        pair_factory()
    voter, skipper = client_for(rater_india), client_for(rater_india)
    outcomes = []
    for _ in range(10):
        assignment = served_assignment_id(voter.get(RATE).content.decode())
        vote_data = {"assignment": assignment, **form_answers(SCREEN_ANSWERS)}
        skip_data = {"assignment": assignment, "reason": "unfamiliar"}
        voted, skipped = _at_once(
            lambda d=vote_data: voter.post(VOTE, d, **JSON),
            lambda d=skip_data: skipper.post(SKIP, d, **JSON),
        )
        row = Assignment.objects.get(pk=assignment)
        votes = Vote.objects.filter(rater=rater_india, pair_id=row.pair_id).count()
        # Exactly one of them succeeded, and the database holds exactly that one.
        assert sorted([voted.status_code, skipped.status_code]) == [200, 409]
        if voted.status_code == 200:
            assert votes == 1 and row.skipped_at is None and row.voted_at is not None
            assert "already voted" in json.loads(skipped.content)["error"]
        else:
            assert votes == 0 and row.skipped_at is not None and row.voted_at is None
            assert "skipped" in json.loads(voted.content)["error"]
        outcomes.append(voted.status_code)
    assert Participation.objects.get(rater=rater_india).checks_failed == 0


@pytest.mark.django_db(transaction=True)
def test_ten_identical_votes_at_once_store_one_and_all_go_on(study, pair_factory, rater_india):
    _study(study, pairs_per_rater=10)
    for _ in range(4):
        pair_factory()
    clients = [client_for(rater_india) for _ in range(10)]
    assignment = served_assignment_id(clients[0].get(RATE).content.decode())
    data = {"assignment": assignment, **form_answers(SCREEN_ANSWERS)}
    answers = _at_once(*[lambda c=c: c.post(VOTE, data, **JSON) for c in clients])
    # Every post is answered with a next pair, and one vote is stored.
    assert [answer.status_code for answer in answers] == [200] * 10
    assert all(json.loads(answer.content)["assignment"] != assignment for answer in answers)
    assert Vote.objects.filter(rater=rater_india).count() == 1


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        (VOTE, {**form_answers(SCREEN_ANSWERS), "comment": "fine\x00 image"}),
        (VOTE, {**form_answers(SCREEN_ANSWERS), "comment": "bell\x07"}),
        (SKIP, {"reason": "other", "note": "can't\x00 see"}),
    ],
)
def test_control_characters_are_refused_with_400_and_store_nothing(
    study, pair_factory, rater_india, url, extra
):
    _study(study)
    pair_factory()
    client = client_for(rater_india)
    assignment = served_assignment_id(client.get(RATE).content.decode())
    response = client.post(url, {"assignment": assignment, **extra}, **JSON)
    assert response.status_code == 400
    assert "control characters" in json.loads(response.content)["error"]
    row = Assignment.objects.get(pk=assignment)
    assert row.skipped_at is None and row.voted_at is None
    assert not Vote.objects.exists()
    # Line breaks and tabs are no control characters to refuse.
    fine = {**form_answers(SCREEN_ANSWERS), "comment": "two\r\nlines\tand a tab"}
    assert client.post(VOTE, {"assignment": assignment, **fine}, **JSON).status_code == 200


def _backend_terminate(pid: int) -> None:
    """End one PostgreSQL backend from another connection, as a restart or an admin would."""
    with connections.create_connection("default").cursor() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
        other.connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_vote_stored_before_the_next_pair_failed_is_resent_to_the_next_pair(
    study, pair_factory, rater_india, monkeypatch
):
    _study(study, pairs_per_rater=10)
    for _ in range(4):
        pair_factory()
    client = client_for(rater_india)
    assignment = served_assignment_id(client.get(RATE).content.decode())
    data = {"assignment": assignment, **form_answers(SCREEN_ANSWERS)}
    reserve = voting_services.rating_next
    terminated = []

    def database_restarts_once(**kwargs):
        # The fault, for real: PostgreSQL ends this request's connection after the vote was
        # stored and before the next pair is reserved.
        if not terminated:
            terminated.append(connection.connection.info.backend_pid)
            _backend_terminate(terminated[0])
        return reserve(**kwargs)

    monkeypatch.setattr(voting_services, "rating_next", database_restarts_once)
    first = client.post(VOTE, data, **JSON)
    assert first.status_code == 503
    assert int(first["Retry-After"]) >= 1
    assert "try again" in json.loads(first.content)["error"]
    # What the end of a request does in a server: a broken connection is dropped.
    close_old_connections()
    assert connection.connection is None or connection.connection.info.backend_pid not in terminated
    assert Vote.objects.filter(rater=rater_india).count() == 1  # it was stored

    again = client.post(VOTE, data, **JSON)
    assert again.status_code == 200
    assert json.loads(again.content)["assignment"] != assignment
    assert Vote.objects.filter(rater=rater_india).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_vote_when_the_database_is_away_gets_503_not_an_html_500(
    study, pair_factory, rater_india, tmp_path
):
    _study(study)
    pair_factory()
    client = client_for(rater_india)
    assignment = served_assignment_id(client.get(RATE).content.decode())
    data = {"assignment": assignment, **form_answers(SCREEN_ANSWERS)}

    # The database away, for real: the connection is closed and the server's address leads
    # nowhere (a socket folder with no server, or a port nobody listens on).
    settings_dict = connection.settings_dict
    saved = dict(settings_dict)
    connection.close()
    if settings_dict["HOST"].startswith("/"):
        settings_dict["HOST"] = str(tmp_path)
    else:
        settings_dict["PORT"] = _closed_port()
    try:
        response = client.post(VOTE, data, **JSON)
    finally:
        connection.close()
        settings_dict.update(saved)
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"]
    assert not Vote.objects.exists()
    # Back: the same vote is stored once.
    assert client.post(VOTE, data, **JSON).status_code == 200
    assert Vote.objects.count() == 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
