"""Helpers for tests of the rating page: a signed-in client, what a page served, a vote."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.http import HttpResponse
from django.test import Client
from django.urls import NoReverseMatch, clear_url_caches, path, reverse

from ratings.assignment.services import assignment_for_rater
from ratings.models import Assignment, Rater, Study, Vote
from ratings.voting.services import vote_cast

SCREEN_ANSWERS = {
    "alignment": "1",
    "representation": "2",
    "stereotype": "tie",
    "offensiveness": "skip",
}


def client_for(rater: Rater) -> Client:
    client = Client()
    client.force_login(rater.user)
    return client


def served_assignment_id(page: str) -> str:
    return re.search(r'name="assignment" value="([0-9a-f-]+)"', page).group(1)


def image_urls(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def prefetch_urls(page: str) -> list[str]:
    return re.findall(r'<link rel="prefetch" as="image" href="([^"]+)"', page)


def shown_url(image) -> str:
    return image.preview.url if image.preview else image.file.url


def form_answers(answers: dict[str, str]) -> dict[str, str]:
    return {f"answer_{key}": value for key, value in answers.items()}


def vote_through_page(client: Client, study: Study, answers=SCREEN_ANSWERS) -> Assignment:
    """Open the rating page, vote on what it serves, and return that assignment."""
    page = client.get(reverse("ratings:rate", args=[study.slug])).content.decode()
    assignment = Assignment.objects.get(pk=served_assignment_id(page))
    response = client.post(
        reverse("ratings:vote", args=[study.slug]),
        {"assignment": assignment.pk, **form_answers(answers)},
    )
    assert response.status_code == 302, response.content.decode()
    return assignment


def serve_and_vote(
    study: Study, rater: Rater, answers=SCREEN_ANSWERS, *, seconds: float = 10
) -> tuple[Assignment, Vote]:
    """Serve the rater their current assignment and vote `seconds` after it was shown."""
    assignment = assignment_for_rater(study=study, rater=rater)
    assert assignment is not None
    assignment.refresh_from_db()
    vote = vote_cast(
        rater=rater,
        assignment_id=assignment.pk,
        answers=answers,
        now=assignment.served_at + timedelta(seconds=seconds),
    )
    return assignment, vote


@pytest.fixture
def completion_route():
    """Make sure `ratings:complete` resolves; the entry work owns it, a stub stands in if absent.

    Rating only needs to know where to send a rater whose quota is met; what the completion
    page says is tested with the entry pages.
    """
    try:
        reverse("ratings:complete", args=["x"])
    except NoReverseMatch:
        pass
    else:
        yield False
        return
    from ratings import urls

    stub = path(
        "s/<slug:slug>/done/",
        lambda request, slug: HttpResponse("Completion page stand-in"),
        name="complete",
    )
    urls.urlpatterns.append(stub)
    clear_url_caches()
    try:
        yield True
    finally:
        urls.urlpatterns.remove(stub)
        clear_url_caches()


def image_of(url: str):
    """Return the stored Image a per-impression URL shows (what the server resolves it to)."""
    from ratings.voting.images import impression_token

    token = url.rstrip("/").rsplit("/", 1)[1]
    assignment = Assignment.objects.select_related("pair__image_a", "pair__image_b").get(
        pk=uuid.UUID(hex=token[:32])
    )
    for side in ("a", "b"):
        if impression_token(assignment.pk, side) == token:
            return getattr(assignment.pair, f"image_{side}")
    raise AssertionError(f"{url} names no image of its assignment")
