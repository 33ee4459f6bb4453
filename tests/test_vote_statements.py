"""How many statements a vote and the rating page cost, pinned so that they cannot creep back.

The last measurement before these were pinned: 37 statements for the page, 21 for the vote
(bench/RESULTS.md). The requests run here as in production, in autocommit (a transactional test
database), so BEGIN and COMMIT are what a server sends; sessions are database sessions, as in a
deployment without CACHE_URL (with one, the session read goes to Redis and drops out).
"""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.rating_pages import SCREEN_ANSWERS, client_for, form_answers, served_assignment_id

pytestmark = pytest.mark.django_db(transaction=True)

RATE = reverse("ratings:rate", args=["test-study"])
VOTE = reverse("ratings:vote", args=["test-study"])

# A vote answered with the next pair: the session, the rater's state, the vote (one INSERT …
# WITH, answers, coverage, reservation, participation and the next pair's clock included),
# then the reservation of the pair after: the window read with its lock, the count and insert.
VOTE_STATEMENTS = [
    "django_session",
    "WITH study AS",
    "INSERT INTO ratings_vote",
    "BEGIN",
    "ratings_paircoverage",
    "INSERT INTO ratings_assignment",
    "COMMIT",
]
# The page with both reservations held: the session, the state, the renewal of both
# reservations, and the user (the page's header asks whether someone is signed in).
PAGE_STATEMENTS = ["django_session", "WITH study AS", "UPDATE ratings_assignment", "auth_user"]


def _statements(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in queries.captured_queries]


def _matches(statements: list[str], expected: list[str]) -> bool:
    return len(statements) == len(expected) and all(
        part in sql for sql, part in zip(statements, expected, strict=True)
    )


@pytest.fixture
def rating(study, pair_factory, rater_india):
    type(study).objects.filter(pk=study.pk).update(
        pairs_per_rater=10, attention_check_rate=0, min_seconds_per_pair=0
    )
    for _ in range(6):
        pair_factory()
    client = client_for(rater_india)
    first = served_assignment_id(client.get(RATE).content.decode())
    return client, first


def test_a_vote_is_seven_statements(rating):
    client, assignment = rating
    for _ in range(2):  # the steady state: a pair on screen, the next one reserved
        with CaptureQueriesContext(connection) as queries:
            response = client.post(
                VOTE,
                {"assignment": assignment, **form_answers(SCREEN_ANSWERS)},
                HTTP_ACCEPT="application/json",
            )
        assert response.status_code == 200
        statements = _statements(queries)
        assert _matches(statements, VOTE_STATEMENTS), "\n".join(statements)
        assignment = json.loads(response.content)["assignment"]


def test_the_rating_page_is_four_statements(rating):
    client, _ = rating
    with CaptureQueriesContext(connection) as queries:
        page = client.get(RATE)
    assert page.status_code == 200
    statements = _statements(queries)
    assert _matches(statements, PAGE_STATEMENTS), "\n".join(statements)


def test_the_count_test_fails_on_one_statement_more(rating):
    """The pins above can fail: a statement more or a different one does not match."""
    client, _ = rating
    with CaptureQueriesContext(connection) as queries:
        client.get(RATE)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    statements = _statements(queries)
    assert not _matches(statements, PAGE_STATEMENTS)
    assert not _matches(statements[:-2] + statements[-1:], PAGE_STATEMENTS)


@pytest.fixture
def redis_sessions(settings):
    """Sessions as with CACHE_URL set: read from Redis, written through to the database."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": settings.CELERY_BROKER_URL,
            "KEY_PREFIX": "test-sessions",
        }
    }
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"


@pytest.mark.usefixtures("redis_sessions")
def test_with_sessions_in_redis_a_vote_reads_no_session_row(study, pair_factory, rater_india):
    type(study).objects.filter(pk=study.pk).update(attention_check_rate=0)
    for _ in range(3):
        pair_factory()
    client = client_for(rater_india)
    assignment = served_assignment_id(client.get(RATE).content.decode())
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            VOTE,
            {"assignment": assignment, **form_answers(SCREEN_ANSWERS)},
            HTTP_ACCEPT="application/json",
        )
    assert response.status_code == 200
    statements = _statements(queries)
    assert _matches(statements, VOTE_STATEMENTS[1:]), "\n".join(statements)


@pytest.mark.usefixtures("redis_sessions")
def test_a_session_ended_with_redis_sessions_is_refused_afterwards(
    study, pair_factory, rater_india
):
    pair_factory()
    client = client_for(rater_india)
    assert client.get(RATE).status_code == 200
    stolen = client.cookies["sessionid"].value
    client.post(reverse("ratings:stop", args=["test-study"]))  # signs out: the session ends
    replayed = client_for(rater_india)
    replayed.cookies["sessionid"] = stolen
    response = replayed.get(RATE)
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
