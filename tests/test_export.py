"""The researchers' CSV export of votes at its first address: complete, pseudonymous, and for
researchers only (the other tables and formats: tests/test_exports_*.py)."""

from __future__ import annotations

import csv
import io

from django.test import Client
from django.urls import reverse

from ratings.assignment.services import assignment_next
from ratings.models import Rater
from ratings.voting.services import vote_cast
from tests.test_rating_views import ALL_ANSWERS


def _vote(rater: Rater, study) -> None:
    assignment = assignment_next(study=study, rater=rater)
    answers = {key.removeprefix("answer_"): value for key, value in ALL_ANSWERS.items()}
    vote_cast(rater=rater, assignment_id=assignment.pk, answers=answers)


def _export(user, slug: str = "test-study"):
    client = Client()
    client.force_login(user)
    return client.get(reverse("ratings:export_votes_csv", args=[slug]))


def test_export_holds_one_row_per_vote_and_criterion(pair_factory, rater_india, researcher):
    pair = pair_factory()
    _vote(rater_india, pair.study)
    response = _export(researcher)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(response.streaming_content).decode()
    assert text.splitlines()[0] == (
        "rater_id,cohort,item_id,variant_a,variant_b,criterion,choice,prompt,category,"
        "created_at,vote_id,study,prompt_cohort,seed,fingerprint_a,fingerprint_b,shown_left,"
        "time_on_task_ms,rater_flagged,attention_check,source"
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["criterion"] for row in rows] == [
        "alignment",
        "representation",
        "stereotype",
        "offensiveness",
    ]
    assert {row["item_id"] for row in rows} == {str(pair.pk)}
    assert {row["vote_id"] for row in rows} == {str(pair.votes.get().pk)}
    assert {row["prompt"] for row in rows} == {pair.prompt.text}
    assert {row["source"] for row in rows} == {"browser"}
    assert {row["variant_a"] for row in rows} == {"tiny-base"}
    assert {row["variant_b"] for row in rows} == {"tiny-lora"}
    assert {row["seed"] for row in rows} == {str(pair.seed)}
    assert [row["choice"] for row in rows][2:] == ["tie", "skip"]


def test_export_never_reveals_who_a_rater_is(pair_factory, rater_india, researcher):
    pair = pair_factory()
    _vote(rater_india, pair.study)
    text = b"".join(_export(researcher).streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    pseudonyms = {row["rater_id"] for row in rows}
    assert len(pseudonyms) == 1
    (pseudonym,) = pseudonyms
    assert pseudonym.startswith("r_")
    assert pseudonym not in {str(rater_india.pk), str(rater_india.user.pk)}
    assert rater_india.user.username not in text


def test_export_shows_no_cohort_label_held_by_fewer_than_k_raters(
    pair_factory, rater_india, researcher
):
    pair = pair_factory()
    _vote(rater_india, pair.study)  # one rater, k = 5
    rows = list(
        csv.DictReader(io.StringIO(b"".join(_export(researcher).streaming_content).decode()))
    )
    assert {row["cohort"] for row in rows} == {""}
    assert {row["prompt_cohort"] for row in rows} == {"india"}


def test_raters_and_outsiders_get_no_export(pair_factory, rater_india, outsider):
    pair = pair_factory()
    _vote(rater_india, pair.study)
    assert _export(outsider).status_code == 403
    assert _export(rater_india.user).status_code == 403
    anonymous = Client().get(reverse("ratings:export_votes_csv", args=["test-study"]))
    assert anonymous.status_code == 302
