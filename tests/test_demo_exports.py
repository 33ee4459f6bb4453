"""The demo as a new user meets it: its own setup, a vote through the rating page, every export.

Runs on whatever PostgreSQL the suite runs on: the embedded server unless DATABASE_URL is set,
which is what `make demo` uses too. Every export the researcher can download, in every
format, and every dataset card, must answer 200 and hold the vote cast through the page.
"""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from generation.models import Prompt
from generation.rendering.tasks import render_prompt
from ratings.models import Study, Vote
from tests.rating_pages import form_answers, served_assignment_id
from webapp.management.commands.demo_setup import DEMO_PEOPLE

TABLES = ("votes_long", "votes_wide", "scores", "splits")
FORMATS = ("csv", "jsonl", "parquet")


def _signed_in(username: str) -> Client:
    client = Client()
    assert client.login(username=username, password=DEMO_PEOPLE[username][0])
    return client


@pytest.fixture
def demo_study(settings, tiny_model, django_capture_on_commit_callbacks) -> Study:
    """Run the demo's setup on the tiny model and render two of its prompts."""
    settings.POLYPHONY_TINY_MODEL_DIR = tiny_model.base.parent
    with django_capture_on_commit_callbacks(execute=False):
        call_command(
            "demo_setup", "--seeds", "1", "--steps", "2", "--no-showcase", stdout=io.StringIO()
        )
    study = Study.objects.get(slug="demo")
    for prompt in Prompt.objects.filter(batch__study=study).order_by("pk")[:2]:
        render_prompt(prompt.pk)
    Study.objects.filter(pk=study.pk).update(
        attention_check_rate=0,
        min_seconds_per_pair=0,
        min_cohort_size=1,
        score_permutations=50,
        score_bootstrap=50,
    )
    return study


def _vote_as_the_demo_rater(study: Study) -> Vote:
    client = _signed_in("rater")
    client.post(reverse("ratings:consent", args=[study.slug]), {"decision": "accept"})
    cohort = study.cohorts.get(path="india")
    client.post(reverse("ratings:cohorts", args=[study.slug]), {"cohorts": [cohort.pk]})
    page = client.get(reverse("ratings:rate", args=[study.slug]))
    assert page.status_code == 200, page.content.decode()[:500]
    assignment = served_assignment_id(page.content.decode())
    answers = {"alignment": "1", "representation": "2", "stereotype": "tie", "offensiveness": "1"}
    response = client.post(
        reverse("ratings:vote", args=[study.slug]),
        {"assignment": assignment, **form_answers(answers)},
    )
    assert response.status_code in (200, 302), response.content.decode()[:500]
    return Vote.objects.get(study=study, rater__user__username="rater")


def _rows(body: bytes, fmt: str) -> list[dict]:
    if fmt == "csv":
        import csv

        return list(csv.DictReader(io.StringIO(body.decode())))
    if fmt == "jsonl":
        return [json.loads(line) for line in body.decode().splitlines() if line]
    return pq.read_table(io.BytesIO(body)).to_pylist()


@pytest.mark.django_db(transaction=True)
def test_every_export_of_the_demo_downloads_with_a_vote_cast_through_the_page(demo_study):
    vote = _vote_as_the_demo_rater(demo_study)
    researcher = _signed_in("researcher")
    researcher.post(reverse("ratings:dashboard_recompute", args=[demo_study.slug]))
    from ratings.results.services import scores_compute

    scores_compute(study=demo_study)

    for table in TABLES:
        for fmt in FORMATS:
            url = reverse("ratings:export", args=[demo_study.slug, table, fmt])
            response = researcher.get(url)
            assert response.status_code == 200, (url, response.status_code)
            rows = _rows(b"".join(response.streaming_content), fmt)
            assert rows, (table, fmt)
            if table == "votes_long":
                assert {str(row["vote_id"]) for row in rows} == {str(vote.pk)}
                assert {row["criterion"] for row in rows} == {
                    "alignment",
                    "representation",
                    "stereotype",
                    "offensiveness",
                }
            elif table == "votes_wide":
                assert [str(row["vote_id"]) for row in rows] == [str(vote.pk)]
            else:  # the scores and the split report count the vote's rater
                # (a coherence row of the split report is empty where no vote qualifies)
                counted = [
                    int(row["n_raters"])
                    for row in rows
                    if row["cohort"] == "india" and row["n_raters"] not in ("", None)
                ]
                assert counted and set(counted) == {1}, (table, fmt)
        card = researcher.get(reverse("ratings:export_card", args=[demo_study.slug, table]))
        assert card.status_code == 200 and b"#" in card.content

    legacy = researcher.get(reverse("ratings:export_votes_csv", args=[demo_study.slug]))
    assert legacy.status_code == 200
    assert str(vote.pk) in b"".join(legacy.streaming_content).decode()

    token_client = Client()
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=vote.rater.user.__class__.objects.get(username="researcher"))
    api = token_client.get(
        reverse("ratings_api:study_export", args=[demo_study.slug, "votes_long", "csv"]),
        HTTP_AUTHORIZATION=f"Token {token.key}",
    )
    assert api.status_code == 200
    assert str(vote.pk) in b"".join(api.streaming_content).decode()
