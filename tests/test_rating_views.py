"""The rater's path through the pages: consent, cohorts, a blind pair, a vote."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from generation.models import ModelVariant
from ratings.entry.services import rater_ensure
from ratings.models import Assignment, Cohort, Rater, Vote
from tests.rating_pages import client_for, served_assignment_id

ALL_ANSWERS = {
    "answer_alignment": "1",
    "answer_representation": "2",
    "answer_stereotype": "tie",
    "answer_offensiveness": "skip",
}


def test_new_rater_is_led_through_consent_and_cohorts_before_pairs(study, outsider):
    client = Client()
    client.force_login(outsider)
    response = client.get(reverse("ratings:start", args=[study.slug]))
    assert response.url == reverse("ratings:consent", args=[study.slug])
    page = client.get(response.url).content.decode()
    assert "may be offensive" in page

    client.post(reverse("ratings:consent", args=[study.slug]), {"decision": "accept"})
    response = client.get(reverse("ratings:start", args=[study.slug]))
    assert response.url == reverse("ratings:cohorts", args=[study.slug])

    tamil = study.cohorts.get(path="india:tamil")
    client.post(reverse("ratings:cohorts", args=[study.slug]), {"cohorts": [tamil.pk]})
    rater = Rater.objects.get(user=outsider)
    assert rater.participations.get(study=study).consented_at is not None
    assert rater.cohort_paths() == ["india:tamil"]
    # The optional questions come next; skipping them leads on to the pairs.
    response = client.get(reverse("ratings:start", args=[study.slug]))
    assert response.url == reverse("ratings:demographics", args=[study.slug])
    client.post(response.url, {"skip": "1"})
    assert client.get(reverse("ratings:start", args=[study.slug])).url == reverse(
        "ratings:rate", args=[study.slug]
    )


def test_declining_consent_stores_no_consent(study, outsider):
    client = Client()
    client.force_login(outsider)
    response = client.post(reverse("ratings:consent", args=[study.slug]), {"decision": "decline"})
    assert "nothing about you has been stored" in response.content.decode()
    assert (
        not rater_ensure(user=outsider).participations.filter(consented_at__isnull=False).exists()
    )
    assert study.declines.count() == 1


def test_cohort_form_refuses_no_choice(study, outsider):
    client = Client()
    client.force_login(outsider)
    client.post(reverse("ratings:consent", args=[study.slug]), {"decision": "accept"})
    response = client.post(reverse("ratings:cohorts", args=[study.slug]), {})
    assert response.status_code == 200
    assert "Choose at least one culture" in response.content.decode()


def test_vote_is_stored_in_variant_terms_whatever_side_was_shown_left(pair_factory, rater_india):
    pair = pair_factory()
    client = client_for(rater_india)
    page = client.get(reverse("ratings:rate", args=[pair.study.slug])).content.decode()
    assignment = Assignment.objects.get(pk=served_assignment_id(page))
    response = client.post(
        reverse("ratings:vote", args=[pair.study.slug]),
        {"assignment": assignment.pk, **ALL_ANSWERS},
    )
    assert response.status_code == 302
    vote = Vote.objects.get(rater=rater_india, pair=pair)
    answers = dict(vote.answers.values_list("criterion__key", "choice"))
    left, right = ("a", "b") if assignment.shown_left == "a" else ("b", "a")
    assert answers == {
        "alignment": left,
        "representation": right,
        "stereotype": "tie",
        "offensiveness": "skip",
    }
    assert vote.shown_left == assignment.shown_left
    assert vote.cohort_paths == ["india"]


def test_rating_page_names_no_variant_seed_or_checkpoint(pair_factory, rater_india):
    pair = pair_factory()
    page = client_for(rater_india).get(reverse("ratings:rate", args=[pair.study.slug]))
    text = page.content.decode()
    assert "Image 1" in text and "Image 2" in text
    for variant in ModelVariant.objects.all():
        for secret in [variant.name, variant.base_checkpoint, variant.lora_path, variant.role]:
            if secret:
                assert secret not in text
    assert str(pair.seed) not in text
    assert pair.prompt.text in text


def test_a_resent_vote_goes_on_and_different_answers_are_refused_with_409(
    pair_factory, rater_india
):
    pair = pair_factory()
    client = client_for(rater_india)
    assignment = served_assignment_id(
        client.get(reverse("ratings:rate", args=[pair.study.slug])).content.decode()
    )
    url = reverse("ratings:vote", args=[pair.study.slug])
    assert client.post(url, {"assignment": assignment, **ALL_ANSWERS}).status_code == 302
    # The same answers again (the first answer was lost on its way): on to the next page.
    again = client.post(url, {"assignment": assignment, **ALL_ANSWERS})
    assert again.status_code == 302
    other = {key: ("2" if value == "1" else "1") for key, value in ALL_ANSWERS.items()}
    changed = client.post(url, {"assignment": assignment, **other})
    assert changed.status_code == 409
    assert "earlier vote on this pair is stored" in changed.content.decode()
    assert Vote.objects.filter(rater=rater_india).count() == 1


def test_vote_for_a_pair_not_served_to_the_rater_is_refused(pair_factory, rater_india, rater_tamil):
    pair = pair_factory()
    served_to_india = served_assignment_id(
        client_for(rater_india)
        .get(reverse("ratings:rate", args=[pair.study.slug]))
        .content.decode()
    )
    response = client_for(rater_tamil).post(
        reverse("ratings:vote", args=[pair.study.slug]),
        {"assignment": served_to_india, **ALL_ANSWERS},
    )
    assert response.status_code == 404
    assert "not served to you" in response.content.decode()
    assert not Vote.objects.exists()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"answer_offensiveness": None}, "missing: offensiveness"),
        ({"answer_stereotype": "left"}, "is not an answer to stereotype"),
        ({"answer_colour": "1"}, "Unknown question(s): colour"),
    ],
)
def test_bad_vote_is_refused_with_a_reason_and_stores_nothing(
    pair_factory, rater_india, change, reason
):
    pair = pair_factory()
    client = client_for(rater_india)
    assignment = served_assignment_id(
        client.get(reverse("ratings:rate", args=[pair.study.slug])).content.decode()
    )
    data = {"assignment": assignment, **ALL_ANSWERS, **change}
    data = {key: value for key, value in data.items() if value is not None}
    response = client.post(reverse("ratings:vote", args=[pair.study.slug]), data)
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert not Vote.objects.exists()


def test_rater_gets_in_group_pairs_only(pair_factory, rater_korea):
    pair_factory(cohort_path="india")
    response = client_for(rater_korea).get(reverse("ratings:rate", args=["test-study"]))
    assert "No pairs left for you" in response.content.decode()


def test_subculture_rater_gets_pairs_of_the_parent_culture(pair_factory, rater_tamil):
    pair = pair_factory(cohort_path="india")
    pair_factory(cohort_path="india:kerala")
    page = client_for(rater_tamil).get(reverse("ratings:rate", args=["test-study"]))
    assert pair.prompt.text in page.content.decode()
    assert "better represents India" in page.content.decode()


def test_rater_never_gets_the_same_pair_twice(pair_factory, rater_india):
    pairs = {pair_factory().pk for _ in range(3)}
    client = client_for(rater_india)
    seen = []
    for _ in range(3):
        page = client.get(reverse("ratings:rate", args=["test-study"])).content.decode()
        assignment = Assignment.objects.get(pk=served_assignment_id(page))
        seen.append(assignment.pair_id)
        client.post(
            reverse("ratings:vote", args=["test-study"]),
            {"assignment": assignment.pk, **ALL_ANSWERS},
        )
    assert sorted(seen) == sorted(pairs)
    page = client.get(reverse("ratings:rate", args=["test-study"])).content.decode()
    assert "No pairs left for you" in page


def test_anonymous_visitor_is_sent_to_sign_in(study):
    response = Client().get(reverse("ratings:rate", args=[study.slug]))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_rater_of_a_sub_culture_the_study_does_not_list_rates_its_cultures_pairs(
    study, pair_factory, rater_tamil
):
    study.cohorts.remove(Cohort.objects.get(path="india:tamil"))  # the study lists India only
    india = pair_factory(cohort_path="india")
    pair_factory(cohort_path="india:kerala")
    client = client_for(rater_tamil)
    # Already in a cohort below one of the study's: no cohort step, straight to the pairs.
    assert client.get(reverse("ratings:start", args=["test-study"])).url.endswith(
        (reverse("ratings:rate", args=["test-study"]), "/about-you/")
    )
    page = client.get(reverse("ratings:rate", args=["test-study"])).content.decode()
    assert india.prompt.text in page
    assert "better represents India" in page
    assignment = Assignment.objects.get(pk=served_assignment_id(page))
    assert assignment.cohort.path == "india"  # counted toward the study's own cohort
