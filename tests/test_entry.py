"""How a rater enters a study: sign-up, panel and invite links, consent, cohorts, completion."""

from __future__ import annotations

import re
import secrets
import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ratings.entry.services import (
    EmailTaken,
    EntryRefused,
    ProposalDecided,
    cohort_proposal_accept,
    cohort_proposal_reject,
    cohort_proposal_submit,
    invite_create,
    invite_redeem,
    participation_consent,
    rater_ensure,
    rater_from_panel,
    rater_sign_up,
)
from ratings.entry.signup import signup_link_make, signup_requests_purge
from ratings.models import (
    Cohort,
    CohortProposal,
    ConsentDecline,
    Participation,
    Rater,
    SignUpRequest,
    StudyInvite,
    Vote,
)
from ratings.studies import cohort_ensure, study_create

PANEL_ID = "5f1e2d3c4b5a69788796a5b4"


def _start(study) -> str:
    return reverse("ratings:start", args=[study.slug])


def _consented_client(study, user: User) -> Client:
    client = Client()
    client.force_login(user)
    participation_consent(study=study, rater=rater_ensure(user=user))
    return client


def _mailed_link(email: str) -> str:
    """Return the path of the sign-up link in the last mail, which went to `email`."""
    message = mail.outbox[-1]
    assert message.to == [email]
    return re.search(r"https?://testserver(/accounts/signup/[^/\s]+/)", message.body).group(1)


def _sign_up(client: Client, email: str, *, next_url: str = "", password: str = "ripe mango 4172"):
    """Sign up the whole way: ask for a link, open it from the mail, choose a password."""
    asked = client.post(reverse("signup"), {"email": email, "next": next_url})
    assert asked.status_code == 200
    return client.post(_mailed_link(email), {"password1": password, "password2": password})


@pytest.fixture(autouse=True)
def _no_mail_limits(settings):
    # Every test here signs up from one address; the limits have tests of their own.
    settings.POLYPHONY_SIGNUP_MAILS_PER_ADDRESS_PER_HOUR = 0
    settings.POLYPHONY_SIGNUP_MAILS_PER_EMAIL_PER_HOUR = 0


# Sign-up and sign-in


def test_sign_up_mails_a_link_then_makes_the_user_and_rater_signs_in_and_lands_on_consent(study):
    client = Client()
    page = client.get(reverse("signup"), {"next": _start(study)})
    assert "You are invited to take part in <strong>Test study</strong>" in page.content.decode()
    assert 'name="password1"' not in page.content.decode()  # only the email is asked

    asked = client.post(reverse("signup"), {"email": "Meera@Example.org", "next": _start(study)})
    assert "We sent a link to <strong>Meera@example.org</strong>" in asked.content.decode()
    assert not User.objects.exists()  # nothing is stored before the link is opened
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == "Finish signing up to Polyphony"

    link = _mailed_link("Meera@example.org")
    opened = client.get(link)
    assert opened.status_code == 200
    assert "Test study" in opened.content.decode()
    assert "Meera@example.org" in opened.content.decode()
    response = client.post(link, {"password1": "ripe mango 4172", "password2": "ripe mango 4172"})
    assert response.status_code == 302
    assert response.url == _start(study)
    assert client.get(response.url).url == reverse("ratings:consent", args=[study.slug])

    user = User.objects.get(email="Meera@example.org")
    assert user.has_usable_password()
    assert Rater.objects.filter(user=user, panel_id=None).exists()
    assert client.session["_auth_user_id"] == str(user.pk)


def test_sign_up_with_an_email_taken_in_another_letter_case_mails_its_owner_and_makes_nothing(
    study,
):
    _sign_up(Client(), "meera@example.org")
    mail.outbox.clear()
    response = Client().post(
        reverse("signup"), {"email": "MEERA@example.ORG", "next": _start(study)}
    )
    assert response.status_code == 200
    assert "We sent a link to" in response.content.decode()
    assert "already" not in response.content.decode()
    (message,) = mail.outbox
    assert message.subject == "You already have a Polyphony account"
    assert "/accounts/signup/" not in message.body  # no link to make a second account
    assert f"/accounts/login/?next={_start(study).replace('/', '%2F')}" in message.body
    assert "/accounts/password_reset/" in message.body
    assert User.objects.count() == 1


def test_sign_up_with_an_email_an_admin_gave_another_user_mails_that_it_is_taken(outsider):
    outsider.email = "otto@example.org"
    outsider.save()
    response = Client().post(reverse("signup"), {"email": "Otto@Example.org"})
    assert response.status_code == 200
    assert mail.outbox[0].subject == "You already have a Polyphony account"
    with pytest.raises(EmailTaken):
        rater_sign_up(email="OTTO@example.org", password="ripe mango 4172")


@pytest.mark.parametrize(
    ("password", "again", "message"),
    [
        ("password", "password", "This password is too common."),
        ("short1", "short1", "This password is too short."),
        ("ripe mango 4172", "ripe mango 4173", "The two passwords differ."),
    ],
)
def test_sign_up_applies_the_password_validators(db, password, again, message):
    client = Client()
    client.post(reverse("signup"), {"email": "asha@example.org"})
    response = client.post(
        _mailed_link("asha@example.org"), {"password1": password, "password2": again}
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not User.objects.exists()


def test_sign_up_does_not_follow_a_next_to_another_site(db):
    response = _sign_up(Client(), "asha@example.org", next_url="https://evil.example/")
    assert response.url == reverse("ratings:home")


def test_an_expired_sign_up_link_is_refused_with_a_way_to_ask_again(study):
    token = signup_link_make(email="asha@example.org", next_url=_start(study))
    # The link holds for 24 hours by default; this one was sent 25 hours ago.
    SignUpRequest.objects.update(expires_at=timezone.now() - timedelta(hours=1))
    link = reverse("signup_finish", args=[token])
    client = Client()
    for response in (
        client.get(link),
        client.post(link, {"password1": "ripe mango 4172", "password2": "ripe mango 4172"}),
    ):
        assert response.status_code == 410
        page = response.content.decode()
        assert "This sign-up link has expired." in page
        assert f'action="{reverse("signup")}"' in page
        assert 'value="asha@example.org"' in page and f'value="{_start(study)}"' in page
    assert not User.objects.exists()

    again = client.post(reverse("signup"), {"email": "asha@example.org", "next": _start(study)})
    assert again.status_code == 200
    assert client.get(_mailed_link("asha@example.org")).status_code == 200
    # Beat's purge deletes the expired link, and with it the address it was sent to.
    assert signup_requests_purge() == 1
    assert client.get(link).status_code == 400


@pytest.mark.parametrize("alter", ["character", "never sent"])
def test_an_altered_sign_up_link_is_refused_and_makes_nothing(db, alter):
    token = signup_link_make(email="asha@example.org")
    if alter == "character":
        token = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    else:
        token = secrets.token_urlsafe(32)
    link = reverse("signup_finish", args=[token])
    response = Client().post(link, {"password1": "ripe mango 4172", "password2": "ripe mango 4172"})
    assert response.status_code == 400
    assert "This sign-up link is not valid." in response.content.decode()
    assert f'href="{reverse("signup")}"' in response.content.decode()
    assert not User.objects.exists()


def test_a_sign_up_link_names_no_address_and_only_its_hash_is_kept(db):
    Client().post(reverse("signup"), {"email": "asha@example.org"})
    link = _mailed_link("asha@example.org")
    assert "asha" not in link and "example" not in link
    token = link.rstrip("/").rsplit("/", 1)[1]
    (request,) = SignUpRequest.objects.all()
    assert token not in request.token_digest and len(request.token_digest) == 64


def test_a_sign_up_link_used_again_after_the_account_exists_makes_nothing(study):
    client = Client()
    client.post(reverse("signup"), {"email": "asha@example.org", "next": _start(study)})
    link = _mailed_link("asha@example.org")
    passwords = {"password1": "ripe mango 4172", "password2": "ripe mango 4172"}
    assert client.post(link, passwords).status_code == 302
    user = User.objects.get()

    other = Client()
    for response in (other.get(link), other.post(link, {**passwords, "password1": "x"})):
        assert response.status_code == 409
        page = response.content.decode()
        assert "This email address already has an account" in page
        assert f'href="{reverse("login")}?next={_start(study)}"' in page
    assert list(User.objects.all()) == [user]
    assert user.check_password("ripe mango 4172")
    assert "_auth_user_id" not in other.session


def test_the_sign_up_page_and_its_mail_speak_the_raters_language(db):
    client = Client(HTTP_ACCEPT_LANGUAGE="es")
    page = client.post(reverse("signup"), {"email": "asha@example.org"}).content.decode()
    assert "Enviamos un enlace a <strong>asha@example.org</strong>" in page
    (message,) = mail.outbox
    assert message.subject == "Termina de registrarte en Polyphony"
    assert "El enlace es válido durante 24 horas." in message.body


def test_login_page_links_to_sign_up_with_the_same_next(study):
    response = Client().get(_start(study), follow=True)
    page = response.content.decode()
    assert response.redirect_chain[-1][0].startswith(reverse("login"))
    assert f'href="{reverse("signup")}?next=/s/test-study/"' in page
    assert f'href="{reverse("password_reset")}"' in page


def test_a_rater_who_signed_up_signs_in_with_their_email_in_any_case(study):
    _sign_up(Client(), "meera@example.org")
    client = Client()
    response = client.post(
        reverse("login"),
        {"username": "Meera@Example.ORG", "password": "ripe mango 4172", "next": _start(study)},
    )
    assert response.status_code == 302
    assert response.url == _start(study)


# Panel links


def _bodies_and_urls(client: Client, url: str) -> list[str]:
    """Follow a URL through its redirects and return every URL and body seen on the way."""
    response = client.get(url, follow=True)
    return [target for target, _ in response.redirect_chain] + [response.content.decode()]


def test_panel_link_opened_twice_gives_one_rater_and_participation_and_hides_the_id(study):
    link = f"{_start(study)}?PROLIFIC_PID={PANEL_ID}&STUDY_ID=st-1&SESSION_ID=se-1"
    client = Client()
    first = client.get(link)
    assert first.status_code == 302
    assert first.url == _start(study)  # the id leaves the address bar
    seen = _bodies_and_urls(client, first.url)
    assert seen[0] == reverse("ratings:consent", args=[study.slug])

    client.post(reverse("ratings:consent", args=[study.slug]), {"decision": "accept"})
    seen += _bodies_and_urls(client, _start(study))
    client.post(
        reverse("ratings:cohorts", args=[study.slug]),
        {"cohorts": [Cohort.objects.get(path="india").pk]},
    )
    seen += _bodies_and_urls(client, reverse("ratings:demographics", args=[study.slug]))
    client.post(reverse("ratings:demographics", args=[study.slug]), {"skip": "1"})
    seen += _bodies_and_urls(client, _start(study))
    seen += _bodies_and_urls(client, reverse("ratings:stop", args=[study.slug]))

    again = Client()  # the same panel member, another browser, a new panel session
    resumed = _bodies_and_urls(again, link.replace("se-1", "se-2"))
    assert resumed[-2] == reverse("ratings:rate", args=[study.slug])  # straight back to pairs
    seen += resumed

    rater = Rater.objects.get()
    assert rater.panel_id == PANEL_ID
    assert not rater.user.has_usable_password()
    assert PANEL_ID not in rater.user.username
    participation = Participation.objects.get()
    assert (participation.panel_study_id, participation.panel_session_id) == ("st-1", "se-2")
    assert participation.consented_at is not None  # resumed, not begun again
    assert all(PANEL_ID not in text for text in seen)


def test_panel_link_uses_the_study_parameter_names(study):
    study.panel_rater_param, study.panel_study_param = "workerId", "hitId"
    study.panel_session_param = "assignmentId"
    study.save()
    client = Client()
    response = client.get(
        _start(study), {"workerId": "A1B2C3", "hitId": "H9", "assignmentId": "AS7"}
    )
    assert response.url == _start(study)
    participation = Participation.objects.get(rater__panel_id="A1B2C3")
    assert (participation.panel_study_id, participation.panel_session_id) == ("H9", "AS7")

    # Under these names PROLIFIC_PID means nothing: an anonymous visitor is asked to sign in.
    stranger = Client().get(_start(study), {"PROLIFIC_PID": PANEL_ID})
    assert stranger.url.startswith(reverse("login"))
    assert Rater.objects.count() == 1


@pytest.mark.parametrize(
    "query",
    [
        {"STUDY_ID": "st-1", "SESSION_ID": "se-1"},
        {"PROLIFIC_PID": ""},
        {"PROLIFIC_PID": "{{%PROLIFIC_PID%}}"},
        {"PROLIFIC_PID": "has space"},
        {"PROLIFIC_PID": "x" * 121},
        {"PROLIFIC_PID": PANEL_ID, "SESSION_ID": "<script>"},
        # The key of a rater made by import_votes: no link may sign in as one.
        {"PROLIFIC_PID": "import:test-study:r_1"},
    ],
)
def test_panel_link_without_a_readable_id_is_refused_with_400(study, query):
    response = Client().get(_start(study), query)
    assert response.status_code == 400
    page = response.content.decode()
    assert "lacks your panel id" in page
    assert all(value not in page for value in query.values() if value)
    assert not Rater.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_panel_raters_racing_on_one_id_make_one_rater():
    ids = [f"racer{n}" for n in range(4)]
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def enter() -> None:
        try:
            barrier.wait()
            for panel_id in ids:
                rater_from_panel(panel_id=panel_id)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=enter) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(Rater.objects.values_list("panel_id", flat=True)) == ids
    assert User.objects.count() == len(ids)


# Invite links


def test_invite_sends_a_newcomer_to_sign_up_and_then_into_the_study_counting_one_use(study):
    invite = invite_create(study=study, max_uses=5)
    link = reverse("ratings:invite", args=[invite.token])
    client = Client()
    response = client.get(link)
    assert response.url == f"{reverse('signup')}?next={link.replace('/', '%2F')}"
    assert "Test study" in client.get(response.url).content.decode()

    client.post(reverse("signup"), {"email": "asha@example.org", "next": link})
    # The mailed link may open in another browser: where to go next travels in the link.
    mail_reader = Client()
    signed_up = mail_reader.post(
        _mailed_link("asha@example.org"),
        {"password1": "ripe mango 4172", "password2": "ripe mango 4172"},
    )
    assert signed_up.url == link
    assert mail_reader.get(link).url == _start(study)
    assert mail_reader.get(link).url == _start(study)  # opened again: no second use
    invite.refresh_from_db()
    assert invite.uses == 1
    assert Participation.objects.filter(study=study, rater__user__email="asha@example.org").exists()


def test_spent_invite_is_refused_and_counts_no_further(study, rater_india, rater_korea):
    Participation.objects.all().delete()
    invite = invite_create(study=study, max_uses=1)
    link = reverse("ratings:invite", args=[invite.token])
    first, second = Client(), Client()
    first.force_login(rater_india.user)
    second.force_login(rater_korea.user)
    assert first.get(link).status_code == 302
    response = second.get(link)
    assert response.status_code == 410
    assert "used as often as it may be" in response.content.decode()
    assert "Traceback" not in response.content.decode()
    invite.refresh_from_db()
    assert invite.uses == 1
    assert not Participation.objects.filter(rater=rater_korea).exists()
    # Anonymous visitors hear it before they make an account.
    assert Client().get(link).status_code == 410


def test_invite_that_ran_out_between_check_and_use_lets_nobody_in(study, rater_korea):
    Participation.objects.all().delete()
    invite = invite_create(study=study, max_uses=1)
    StudyInvite.objects.filter(pk=invite.pk).update(uses=1)  # another rater took the last use
    with pytest.raises(EntryRefused) as refusal:
        invite_redeem(invite=invite, rater=rater_korea)
    assert refusal.value.status == 410
    assert not Participation.objects.filter(rater=rater_korea).exists()


def test_expired_or_unknown_invite_is_refused_clearly(study, outsider):
    invite = invite_create(study=study, expires_at=timezone.now() - timedelta(minutes=1))
    client = Client()
    client.force_login(outsider)
    response = client.get(reverse("ratings:invite", args=[invite.token]))
    assert response.status_code == 410
    assert "This invite link has expired." in response.content.decode()
    unknown = client.get(reverse("ratings:invite", args=["no-such-token"]))
    assert unknown.status_code == 404
    assert "not valid" in unknown.content.decode()
    invite.refresh_from_db()
    assert invite.uses == 0


def test_admin_makes_an_invite_with_an_action_and_sees_its_link(study):
    admin_user = User.objects.create_superuser("ada", "ada@example.org", "x-ada")
    client = Client()
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:ratings_study_changelist"),
        {"action": "study_invite_create", "_selected_action": [study.pk]},
        follow=True,
    )
    invite = StudyInvite.objects.get(study=study)
    assert invite.created_by == admin_user
    assert f"http://testserver/i/{invite.token}/" in response.content.decode()
    change = client.get(reverse("admin:ratings_study_change", args=[study.pk]))
    assert f"http://testserver/i/{invite.token}/" in change.content.decode()


def _form_data(form) -> dict:
    """Return what a browser would post for a bound-to-initial Django form."""
    data = {}
    for name in form.fields:
        value = form[name].value()
        if value is True:
            data[form.add_prefix(name)] = "on"
        elif value is not None and value is not False:
            data[form.add_prefix(name)] = value
    return data


def test_admin_adds_an_invite_on_the_study_page_limited_and_made_by_them(study):
    admin_user = User.objects.create_superuser("ada", "ada@example.org", "x-ada")
    client = Client()
    client.force_login(admin_user)
    url = reverse("admin:ratings_study_change", args=[study.pk])
    page = client.get(url)
    data = _form_data(page.context["adminform"].form)
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update(_form_data(formset.management_form))
        for form in formset.initial_forms:
            data.update(_form_data(form))
        if formset.model is StudyInvite:
            data[f"{formset.prefix}-TOTAL_FORMS"] = len(formset.initial_forms) + 1
            data[f"{formset.prefix}-0-max_uses"] = "30"
    response = client.post(url, data)
    assert response.status_code == 302, (
        response.context["errors"],
        [inline.formset.errors for inline in response.context["inline_admin_formsets"]],
    )
    invite = StudyInvite.objects.get(study=study)
    assert (invite.max_uses, invite.uses, invite.created_by) == (30, 0, admin_user)


# Consent


def test_declining_consent_stores_only_a_decline(study):
    client = Client()
    client.get(f"{_start(study)}?PROLIFIC_PID={PANEL_ID}")
    response = client.post(reverse("ratings:consent", args=[study.slug]), {"decision": "decline"})
    assert "nothing about you has been stored" in response.content.decode()
    assert ConsentDecline.objects.filter(study=study).count() == 1
    assert not Rater.objects.exists()
    assert not Participation.objects.exists()
    assert User.objects.count() == 0
    assert "_auth_user_id" not in client.session


def test_declining_keeps_an_account_but_leaves_no_participation(study, outsider):
    client = Client()
    client.force_login(outsider)
    client.get(_start(study))
    client.post(reverse("ratings:consent", args=[study.slug]), {"decision": "decline"})
    assert not Participation.objects.filter(rater__user=outsider).exists()
    assert User.objects.filter(pk=outsider.pk).exists()
    assert ConsentDecline.objects.count() == 1


def test_consent_page_warns_and_every_study_page_offers_stop(study, outsider):
    client = Client()
    client.force_login(outsider)
    page = client.get(reverse("ratings:consent", args=[study.slug])).content.decode()
    assert "some images may be offensive" in page
    assert "You may stop at any time." in page
    assert f'href="{reverse("ratings:stop", args=[study.slug])}"' in page


def test_stop_asks_once_then_signs_out_and_keeps_what_was_given(study, rater_india):
    client = Client()
    client.force_login(rater_india.user)
    confirm = client.get(reverse("ratings:stop", args=[study.slug]))
    assert "Stop here?" in confirm.content.decode()
    stopped = client.post(reverse("ratings:stop", args=[study.slug]))
    assert "Thank you for your time" in stopped.content.decode()
    assert "_auth_user_id" not in client.session
    assert Participation.objects.get(rater=rater_india).consented_at is not None


# Cohorts


def test_choosing_a_sub_cohort_with_its_culture_stores_the_sub_cohort(study, outsider):
    client = _consented_client(study, outsider)
    india, tamil = Cohort.objects.get(path="india"), Cohort.objects.get(path="india:tamil")
    client.post(reverse("ratings:cohorts", args=[study.slug]), {"cohorts": [india.pk, tamil.pk]})
    assert Rater.objects.get(user=outsider).cohort_paths() == ["india:tamil"]
    page = client.get(reverse("ratings:cohorts", args=[study.slug])).content.decode()
    # Both show ticked again: Tamil says India too.
    ticked = re.findall(r'<input [^>]*value="(\d+)"[^>]*checked', page)
    assert sorted(map(int, ticked)) == sorted([india.pk, tamil.pk])


def test_cohort_page_nests_sub_cultures_under_their_culture(study, outsider):
    cohort_ensure(path="india:tamil:contemporary", name="Contemporary")
    study.cohorts.add(Cohort.objects.get(path="india:tamil:contemporary"))
    client = _consented_client(study, outsider)
    page = client.get(reverse("ratings:cohorts", args=[study.slug])).content.decode()
    india_at = page.index(">India<")
    tamil_at = page.index(">Tamil<")
    period_at = page.index(">Contemporary<")
    korea_at = page.index(">Korea<")
    assert india_at < tamil_at < period_at < korea_at
    # Tamil's list of periods sits inside India's list of sub-cultures.
    assert page[india_at:period_at].count("<ul>") == 2


def test_cohorts_of_other_studies_are_kept(study, outsider):
    other = study_create(name="Other", slug="other", cohort_paths=["japan"])
    rater = rater_ensure(user=outsider)
    rater.cohorts.add(Cohort.objects.get(path="japan"))
    client = _consented_client(study, outsider)
    response = client.get(_start(study))
    assert response.url == reverse("ratings:cohorts", args=[study.slug])  # japan is not here
    client.post(
        reverse("ratings:cohorts", args=[study.slug]),
        {"cohorts": [Cohort.objects.get(path="korea").pk]},
    )
    assert rater.cohort_paths() == ["japan", "korea"]
    assert other.cohorts.filter(raters=rater).exists()


def test_cohort_form_refuses_no_choice_and_no_proposal(study, outsider):
    client = _consented_client(study, outsider)
    response = client.post(reverse("ratings:cohorts", args=[study.slug]), {"proposal": "  "})
    assert response.status_code == 200
    assert "Choose at least one culture" in response.content.decode()
    assert not CohortProposal.objects.exists()


def test_proposed_cohort_waits_for_an_admin_then_brings_pairs(study, outsider):
    client = _consented_client(study, outsider)
    client.post(reverse("ratings:cohorts", args=[study.slug]), {"proposal": "Yoruba (Lagos)"})
    client.post(reverse("ratings:cohorts", args=[study.slug]), {"proposal": "yoruba  (lagos)"})
    proposal = CohortProposal.objects.get()  # the same wording twice is one proposal
    assert proposal.status == CohortProposal.Status.PENDING
    waiting = client.get(_start(study))
    assert waiting.status_code == 200
    assert "Pairs will come once an admin has added it" in waiting.content.decode()
    assert client.get(reverse("ratings:rate", args=[study.slug])).url == _start(study)

    admin_user = User.objects.create_superuser("ada", "ada@example.org", "x-ada")
    admin = Client()
    admin.force_login(admin_user)
    changelist = reverse("admin:ratings_cohortproposal_changelist")
    form_page = admin.post(
        changelist, {"action": "accept_as_cohort", "_selected_action": [proposal.pk]}
    )
    assert form_page.status_code == 200
    assert 'value="yoruba-lagos"' in form_page.content.decode()  # a suggested path
    prefix = f"proposal-{proposal.pk}"
    admin.post(
        changelist,
        {
            "action": "accept_as_cohort",
            "_selected_action": [proposal.pk],
            "apply": "1",
            f"{prefix}-path": "nigeria:yoruba",
            f"{prefix}-name": "Yoruba",
        },
    )
    proposal.refresh_from_db()
    yoruba = Cohort.objects.get(path="nigeria:yoruba")
    assert (proposal.status, proposal.cohort, yoruba.name) == ("accepted", yoruba, "Yoruba")
    assert proposal.decided_at is not None
    assert study.cohorts.filter(pk=yoruba.pk).exists()
    assert Rater.objects.get(user=outsider).cohort_paths() == ["nigeria:yoruba"]
    assert client.get(_start(study)).url == reverse("ratings:demographics", args=[study.slug])

    with pytest.raises(ProposalDecided):
        cohort_proposal_accept(proposal=proposal, path="nigeria:yoruba")


def test_admin_rejects_a_proposal_and_the_rater_chooses_again(study, outsider):
    client = _consented_client(study, outsider)
    client.post(reverse("ratings:cohorts", args=[study.slug]), {"proposal": "Atlantis"})
    proposal = CohortProposal.objects.get()
    admin = Client()
    admin.force_login(User.objects.create_superuser("ada", "ada@example.org", "x-ada"))
    admin.post(
        reverse("admin:ratings_cohortproposal_changelist"),
        {"action": "reject", "_selected_action": [proposal.pk]},
    )
    proposal.refresh_from_db()
    assert proposal.status == CohortProposal.Status.REJECTED
    assert not Cohort.objects.filter(path="atlantis").exists()
    assert not cohort_proposal_reject(proposal=proposal)  # decided once only
    response = client.get(_start(study), follow=True)
    assert "“Atlantis” was not added to this study" in response.content.decode()


def test_accept_form_refuses_a_bad_path(study, outsider):
    proposal = cohort_proposal_submit(study=study, rater=rater_ensure(user=outsider), text="Igbo")
    admin = Client()
    admin.force_login(User.objects.create_superuser("ada", "ada@example.org", "x-ada"))
    prefix = f"proposal-{proposal.pk}"
    response = admin.post(
        reverse("admin:ratings_cohortproposal_changelist"),
        {
            "action": "accept_as_cohort",
            "_selected_action": [proposal.pk],
            "apply": "1",
            f"{prefix}-path": "Nigeria / Igbo",
            f"{prefix}-name": "Igbo",
        },
    )
    assert "is not a cohort path" in response.content.decode()
    proposal.refresh_from_db()
    assert proposal.status == CohortProposal.Status.PENDING


# The optional questions


def _past_cohorts(study, user: User) -> Client:
    client = _consented_client(study, user)
    client.post(
        reverse("ratings:cohorts", args=[study.slug]),
        {"cohorts": [Cohort.objects.get(path="india").pk]},
    )
    return client


def test_skipping_the_questions_stores_no_answer_and_does_not_ask_again(study, outsider):
    client = _past_cohorts(study, outsider)
    url = reverse("ratings:demographics", args=[study.slug])
    assert client.get(_start(study)).url == url
    page = client.get(url).content.decode()
    assert "Skip" in page and "Your age" in page
    response = client.post(url, {"skip": "1", "age_band": "25-34", "languages": "Tamil"})
    assert response.url == _start(study)
    answers = Participation.objects.get(rater__user=outsider).demographics
    assert answers == {"age_band": None, "languages": None, "years_lived": None}
    assert client.get(_start(study)).url == reverse("ratings:rate", args=[study.slug])


def test_answers_to_the_questions_are_stored(study, outsider):
    client = _past_cohorts(study, outsider)
    client.post(
        reverse("ratings:demographics", args=[study.slug]),
        {"age_band": "25-34", "languages": "Tamil, English; tamil,  ", "years_lived": "15+"},
    )
    answers = Participation.objects.get(rater__user=outsider).demographics
    assert answers == {"age_band": "25-34", "languages": ["Tamil", "English"], "years_lived": "15+"}


def test_an_answer_outside_the_choices_is_refused(study, outsider):
    client = _past_cohorts(study, outsider)
    response = client.post(reverse("ratings:demographics", args=[study.slug]), {"age_band": "12"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert Participation.objects.get(rater__user=outsider).demographics == {}


def test_study_that_does_not_ask_goes_from_cohorts_to_pairs(study, outsider):
    study.ask_demographics = False
    study.save()
    client = _past_cohorts(study, outsider)
    assert client.get(_start(study)).url == reverse("ratings:rate", args=[study.slug])


# Completion


def _finish(pair_factory, rater: Rater, **study_fields) -> None:
    pair = pair_factory()
    study = pair.study
    for field, value in {"pairs_per_rater": 1, **study_fields}.items():
        setattr(study, field, value)
    study.save()
    Vote.objects.create(
        study=study, pair=pair, rater=rater, shown_left="a", time_on_task_ms=9000, kind="pair"
    )


def test_completion_shows_the_code_and_records_completed_at_once(pair_factory, rater_india):
    _finish(pair_factory, rater_india, completion_code="C0DE-7F3A")
    client = Client()
    client.force_login(rater_india.user)
    url = reverse("ratings:complete", args=["test-study"])
    page = client.get(url).content.decode()
    assert "C0DE-7F3A" in page
    completed_at = Participation.objects.get(rater=rater_india).completed_at
    assert completed_at is not None
    client.get(url)
    assert Participation.objects.get(rater=rater_india).completed_at == completed_at
    assert client.get(_start(rater_india.participations.get().study)).url == url


def test_completion_redirects_to_the_panel_url_with_nothing_added(pair_factory, rater_india):
    target = "https://app.prolific.com/submissions/complete?cc=C0DE7F3A"
    _finish(pair_factory, rater_india, completion_url=target)
    client = Client()
    client.force_login(rater_india.user)
    response = client.get(reverse("ratings:complete", args=["test-study"]))
    assert response.status_code == 302
    assert response.url == target
    assert Participation.objects.get(rater=rater_india).completed_at is not None


def test_completion_before_the_quota_hands_out_no_code(study, rater_india):
    study.completion_code = "C0DE-7F3A"
    study.save()
    client = Client()
    client.force_login(rater_india.user)
    response = client.get(reverse("ratings:complete", args=[study.slug]))
    page = response.content.decode()
    assert response.status_code == 409
    assert "You have not finished this study yet." in page
    assert "C0DE-7F3A" not in page
    assert Participation.objects.get(rater=rater_india).completed_at is None
