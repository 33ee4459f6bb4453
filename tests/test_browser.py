"""A rater's first visit in real Chromium: sign in, consent, cohorts, vote on a blind pair."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from ratings.models import Vote

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    "viewport", [{"width": 1200, "height": 900}, {"width": 390, "height": 844}]
)
def test_new_rater_signs_in_consents_picks_a_cohort_and_votes(
    browser, live_server, pair_factory, viewport
):
    pair = pair_factory(cohort_path="india")
    User.objects.create_user(username="meera", password="a long password 123")
    page = browser.new_page(viewport=viewport)
    try:
        page.goto(f"{live_server.url}/s/{pair.study.slug}/")
        page.fill("#id_username", "meera")
        page.fill("#id_password", "a long password 123")
        page.get_by_role("button", name="Sign in").click()

        page.wait_for_selector("text=may be offensive")
        assert "may be offensive" in page.content()
        page.get_by_role("button", name="I agree, start rating").click()

        page.get_by_label("Tamil").check()
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("button", name="Skip").click()  # the optional questions

        page.wait_for_selector("h1.prompt")
        assert page.inner_text("h1.prompt") == pair.prompt.text
        images = page.locator(".pair img")
        assert images.count() == 2
        # Labelled by place only: nothing in them names the model.
        assert [images.nth(i).get_attribute("alt") for i in range(2)] == [
            "Image 1 of 2",
            "Image 2 of 2",
        ]
        # Both images really load (natural width > 0), whatever their opaque names.
        assert page.evaluate(
            "Array.from(document.querySelectorAll('.pair img')).every(i => i.naturalWidth > 0)"
        )
        boxes = [images.nth(i).bounding_box() for i in range(2)]
        assert boxes[1]["x"] > boxes[0]["x"]  # side by side, on a phone too
        assert abs(boxes[1]["y"] - boxes[0]["y"]) < 1
        for fieldset in page.locator("form.questions fieldset").all():
            fieldset.get_by_label("Image 2").check()
        page.get_by_role("button", name="Submit").click()
        page.wait_for_selector("text=No pairs left for you")
    finally:
        page.close()

    vote = Vote.objects.get(rater__user__username="meera")
    right = "b" if vote.shown_left == "a" else "a"
    assert set(vote.answers.values_list("choice", flat=True)) == {right}
    assert vote.cohort_paths == ["india:tamil"]
