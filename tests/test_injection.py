"""Stored script and open redirects (issue 14): what strangers write comes back escaped on every
page, and no link of ours sends anyone to another site.

Script is planted wherever an upload, an admin, an import or a rater writes text: the study's
name, consent and completion texts, a cohort's name, a criterion's question, a prompt and its
translation, a variant's name, a rater's comment and skip note and languages. Then every page a
superuser and the rater can open (every URL pattern, the admin's included) is fetched, and no
HTML answer may hold the script as markup.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from generation.models import ModelVariant, Prompt
from ratings.models import Cohort, Criterion, Participation, Study
from tests.rating_pages import SCREEN_ANSWERS, client_for, form_answers, served_assignment_id
from tests.test_permission_matrix import _body, _routes

pytest_plugins = ["tests.test_api_permissions"]

PAYLOADS = ['<script>alert("xss")</script>', '"><img src=x onerror=alert(1)>']
MARKUP = [b"<script>alert(", b"<img src=x onerror"]


@pytest.fixture
def planted(scored_study, pair_factory):
    study = scored_study
    script, attribute = PAYLOADS
    Study.objects.filter(pk=study.pk).update(
        name=f"Study {script}",
        consent_text=f"Consent {attribute}",
        completion_text=f"Thanks {script}",
        min_seconds_per_pair=0,
        pairs_per_rater=3,
    )
    Cohort.objects.filter(path="india").update(name=f"India {attribute}")
    Criterion.objects.filter(study=study, key="alignment").update(question=f"Which {script}?")
    pair = pair_factory(text=f"a festival {attribute}")
    Prompt.objects.filter(pk=pair.prompt_id).update(text_es=f"un festival {script}")
    pair_factory()
    ModelVariant.objects.filter(pk=pair.image_a.variant_id).update(name=f"lora {script}")
    from tests.conftest import _rater

    rater = _rater("xavier", "india")
    Participation.objects.filter(rater=rater).update(
        demographics={"languages": [script], "age_band": attribute}
    )
    client = client_for(rater)
    rate = reverse("ratings:rate", args=[study.slug])
    for note_or_comment in ("note", "comment"):
        assignment = served_assignment_id(client.get(rate).content.decode())
        if note_or_comment == "note":
            url, data = reverse("ratings:skip", args=[study.slug]), {"reason": "other"}
        else:
            url, data = reverse("ratings:vote", args=[study.slug]), form_answers(SCREEN_ANSWERS)
        data = {**data, "assignment": assignment, note_or_comment: f"mine {script}"}
        assert client.post(url, data).status_code == 302
    from ratings.results.services import scores_compute

    scores_compute(study=study)
    return study, pair, client


def _html_pages(client: Client, routes) -> int:
    fetched = 0
    for route in routes:
        if route.name in ("logout", "admin:logout", "ratings:stop"):
            continue
        response = client.get(route.url, follow=True)
        if "html" not in response.get("Content-Type", ""):
            continue
        body = _body(response)
        for markup in MARKUP:
            assert markup not in body, f"{markup!r} unescaped in {route.url} ({route.name})"
        fetched += response.status_code == 200
    return fetched


def test_script_written_anywhere_comes_back_escaped_on_every_page(planted):
    study, pair, rater_client = planted
    from ratings.models import Score

    score = Score.objects.filter(run__study=study).first()
    routes = _routes(study, pair.image_a.prompt.batch, score, pair.image_a)
    admin = Client()
    admin.force_login(User.objects.create_superuser("sue", "sue@example.org", "x-sue-9876"))
    # Most pages answer the superuser: not a test that passes by being refused everywhere.
    assert _html_pages(admin, routes) >= 100
    # The rater's own pages, in both languages (the prompt's script is in its Spanish text).
    assert _html_pages(rater_client, routes) >= 3
    rater_client.cookies["django_language"] = "es"
    assert _html_pages(rater_client, routes) >= 3
    # Admin changelists and change pages of each planted row, by hand.
    for url in (
        reverse("admin:ratings_study_change", args=[study.pk]),
        reverse("admin:ratings_cohort_changelist"),
        reverse("admin:generation_modelvariant_changelist"),
        reverse("admin:generation_promptbatch_change", args=[pair.image_a.prompt.batch_id]),
        reverse("ratings:rater_overview", args=[study.slug]),
        reverse("ratings:dashboard", args=[study.slug]),
    ):
        body = admin.get(url).content
        assert b"&lt;script&gt;alert(" in body or b"onerror" in body, url  # planted, and shown
        assert all(markup not in body for markup in MARKUP), url


ELSEWHERE = [
    "https://evil.example/x",
    "//evil.example/x",
    "/\\evil.example/x",
    "https:evil.example",
    "\\\\evil.example",
]


def _off_site(location: str) -> bool:
    return "evil.example" in location


@pytest.mark.parametrize("target", ELSEWHERE)
def test_no_open_redirect_after_sign_in(db, target):
    User.objects.create_user("nora", "nora@example.org", "a-long-pass-phrase-77")
    response = Client().post(
        reverse("login") + f"?next={target}",
        {"username": "nora", "password": "a-long-pass-phrase-77", "next": target},
    )
    assert response.status_code == 302
    assert not _off_site(response["Location"])


@pytest.mark.parametrize("target", ELSEWHERE)
def test_no_open_redirect_from_the_language_switch_or_sign_up(db, target):
    client = Client()
    answer = client.post(reverse("set_language"), {"language": "es", "next": target})
    assert answer.status_code in (302, 204)
    assert not _off_site(answer.get("Location", ""))
    # The sign-up link carries `next` inside it: it must not lead off-site either.
    from django.core import mail

    client.post(reverse("signup") + f"?next={target}", {"email": "n@example.org", "next": target})
    (message,) = mail.outbox
    link = next(word for word in message.body.split() if "/accounts/signup/" in word)
    finish = client.post(
        link.split("testserver", 1)[1],
        {"password1": "a-long-pass-phrase-77", "password2": "a-long-pass-phrase-77"},
    )
    assert finish.status_code == 302
    assert not _off_site(finish["Location"])


@pytest.mark.parametrize("target", ELSEWHERE)
def test_no_open_redirect_from_a_signed_in_visit_to_sign_up(db, target):
    user = User.objects.create_user("olaf", "olaf@example.org", "a-long-pass-phrase-77")
    client = Client()
    client.force_login(user)
    for url in (reverse("signup"), reverse("login")):
        answer = client.get(url + f"?next={target}")
        assert not _off_site(answer.get("Location", "")), url
