"""The researchers' rater overview: right numbers, pseudonyms only, granted researchers only."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from ratings.access import study_grant
from ratings.assignment.services import assignment_for_rater
from ratings.exports.privacy import rater_pseudonym
from ratings.models import Participation
from ratings.voting.services import assignment_skip
from tests.rating_pages import serve_and_vote

URL = reverse("ratings:rater_overview", args=["test-study"])
ALL_TIES = dict.fromkeys(["alignment", "representation", "stereotype", "offensiveness"], "tie")


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _rows(page: str) -> list[list[str]]:
    rows = re.findall(r"<tr(?: class=\"flagged\")?>\s*<th scope=\"row\">(.*?)</tr>", page, re.S)
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.split(r"</t[hd]>", row)][:8]
        for row in rows
    ]


def _voting(study, pair_factory, rater_india, rater_tamil, rater_korea) -> None:
    type(study).objects.filter(pk=study.pk).update(
        attention_check_rate=0.5, min_seconds_per_pair=3, max_failed_checks=0
    )
    study.refresh_from_db()
    for _ in range(4):
        pair_factory()
    # India: three pairs at 4, 10 and 20 seconds, and an identical check failed.
    serve_and_vote(study, rater_india, seconds=4)
    serve_and_vote(study, rater_india, dict(ALL_TIES, alignment="1"), seconds=8)
    serve_and_vote(study, rater_india, seconds=10)
    serve_and_vote(study, rater_india, seconds=2)  # a repeat check, answered too fast
    serve_and_vote(study, rater_india, seconds=20)
    # Tamil: one pair at 6 seconds, an identical check passed, one pair skipped.
    serve_and_vote(study, rater_tamil, seconds=6)
    serve_and_vote(study, rater_tamil, ALL_TIES, seconds=5)
    skipped = assignment_for_rater(study=study, rater=rater_tamil)
    assignment_skip(rater=rater_tamil, assignment_id=skipped.pk, reason="cant_see")
    # Korea has consented but has nothing to rate.


def test_overview_counts_votes_checks_time_and_flags(
    study, pair_factory, rater_india, rater_tamil, rater_korea, researcher
):
    _voting(study, pair_factory, rater_india, rater_tamil, rater_korea)
    response = _client(researcher).get(URL)
    assert response.status_code == 200
    rows = {row[0]: row[1:] for row in _rows(response.content.decode())}

    def pseudonym(rater):
        return rater_pseudonym(salt=study.pseudonym_salt, rater_id=rater.pk)

    # pairs rated, skipped, checks passed, checks failed, too fast, median time, flagged
    assert rows == {
        pseudonym(rater_india): ["3", "0", "0", "2", "1", "10.0 s", "flagged"],
        pseudonym(rater_tamil): ["1", "1", "1", "0", "0", "6.0 s", "no"],
        pseudonym(rater_korea): ["0", "0", "0", "0", "0", "—", "no"],
    }
    assert Participation.objects.get(study=study, rater=rater_india).flagged


def test_overview_sorts_flagged_raters_first_and_by_other_columns(
    study, pair_factory, rater_india, rater_tamil, rater_korea, researcher
):
    _voting(study, pair_factory, rater_india, rater_tamil, rater_korea)
    client = _client(researcher)
    india = rater_pseudonym(salt=study.pseudonym_salt, rater_id=rater_india.pk)
    tamil = rater_pseudonym(salt=study.pseudonym_salt, rater_id=rater_tamil.pk)
    korea = rater_pseudonym(salt=study.pseudonym_salt, rater_id=rater_korea.pk)

    def order(query: str) -> list[str]:
        return [row[0] for row in _rows(client.get(URL + query).content.decode())]

    assert order("")[0] == india
    assert order("?sort=flagged")[0] == india
    assert order("?sort=time") == [tamil, india, korea]  # fastest first, no votes last
    assert order("?sort=votes") == [india, tamil, korea]
    assert order("?sort=nonsense")[0] == india


def test_overview_shows_no_username_email_or_panel_id(
    study, pair_factory, rater_india, rater_tamil, rater_korea, researcher
):
    for rater, email in [(rater_india, "asha@example.org"), (rater_tamil, "kavya@example.org")]:
        rater.user.email = email
        rater.user.save()
    rater_india.panel_id = "PANEL5f3e9a"
    rater_india.save()
    _voting(study, pair_factory, rater_india, rater_tamil, rater_korea)
    page = _client(researcher).get(URL).content.decode()
    assert rater_pseudonym(salt=study.pseudonym_salt, rater_id=rater_india.pk) in page
    for secret in ["asha", "kavya", "minji", "example.org", "PANEL5f3e9a"]:
        assert secret not in page


def test_staff_without_a_grant_may_not_see_the_overview(study, rater_india):
    staff = User.objects.create_user(username="sam", password="x-sam", is_staff=True)
    assert _client(staff).get(URL).status_code == 403
    study_grant(study=study, user=staff)
    assert _client(staff).get(URL).status_code == 200


def test_raters_and_outsiders_are_refused(study, rater_india, outsider):
    assert _client(rater_india.user).get(URL).status_code == 403
    assert _client(outsider).get(URL).status_code == 403
    anonymous = Client().get(URL)
    assert anonymous.status_code == 302
    assert anonymous.url.startswith(reverse("login"))
