"""The rating page: progress, skipping with a reason, the quota, no work left, prefetching."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from ratings.models import Assignment, AssignmentKind, Participation, Vote
from tests.rating_pages import (
    client_for,
    completion_route,  # noqa: F401  (a fixture)
    image_of,
    image_urls,
    prefetch_urls,
    served_assignment_id,
    vote_through_page,
)

RATE = reverse("ratings:rate", args=["test-study"])
SKIP = reverse("ratings:skip", args=["test-study"])


def _no_checks(study, **fields) -> None:
    fields = {"attention_check_rate": 0, "min_seconds_per_pair": 0, **fields}
    type(study).objects.filter(pk=study.pk).update(**fields)
    study.refresh_from_db()


def test_progress_shows_regular_pairs_rated_out_of_the_quota(study, pair_factory, rater_india):
    _no_checks(study, pairs_per_rater=20)
    for _ in range(4):
        pair_factory()
    client = client_for(rater_india)
    page = client.get(RATE).content.decode()
    assert "0 of 20 pairs rated" in page
    for _ in range(3):
        vote_through_page(client, study)
    page = client.get(RATE).content.decode()
    assert "3 of 20 pairs rated" in page
    assert '<progress id="rating-progress" value="3" max="20">' in page


def test_attention_checks_do_not_count_toward_the_quota(study, pair_factory, rater_india):
    _no_checks(study, pairs_per_rater=20, attention_check_rate=0.5)
    for _ in range(3):
        pair_factory()
    client = client_for(rater_india)
    kinds = [vote_through_page(client, study).kind for _ in range(2)]
    assert kinds == [AssignmentKind.PAIR, AssignmentKind.IDENTICAL_CHECK]
    assert "1 of 20 pairs rated" in client.get(RATE).content.decode()


def test_rating_page_asks_each_criterion_with_every_answer_and_keyboard_help(
    study, pair_factory, rater_tamil
):
    pair_factory()
    page = client_for(rater_tamil).get(RATE).content.decode()
    for question in [
        "Which image better matches the description?",
        "Which image better represents India?",
        "Which image is more stereotypical?",
        "Which image is more offensive to you?",
    ]:
        assert f"<legend>{question}</legend>" in page
    # A question is one Tab stop, its radio group: the fieldset itself takes no focus.
    assert page.count('<fieldset class="question"') == 4 and 'tabindex="0" data-key' not in page
    for value in ["1", "2", "tie", "skip"]:
        assert page.count(f'value="{value}"') == 4
    assert page.count("> Both equally <kbd") == 4 and page.count("> Can't judge <kbd") == 4
    assert "<kbd>Enter</kbd> sends your answers" in page


def test_a_studys_own_wording_is_asked(study, pair_factory, rater_india):
    study.criteria.filter(key="stereotype").update(
        question="Which image leans on clichés about {culture}?"
    )
    pair_factory()
    page = client_for(rater_india).get(RATE).content.decode()
    assert "Which image leans on clichés about India?" in page
    assert "Which image is more stereotypical?" not in page


def test_skip_with_a_reason_serves_the_next_pair_and_never_the_skipped_one(
    study, pair_factory, rater_india, rater_tamil
):
    _no_checks(study)
    pairs = {pair_factory().pk for _ in range(2)}
    client = client_for(rater_india)
    first = Assignment.objects.get(pk=served_assignment_id(client.get(RATE).content.decode()))

    response = client.post(SKIP, {"assignment": first.pk, "reason": "unfamiliar"})
    assert response.status_code == 302 and response.url == RATE
    first.refresh_from_db()
    assert first.skipped_at is not None
    assert first.skip_reason == "unfamiliar"
    assert first.expires_at <= first.skipped_at  # no longer reserved: back in the pool

    second = vote_through_page(client, study)
    assert {first.pair_id, second.pair_id} == pairs
    assert "No pairs left for you" in client.get(RATE).content.decode()
    assert not Vote.objects.filter(pair=first.pair).exists()
    # The pair is back in the pool for everyone else: shown or fetched ahead for the next rater.
    page = client_for(rater_tamil).get(RATE).content.decode()
    offered = [image_of(url) for url in image_urls(page) + prefetch_urls(page)]
    assert first.pair.image_a in offered


def test_skip_for_another_reason_keeps_the_raters_words(study, pair_factory, rater_india):
    pair_factory()
    client = client_for(rater_india)
    assignment_id = served_assignment_id(client.get(RATE).content.decode())
    client.post(
        SKIP, {"assignment": assignment_id, "reason": "other", "note": "  images   too dark "}
    )
    assert Assignment.objects.get(pk=assignment_id).skip_reason == "other: images too dark"


def test_skip_without_a_reason_or_of_a_voted_pair_is_refused(study, pair_factory, rater_india):
    pair_factory()
    client = client_for(rater_india)
    assignment_id = served_assignment_id(client.get(RATE).content.decode())
    response = client.post(SKIP, {"assignment": assignment_id, "reason": ""})
    assert response.status_code == 400
    assert "Choose why you skip this pair." in response.content.decode()
    assert Assignment.objects.get(pk=assignment_id).skipped_at is None

    vote_through_page(client, study)
    response = client.post(SKIP, {"assignment": assignment_id, "reason": "cant_see"})
    assert response.status_code == 409
    assert Assignment.objects.get(pk=assignment_id).skipped_at is None


def test_voting_on_a_skipped_pair_is_refused(study, pair_factory, rater_india):
    pair_factory()
    client = client_for(rater_india)
    assignment_id = served_assignment_id(client.get(RATE).content.decode())
    client.post(SKIP, {"assignment": assignment_id, "reason": "cant_see"})
    response = client.post(
        reverse("ratings:vote", args=["test-study"]),
        {"assignment": assignment_id, "answer_alignment": "1"},
    )
    assert response.status_code == 409
    assert "You skipped this pair." in response.content.decode()


@pytest.mark.usefixtures("completion_route")
def test_quota_met_sends_the_rater_to_completion(study, pair_factory, rater_india):
    _no_checks(study, pairs_per_rater=2)
    for _ in range(4):
        pair_factory()
    client = client_for(rater_india)
    vote_through_page(client, study)
    assert Participation.objects.get(study=study, rater=rater_india).completed_at is None
    vote_through_page(client, study)

    response = client.get(RATE)
    assert response.status_code == 302
    assert response.url == "/s/test-study/done/"
    assert Participation.objects.get(study=study, rater=rater_india).completed_at is not None
    # Nothing stays reserved for a rater who is done.
    assert not Assignment.objects.filter(rater=rater_india, expires_at__gt=timezone.now()).exists()


def test_no_work_left_says_so_and_claims_no_completion(study, pair_factory, rater_korea):
    pair_factory(cohort_path="india")
    response = client_for(rater_korea).get(RATE)
    assert response.status_code == 200
    page = response.content.decode()
    assert "No pairs left for you" in page
    assert "You have rated 0 of 20 pairs, so your part is not finished yet." in page
    assert Participation.objects.get(study=study, rater=rater_korea).completed_at is None


def test_no_work_page_counts_the_pairs_being_made_and_looks_again_by_itself(
    study, variants, rater_korea
):
    from generation.models import Image, Prompt, PromptBatch
    from ratings.models import Cohort

    client = client_for(rater_korea)
    page = client.get(RATE).content.decode()
    assert "No pairs left for you" in page
    assert "being made" not in page and 'http-equiv="refresh"' not in page

    batch = PromptBatch.objects.create(study=study, seeds_per_prompt=2)
    prompt = Prompt.objects.create(
        batch=batch, text="a street", cohort=Cohort.objects.get(path="korea"), category="x"
    )
    for seed, status in ((1, "queued"), (2, "running")):
        for variant in variants:
            Image.objects.create(prompt=prompt, variant=variant, seed=seed, status=status)
    page = client.get(RATE).content.decode()
    assert "2 pairs are being made right now" in page
    assert '<meta http-equiv="refresh" content="10">' in page

    # A cancelled batch makes nothing more.
    PromptBatch.objects.filter(pk=batch.pk).update(status="cancelled")
    assert "being made" not in client.get(RATE).content.decode()


def test_prefetch_links_point_at_the_next_assignments_images(study, pair_factory, rater_india):
    _no_checks(study)
    pairs = {pair.pk: pair for pair in (pair_factory() for _ in range(2))}
    client = client_for(rater_india)
    page = client.get(RATE).content.decode()
    current = Assignment.objects.get(pk=served_assignment_id(page))
    (upcoming_pair,) = [pair for pk, pair in pairs.items() if pk != current.pair_id]
    upcoming_urls = set(prefetch_urls(page))
    assert len(upcoming_urls) == 2
    assert {image_of(url) for url in upcoming_urls} == {
        upcoming_pair.image_a,
        upcoming_pair.image_b,
    }
    assert not set(prefetch_urls(page)) & set(image_urls(page))
    # The pair prefetched is the pair shown next, reserved for this rater meanwhile.
    assert Assignment.objects.filter(rater=rater_india, pair=upcoming_pair).exists()
    vote_through_page(client, study)
    next_page = client.get(RATE).content.decode()
    assert set(image_urls(next_page)) == upcoming_urls
    assert prefetch_urls(next_page) == []  # nothing left to fetch ahead


def test_nothing_is_prefetched_when_this_vote_meets_the_quota(study, pair_factory, rater_india):
    _no_checks(study, pairs_per_rater=1)
    pair_factory()
    pair_factory()
    page = client_for(rater_india).get(RATE).content.decode()
    assert prefetch_urls(page) == []
    assert Assignment.objects.filter(rater=rater_india).count() == 1
