"""The app's URLs plus three floor views, served by bench/votes.py's gunicorn only.

They bound from below what any vote view can cost on the same server, so that the vote's
ratio to /healthz can be read against what is reachable at all: each reads the signed-in
session's user and the posted form as the vote view does, then stores nothing, one row, or a
vote-shaped row with its four answers (one prepared statement, autocommit, as the rating
statements run), and answers with a small JSON object. Nothing else about a vote is done:
no rater state, no validation, no coverage, no reservation of the next pair.
"""

from __future__ import annotations

from django.contrib.auth import SESSION_KEY
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.http import require_POST

from bench._support import FLOORS
from ratings.sql import sql_cursor
from webapp.urls import urlpatterns as app_urlpatterns


def _posted(request: HttpRequest) -> tuple[int, str, dict[str, str]]:
    user_id = int(request.session[SESSION_KEY])
    answers = {
        key.removeprefix("answer_"): value
        for key, value in request.POST.items()
        if key.startswith("answer_")
    }
    return user_id, request.POST.get("assignment", ""), answers


def _answer(user_id: int, answers: dict) -> HttpResponse:
    response = JsonResponse({"user": user_id, "answers": len(answers)})
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def floor_post(request: HttpRequest) -> HttpResponse:
    """A signed-in POST that stores nothing."""
    user_id, _, answers = _posted(request)
    return _answer(user_id, answers)


@require_POST
def floor_row(request: HttpRequest) -> HttpResponse:
    """A signed-in POST that stores one row."""
    user_id, assignment, answers = _posted(request)
    with sql_cursor() as cursor:
        cursor.execute(
            "INSERT INTO bench_floor_vote (user_id, assignment, created_at) "
            "VALUES (%(user)s, %(assignment)s, now())",
            {"user": user_id, "assignment": assignment},
        )
    return _answer(user_id, answers)


@require_POST
def floor_vote_row(request: HttpRequest) -> HttpResponse:
    """A signed-in POST that stores a vote row and its answers in one statement."""
    user_id, assignment, answers = _posted(request)
    with sql_cursor() as cursor:
        cursor.execute(
            "WITH vote AS (INSERT INTO bench_floor_vote (user_id, assignment, created_at) "
            "VALUES (%(user)s, %(assignment)s, now()) RETURNING id) "
            "INSERT INTO bench_floor_answer (vote_id, criterion, choice) "
            "SELECT vote.id, answer.criterion, answer.choice FROM vote, "
            "unnest(CAST(%(criteria)s AS text[]), CAST(%(choices)s AS text[])) "
            "AS answer(criterion, choice)",
            {
                "user": user_id,
                "assignment": assignment,
                "criteria": list(answers),
                "choices": list(answers.values()),
            },
        )
    return _answer(user_id, answers)


_VIEWS = {"floor-post": floor_post, "floor-row": floor_row, "floor-vote-row": floor_vote_row}

urlpatterns = [
    *app_urlpatterns,
    *(path(FLOORS[name].removeprefix("/"), view) for name, view in _VIEWS.items()),
]
