"""Who reads what: the researchers' API and download links, for every role."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.contrib.auth.models import User
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from ratings.access import study_grant
from ratings.exports.tables import FORMATS, TABLES
from ratings.models import Pair, Study
from ratings.studies import study_create
from tests.test_exports_scores import _scored
from tests.test_exports_votes import _raters, _vote, imported_pair_make


@pytest.fixture
def imported_pair(study) -> Pair:
    return imported_pair_make(study)


PROMPT = 'a wedding in Chennai, "traditional"'


@pytest.fixture
def scored_study(study, imported_pair) -> Study:
    """The test study with votes of five Tamil raters and a finished score run."""
    for rater in _raters(study, "tamil", 5):
        _vote(
            study=study,
            rater=rater,
            pair=imported_pair,
            choices={"alignment": "a"},
            cohort_paths=["india:tamil"],
        )
    _scored(study, india=20, tamil=12, kerala=3)
    return study


@pytest.fixture
def other_study(db) -> Study:
    return study_create(name="Other study", slug="other-study")


@pytest.fixture
def other_researcher(other_study) -> User:
    user = User.objects.create_user(username="olga", password="x-olga")
    study_grant(study=other_study, user=user)
    return user


def _api_urls(slug: str) -> list[str]:
    urls = [
        reverse("ratings_api:study_detail", args=[slug]),
        reverse("ratings_api:study_scores", args=[slug]),
        reverse("ratings_api:study_splits", args=[slug]),
    ]
    for table in TABLES:
        urls.append(reverse("ratings_api:study_export_card", args=[slug, table]))
        urls += [reverse("ratings_api:study_export", args=[slug, table, fmt]) for fmt in FORMATS]
    return urls


def _web_urls(slug: str) -> list[str]:
    urls = [reverse("ratings:export_votes_csv", args=[slug])]
    for table in TABLES:
        urls.append(reverse("ratings:export_card", args=[slug, table]))
        urls += [reverse("ratings:export", args=[slug, table, fmt]) for fmt in FORMATS]
    return urls


def _session(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _token(user: User) -> Client:
    key = Token.objects.create(user=user).key
    return Client(HTTP_AUTHORIZATION=f"Token {key}")


def _body(response) -> bytes:
    if isinstance(response, StreamingHttpResponse):
        return b"".join(response.streaming_content)
    return response.content


def _assert_nothing(response, url: str, statuses: tuple[int, ...]) -> None:
    assert response.status_code in statuses, (url, response.status_code)
    body = _body(response)
    for secret in (b"r_", PROMPT.encode(), b"india:tamil", b"sd14-lora"):
        assert secret not in body, (url, secret)


def _study_slugs(client: Client) -> list[str]:
    response = client.get(reverse("ratings_api:study_list"))
    assert response.status_code == 200
    return [study["slug"] for study in response.json()]


def test_anonymous_users_get_nothing(scored_study):
    client = Client()
    for url in [*_api_urls(scored_study.slug), reverse("ratings_api:study_list")]:
        _assert_nothing(client.get(url), url, (401, 403))
    for url in _web_urls(scored_study.slug):
        response = client.get(url)
        _assert_nothing(response, url, (302,))
        assert response.url.startswith(reverse("login"))


def test_a_bad_token_gets_nothing(scored_study):
    client = Client(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    for url in _api_urls(scored_study.slug):
        _assert_nothing(client.get(url), url, (401, 403))


@pytest.mark.parametrize("who", ["rater", "outsider"])
def test_raters_and_outsiders_get_nothing(scored_study, rater_india, outsider, who):
    user = rater_india.user if who == "rater" else outsider
    for client in (_session(user), _token(user)):
        assert _study_slugs(client) == []
        for url in _api_urls(scored_study.slug):
            _assert_nothing(client.get(url), url, (404,))
    session = _session(user)
    for url in _web_urls(scored_study.slug):
        _assert_nothing(session.get(url), url, (403,))


def test_a_researchers_token_reads_only_the_studies_it_is_granted(
    scored_study, other_study, other_researcher
):
    client = _token(other_researcher)
    assert _study_slugs(client) == ["other-study"]
    for url in _api_urls(scored_study.slug):
        _assert_nothing(client.get(url), url, (404,))
    for url in _api_urls(other_study.slug):
        assert client.get(url).status_code == 200, url
    session = _session(other_researcher)
    for url in _web_urls(scored_study.slug):
        _assert_nothing(session.get(url), url, (403,))


@pytest.mark.parametrize("auth", ["token", "session"])
def test_a_granted_researcher_reads_everything_of_the_study(scored_study, researcher, auth):
    client = _token(researcher) if auth == "token" else _session(researcher)
    assert _study_slugs(client) == ["test-study"]
    for url in _api_urls(scored_study.slug):
        response = client.get(url)
        assert response.status_code == 200, url
        # The stored rows have no faction members (a JSONL of no rows is empty).
        assert _body(response) or "faction_members.jsonl" in url, url
    csv_url = reverse("ratings_api:study_export", args=["test-study", "votes_long", "csv"])
    response = client.get(csv_url, HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(_body(response).decode())))
    assert len(rows) == 5
    assert {row["prompt"] for row in rows} == {PROMPT}
    assert {row["cohort"] for row in rows} == {"india:tamil"}


def test_the_scores_endpoint_gives_the_exported_rows_with_the_run(scored_study, researcher):
    client = _token(researcher)
    data = client.get(reverse("ratings_api:study_scores", args=["test-study"])).json()
    assert (data["study"], data["k"]) == ("test-study", 5)
    assert data["run"]["votes_covered"] == 812
    assert data["run"]["computed_at"].startswith("2025-06-02T09:30:00")
    exported = [
        json.loads(line)
        for line in _body(
            client.get(reverse("ratings_api:study_export", args=["test-study", "scores", "jsonl"]))
        ).splitlines()
    ]
    assert data["scores"] == exported
    cells = {(row["cohort"], row["criterion"]): row for row in data["scores"]}
    assert cells[("india", "alignment")]["label"] == "split"
    kerala = cells[("india:kerala", "alignment")]
    assert (kerala["label"], kerala["suppressed"], kerala["count_a"]) == (
        "insufficient",
        "below_k",
        None,
    )
    splits = client.get(reverse("ratings_api:study_splits", args=["test-study"])).json()
    assert {row["kind"] for row in splits["rows"]} == {"criterion", "coherence"}


def test_the_study_list_links_every_export_and_card(scored_study, researcher):
    (study,) = _token(researcher).get(reverse("ratings_api:study_list")).json()
    assert study["k"] == 5
    assert [criterion["key"] for criterion in study["criteria"]] == [
        "alignment",
        "representation",
        "stereotype",
        "offensiveness",
    ]
    assert study["exports"]["splits"]["parquet"] == (
        "http://testserver/api/v1/studies/test-study/exports/splits.parquet"
    )
    assert study["cards"]["votes_wide"] == (
        "http://testserver/api/v1/studies/test-study/exports/votes_wide/card.md"
    )
    assert study["scores"] == "http://testserver/api/v1/studies/test-study/scores/"


def test_a_superuser_reads_every_study(scored_study, other_study):
    admin = User.objects.create_superuser(username="ada-admin", password="x-admin")
    client = _session(admin)
    assert sorted(_study_slugs(client)) == ["other-study", "test-study"]
    for url in _api_urls(scored_study.slug) + _web_urls(scored_study.slug):
        assert client.get(url).status_code == 200, url


def test_an_unknown_export_is_not_found(scored_study, researcher):
    client = _token(researcher)
    for table, fmt in [("votes_long", "xlsx"), ("raters", "csv")]:
        url = reverse("ratings_api:study_export", args=["test-study", table, fmt])
        assert client.get(url).status_code == 404
