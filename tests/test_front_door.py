"""The front door (issue 14): login lockout, who may join a study and how, panel links,
passwords, formula cells in CSV, refusals by size, the API's 401, the deployment settings."""

from __future__ import annotations

import os
import re
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.cache import cache
from django.core.mail.backends.base import BaseEmailBackend
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from generation.models import Prompt
from ratings.entry.forms import SignUpFinishForm
from ratings.models import Participation, Rater, Study
from tests.rating_pages import SCREEN_ANSWERS, client_for, form_answers, served_assignment_id

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_counts():
    cache.clear()
    yield
    cache.clear()


def _start(study: Study) -> str:
    return reverse("ratings:start", args=[study.slug])


# Lockout.


@pytest.mark.parametrize("login_url", ["/accounts/login/", "/admin/login/"])
def test_fifty_wrong_passwords_lock_the_account_out_even_for_the_right_one(db, login_url):
    User.objects.create_user(username="staffer", password="right-horse-battery", is_staff=True)
    client = Client()
    for _ in range(50):
        client.post(login_url, {"username": "staffer", "password": "wrong"})
    client.post(login_url, {"username": "staffer", "password": "right-horse-battery"})
    assert "_auth_user_id" not in client.session
    answer = Client().post(login_url, {"username": "staffer", "password": "right-horse-battery"})
    assert answer.status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_few_wrong_passwords_then_the_right_one_sign_in(db):
    User.objects.create_user(username="typo", password="right-horse-battery")
    client = Client()
    for _ in range(3):
        client.post("/accounts/login/", {"username": "typo", "password": "wrong"})
    client.post("/accounts/login/", {"username": "typo", "password": "right-horse-battery"})
    assert client.session["_auth_user_id"] == str(User.objects.get(username="typo").pk)


# Joining a study.


def test_a_signed_in_user_cannot_join_a_study_closed_to_sign_ups(study, outsider):
    Study.objects.filter(pk=study.pk).update(open_to_signups=False)
    client = Client()
    client.force_login(outsider)
    response = client.get(_start(study))
    assert response.status_code == 403
    assert "invitation or from its panel" in response.content.decode()
    assert not Participation.objects.filter(rater__user=outsider).exists()
    # Not through a later step either.
    assert client.get(reverse("ratings:consent", args=[study.slug])).status_code == 403
    assert not Participation.objects.filter(rater__user=outsider).exists()


def test_an_invite_still_lets_a_rater_into_a_closed_study(study, outsider):
    from ratings.entry.services import invite_create

    Study.objects.filter(pk=study.pk).update(open_to_signups=False)
    invite = invite_create(study=study)
    client = Client()
    client.force_login(outsider)
    assert client.get(reverse("ratings:invite", args=[invite.token])).status_code == 302
    assert Participation.objects.filter(rater__user=outsider, study=study).exists()


def test_a_study_caps_its_raters(study):
    Study.objects.filter(pk=study.pk).update(max_raters=Participation.objects.count() + 1)
    first = Client().get(f"{_start(study)}?PROLIFIC_PID=cap-1&STUDY_ID=s&SESSION_ID=a")
    assert first.status_code == 302
    second = Client().get(f"{_start(study)}?PROLIFIC_PID=cap-2&STUDY_ID=s&SESSION_ID=b")
    assert second.status_code == 403
    assert not Rater.objects.filter(panel_id="cap-2", participations__isnull=False).exists()


# Panel links.


def test_a_panel_link_for_another_panel_study_is_refused(study):
    Study.objects.filter(pk=study.pk).update(panel_study_id="prolific-study-1")
    wrong = Client().get(f"{_start(study)}?PROLIFIC_PID=p-1&STUDY_ID=prolific-study-2")
    assert wrong.status_code == 400
    assert not Rater.objects.filter(panel_id="p-1").exists()
    right = Client().get(f"{_start(study)}?PROLIFIC_PID=p-1&STUDY_ID=prolific-study-1")
    assert right.status_code == 302
    assert Rater.objects.filter(panel_id="p-1").exists()


def test_a_panel_id_not_of_the_panels_form_is_refused(study):
    Study.objects.filter(pk=study.pk).update(panel_id_regex="[0-9a-f]{24}")
    assert Client().get(f"{_start(study)}?PROLIFIC_PID=anything").status_code == 400
    assert not Rater.objects.exists()
    good = "5f3c2b1a0e9d8c7b6a5f4e3d"
    assert Client().get(f"{_start(study)}?PROLIFIC_PID={good}").status_code == 302


def test_new_panel_raters_are_limited_per_address_but_returning_ones_are_not(study, settings):
    settings.POLYPHONY_PANEL_NEW_RATERS_PER_ADDRESS_PER_HOUR = 3
    answers = [
        Client().get(f"{_start(study)}?PROLIFIC_PID=flood-{n}").status_code for n in range(6)
    ]
    assert answers == [302, 302, 302, 429, 429, 429]
    assert Rater.objects.filter(panel_id__startswith="flood-").count() == 3
    # Someone already in comes back whatever the count.
    assert Client().get(f"{_start(study)}?PROLIFIC_PID=flood-0").status_code == 302


def test_new_panel_raters_are_limited_per_study(study, settings):
    settings.POLYPHONY_PANEL_NEW_RATERS_PER_STUDY_PER_MINUTE = 2
    answers = [
        Client(REMOTE_ADDR=f"10.0.0.{n}").get(f"{_start(study)}?PROLIFIC_PID=rush-{n}")
        for n in range(4)
    ]
    assert [answer.status_code for answer in answers] == [302, 302, 429, 429]


def test_a_signed_in_researcher_opening_a_panel_link_is_asked_not_switched(study, researcher):
    client = Client()
    client.force_login(researcher)
    link = f"{_start(study)}?PROLIFIC_PID=asked-1&STUDY_ID=s-1&SESSION_ID=x"
    asked = client.get(link)
    assert asked.status_code == 302
    assert asked.url == reverse("ratings:panel_switch", args=[study.slug])
    assert client.session["_auth_user_id"] == str(researcher.pk)  # not switched
    page = client.get(asked.url).content.decode()
    assert "rosa" in page and "asked-1" not in page
    assert not Rater.objects.filter(panel_id="asked-1").exists()

    stay = client.post(asked.url, {"decision": "stay"})
    assert stay.status_code == 302 and client.session["_auth_user_id"] == str(researcher.pk)
    assert not Rater.objects.filter(panel_id="asked-1").exists()

    client.get(link)
    switched = client.post(asked.url, {"decision": "switch"})
    assert switched.status_code == 302
    panel_user = Rater.objects.get(panel_id="asked-1").user
    assert client.session["_auth_user_id"] == str(panel_user.pk)


# Passwords and sign-up.


@pytest.mark.parametrize("password", ["8274619305521", "someone@example.org", "someone.example"])
def test_weak_passwords_are_refused_at_sign_up(db, password):
    form = SignUpFinishForm(
        {"password1": password, "password2": password}, email="someone@example.org"
    )
    assert not form.is_valid()
    assert not User.objects.exists()


def _alike(body: str, email: str) -> str:
    """Return the page without what differs between any two answers: the address it echoes,
    and the CSRF token and CSP nonce that every response draws afresh."""
    body = body.replace(email, "EMAIL")
    body = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', 'name="csrfmiddlewaretoken"', body)
    return re.sub(r' nonce="[^"]+"', "", body)


def _link_in(message, path_start: str) -> str:
    return re.search(rf"https?://testserver({path_start}\S*)", message.body).group(1)


def test_sign_up_answers_a_known_and_an_unknown_email_alike_and_mails_each_once(db):
    User.objects.create_user("known@example.org", "known@example.org", "ripe mango 4172")
    answers = {}
    for email in ("known@example.org", "unknown@example.org"):
        mail.outbox.clear()
        response = Client().post(reverse("signup"), {"email": email, "next": "/"})
        (message,) = mail.outbox
        assert message.to == [email]
        answers[email] = response, message
    (known, known_mail), (unknown, unknown_mail) = answers.values()
    assert known.status_code == unknown.status_code == 200
    # The page's templates (the mail's, rendered in the same request, are its own).
    pages = [[t.name for t in r.templates if t.name.endswith(".html")] for r in (known, unknown)]
    assert pages[0] == pages[1] and pages[0][0] == "registration/signup_sent.html"
    assert sorted(known.headers) == sorted(unknown.headers)
    known_page = _alike(known.content.decode(), "known@example.org")
    assert known_page == _alike(unknown.content.decode(), "unknown@example.org")
    assert "We sent a link to <strong>EMAIL</strong>" in known_page
    assert "valid for 24 hours" in known_page and "spam" in known_page
    # Only the mail tells its owner which: a link to finish, or sign-in and reset links.
    assert _link_in(unknown_mail, "/accounts/signup/")
    assert "/accounts/signup/" not in known_mail.body
    assert _link_in(known_mail, "/accounts/password_reset/") == reverse("password_reset")
    assert _link_in(known_mail, "/accounts/login/") == reverse("login") + "?next=%2F"
    assert User.objects.count() == 1


def test_sign_up_mails_past_the_limit_per_client_address_are_not_sent_yet_answered_alike(
    db, settings, caplog
):
    settings.POLYPHONY_SIGNUP_MAILS_PER_ADDRESS_PER_HOUR = 2
    settings.POLYPHONY_SIGNUP_MAILS_PER_EMAIL_PER_HOUR = 0
    pages = []
    for n in range(3):
        response = Client(REMOTE_ADDR="203.0.113.7").post(
            reverse("signup"), {"email": f"rater{n}@example.org"}
        )
        assert response.status_code == 200
        pages.append(_alike(response.content.decode(), f"rater{n}@example.org"))
    assert [message.to for message in mail.outbox] == [
        ["rater0@example.org"],
        ["rater1@example.org"],
    ]
    assert pages[2] == pages[0]
    assert "Account mail not sent: over 2 this hour from one client address" in caplog.text
    Client(REMOTE_ADDR="203.0.113.8").post(reverse("signup"), {"email": "rater3@example.org"})
    assert mail.outbox[-1].to == ["rater3@example.org"]  # another address is not held back


def test_sign_up_mails_past_the_limit_per_email_are_not_sent_whether_known_or_not(db, settings):
    settings.POLYPHONY_SIGNUP_MAILS_PER_ADDRESS_PER_HOUR = 0
    settings.POLYPHONY_SIGNUP_MAILS_PER_EMAIL_PER_HOUR = 1
    User.objects.create_user("known@example.org", "known@example.org", "ripe mango 4172")
    for email in ("known@example.org", "KNOWN@example.org", "new@example.org", "new@example.org"):
        response = Client().post(reverse("signup"), {"email": email})
        assert response.status_code == 200
        assert "We sent a link to" in response.content.decode()
    assert [message.to for message in mail.outbox] == [["known@example.org"], ["new@example.org"]]


class RefusingMailServer(BaseEmailBackend):
    def send_messages(self, messages):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


def test_a_mail_server_that_refuses_gets_the_same_503_for_every_address(db, settings):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingMailServer"
    User.objects.create_user("known@example.org", "known@example.org", "ripe mango 4172")
    pages = set()
    for email in ("known@example.org", "new@example.org"):
        response = Client().post(reverse("signup"), {"email": email})
        assert response.status_code == 503
        pages.add(_alike(response.content.decode(), email))
    assert len(pages) == 1
    assert "We could not send the email just now" in pages.pop()


def test_the_reset_link_of_the_known_address_mail_lets_the_owner_set_a_new_password(db):
    User.objects.create_user("meera@example.org", "meera@example.org", "ripe mango 4172")
    client = Client()
    client.post(reverse("signup"), {"email": "Meera@example.org"})
    reset = _link_in(mail.outbox[0], "/accounts/password_reset/")
    page = client.get(reset).content.decode()
    assert 'class="narrow"' in page and "Reset your password" in page  # the site's own look
    assert client.post(reset, {"email": "meera@example.org"}).url == reverse("password_reset_done")

    confirm = _link_in(mail.outbox[1], "/accounts/password_reset/")
    assert mail.outbox[1].subject == "Reset your Polyphony password"
    form = client.get(confirm, follow=True)
    assert 'name="new_password1"' in form.content.decode()
    new_password = {"new_password1": "green kiwi 9035", "new_password2": "green kiwi 9035"}
    changed = client.post(form.redirect_chain[-1][0], new_password)
    assert changed.url == reverse("password_reset_complete")
    assert "You can sign in with it now" in client.get(changed.url).content.decode()

    old = Client().post(
        reverse("login"), {"username": "meera@example.org", "password": "ripe mango 4172"}
    )
    assert old.status_code == 200 and "_auth_user_id" not in old.wsgi_request.session
    signed_in = Client()
    answer = signed_in.post(
        reverse("login"), {"username": "Meera@example.org", "password": "green kiwi 9035"}
    )
    assert answer.status_code == 302
    assert signed_in.session["_auth_user_id"] == str(User.objects.get().pk)


def test_the_password_reset_form_answers_a_known_and_an_unknown_email_alike(db, settings):
    settings.POLYPHONY_SIGNUP_MAILS_PER_EMAIL_PER_HOUR = 1
    User.objects.create_user("known@example.org", "known@example.org", "ripe mango 4172")
    for email in ("known@example.org", "unknown@example.org", "known@example.org"):
        response = Client().post(reverse("password_reset"), {"email": email})
        assert response.status_code == 302
        assert response.url == reverse("password_reset_done")
    # One mail: the unknown address gets none, and the second ask is past the limit per email.
    assert [message.to for message in mail.outbox] == [["known@example.org"]]


# CSV exports.


def test_formula_cells_are_neutralised_in_the_csv_export_and_restored_on_import(
    study, pair_factory, rater_india, researcher
):
    from ratings.exports.formats import csv_text_read

    Study.objects.filter(pk=study.pk).update(attention_check_rate=0, min_seconds_per_pair=0)
    pair_factory()
    pair_factory()
    client = client_for(rater_india)
    assignment = served_assignment_id(
        client.get(reverse("ratings:rate", args=[study.slug])).content.decode()
    )
    # A prompt from an upload that a spreadsheet would run.
    # (the stored prompt itself, not a translation: modeltranslation would rewrite `text`)
    Prompt.objects.rewrite(False).filter(batch__study=study).update(
        text='=HYPERLINK("http://evil.example","x")'
    )
    data = {"assignment": assignment, **form_answers(SCREEN_ANSWERS)}
    assert client.post(reverse("ratings:vote", args=[study.slug]), data).status_code == 302
    reader = Client()
    reader.force_login(researcher)
    response = reader.get(reverse("ratings:export_votes_csv", args=[study.slug]))
    body = b"".join(response.streaming_content).decode()
    assert "'=HYPERLINK" in body
    assert ",=HYPERLINK" not in body and '"=HYPERLINK' not in body
    assert csv_text_read("'=HYPERLINK(1)") == "=HYPERLINK(1)"
    assert csv_text_read("'plain") == "'plain"


# Sizes, the API, the deployment.


def test_a_body_over_the_limit_is_refused_before_it_is_read(live_server, settings):
    settings.POLYPHONY_MAX_REQUEST_BYTES = 1024 * 1024
    address = urlsplit(live_server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as conn:
        conn.sendall(
            b"POST /accounts/login/ HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 52428800\r\n\r\nusername=x"
        )
        started = time.monotonic()
        answer = conn.recv(4096).decode("latin-1")
    # Answered at once, without waiting for the 50 MB that were never sent.
    assert answer.startswith("HTTP/1.1 413")
    assert time.monotonic() - started < 5


def test_a_bad_token_gets_401_and_the_schema_documents_refusals(db, client):
    bad = client.get("/api/v1/studies/", HTTP_AUTHORIZATION="Token not-a-token")
    assert bad.status_code == 401
    assert bad["WWW-Authenticate"].startswith("Token")
    assert client.get("/api/v1/studies/").status_code == 401
    staff = User.objects.create_user(username="api", password="x-api-x", is_staff=True)
    token = Token.objects.create(user=staff)
    schema = client.get(
        "/api/schema/", {"format": "json"}, HTTP_AUTHORIZATION=f"Token {token.key}"
    ).json()
    operations = [
        operation
        for item in schema["paths"].values()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert operations
    for operation in operations:
        assert {"401", "403", "404"} <= set(operation["responses"])


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    environ = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "production-secret-key-" + "x7Q2" * 12,
        "ALLOWED_HOSTS": "polyphony.example.org",
        "POLYPHONY_VAR_DIR": str(tmp_path),
        "POLYPHONY_STATIC_MANIFEST": "true",
        "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    }
    for name in (
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
    ):
        environ.pop(name, None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "collectstatic", "--no-input", "-v0"], env=environ, check=True)
    checked = subprocess.run(
        [*manage, "check", "--deploy", "--fail-level", "WARNING"],
        env=environ,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "no issues" in checked.stdout


def test_pages_carry_a_content_security_policy_with_a_nonce(db, client):
    assert "script-src 'self'" in client.get("/accounts/login/")["Content-Security-Policy"]
    client.force_login(User.objects.create_superuser("boss", "boss@example.org", "x-boss-x"))
    response = client.get(reverse("generation:batch_queue"))
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in policy
    assert "frame-ancestors 'none'" in policy
    nonce = policy.split("'nonce-", 1)[1].split("'", 1)[0]
    body = response.content.decode()
    # Every inline script carries the response's nonce; no inline handler is left.
    for chunk in body.split("<script")[1:]:
        head = chunk.split(">", 1)[0]
        data_block = 'type="application/json"' in head  # json_script: data, never run
        assert "src=" in head or data_block or f'nonce="{nonce}"' in head
    assert " onchange=" not in body and " onclick=" not in body
