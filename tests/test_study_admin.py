"""The study admin: every setting in a section, and researcher access granted from it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from ratings.access import research_allowed, studies_for_researcher
from ratings.models import StudyGrant

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(db) -> tuple[Client, User]:
    admin = User.objects.create_superuser(username="ada", password="x-ada", email="a@example.org")
    client = Client()
    client.force_login(admin)
    return client, admin


def test_the_study_pages_show_the_scoring_settings(admin_client_, study):
    client, _ = admin_client_
    for url in (
        reverse("admin:ratings_study_add"),
        reverse("admin:ratings_study_change", args=[study.pk]),
    ):
        page = client.get(url).content.decode()
        assert 'name="split_min_share"' in page
        assert 'name="min_cohort_size"' in page
        assert "researcher access" in page.lower()


def test_a_grant_made_in_the_admin_opens_that_study_only(admin_client_, study, outsider):
    client, admin = admin_client_
    other = type(study).objects.create(name="Other", slug="other")
    url = reverse("admin:ratings_study_change", args=[study.pk])
    form = client.get(url).context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if value is not None and not isinstance(value, list)
    }
    data.update(
        {
            "name": study.name,
            "slug": study.slug,
            "cohorts": [c.pk for c in study.cohorts.all()],
            "criteria-TOTAL_FORMS": "0",
            "criteria-INITIAL_FORMS": "0",
            "invites-TOTAL_FORMS": "0",
            "invites-INITIAL_FORMS": "0",
            "grants-TOTAL_FORMS": "1",
            "grants-INITIAL_FORMS": "0",
            "grants-0-user": outsider.pk,
        }
    )
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    grant = StudyGrant.objects.get(study=study, user=outsider)
    assert grant.granted_by == admin
    assert research_allowed(user=outsider, study=study)
    assert not research_allowed(user=outsider, study=other)
    assert list(studies_for_researcher(user=outsider)) == [study]


def test_the_home_page_links_a_researcher_to_the_results_of_granted_studies_only(
    study, researcher, outsider
):
    hidden = type(study).objects.create(name="Hidden study", slug="hidden")
    client = Client()
    client.force_login(researcher)
    page = client.get(reverse("ratings:home")).content.decode()
    assert reverse("ratings:dashboard", args=[study.slug]) in page
    assert reverse("ratings:dashboard", args=[hidden.slug]) not in page
    client.force_login(outsider)
    page = client.get(reverse("ratings:home")).content.decode()
    assert reverse("ratings:dashboard", args=[study.slug]) not in page


def test_the_home_page_lists_each_study_once_per_role(study, researcher, outsider):
    """A researcher finds a granted study under its results, not again as one to rate."""
    other = type(study).objects.create(name="Other study", slug="other")
    client = Client()
    client.force_login(researcher)
    page = client.get(reverse("ratings:home")).content.decode()
    assert page.count(">Test study</a>") == 1
    assert reverse("ratings:start", args=[study.slug]) not in page
    assert reverse("ratings:dashboard", args=[study.slug]) in page
    # A study the researcher is not granted is still there to rate.
    assert reverse("ratings:start", args=[other.slug]) in page
    # Anyone else is offered both studies to rate, and no results.
    client.force_login(outsider)
    page = client.get(reverse("ratings:home")).content.decode()
    assert reverse("ratings:start", args=[study.slug]) in page
    assert reverse("ratings:start", args=[other.slug]) in page
    assert "Results of your studies" not in page
