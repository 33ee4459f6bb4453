"""The rating page in real Chromium: keyboard only, and a phone's narrow screen."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from ratings.models import Assignment, Vote
from tests.rating_pages import completion_route  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEYS = {"1": "1", "2": "2", "3": "tie", "0": "skip"}
CRITERIA = ["alignment", "representation", "stereotype", "offensiveness"]


def _signed_in_page(chromium, live_server, user, viewport):
    # Signing in is the entry pages' business; the rater arrives here signed in.
    client = Client()
    client.force_login(user)
    # Playwright's wait_for_function evaluates its string in the page, which the
    # Content-Security-Policy (no 'unsafe-eval') refuses; the page's own scripts run under it.
    context = chromium.new_context(viewport=viewport, bypass_csp=True)
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )
    return context, context.new_page()


def _focused(page) -> str:
    return page.evaluate(
        """() => {
            const active = document.activeElement;
            const questions = [...document.querySelectorAll('fieldset.question')];
            // A question's one Tab stop is its radio group.
            const question = active.closest('fieldset.question');
            if (question) return 'question ' + questions.indexOf(question);
            return active.tagName.toLowerCase() + (active.type ? ' ' + active.type : '');
        }"""
    )


def _ready_study(study, pair_factory, pairs: int) -> None:
    type(study).objects.filter(pk=study.pk).update(
        pairs_per_rater=3, attention_check_rate=0, min_seconds_per_pair=0
    )
    for _ in range(pairs):
        pair_factory()


@pytest.mark.usefixtures("completion_route")
def test_rater_rates_three_pairs_by_keyboard_only_and_reaches_completion(
    browser,
    live_server,
    study,
    pair_factory,
    rater_india,
):
    _ready_study(study, pair_factory, pairs=4)
    context, page = _signed_in_page(
        browser, live_server, rater_india.user, {"width": 1200, "height": 900}
    )
    plan = [["1", "2", "3", "0"], ["2", "2", "1", "3"], ["0", "1", "2", "1"]]
    served = []
    try:
        page.goto(f"{live_server.url}/s/test-study/rate/")
        # Set once: still there after the votes, so the page was never loaded again.
        page.evaluate("window.loadedOnce = true")
        prefetched: list[str] = []
        for number, keys in enumerate(plan):
            page.wait_for_selector("h1.prompt")
            assert f"{number} of 3 pairs rated" in page.inner_text(".rating-progress")
            assignment_id = page.get_attribute("input[name=assignment]", "value")
            assert page.evaluate("window.loadedOnce === true")
            shown = page.evaluate("[...document.querySelectorAll('.pair img')].map(i => i.src)")
            if number:
                # The next pair is the one whose images were fetched ahead with the last one.
                assert sorted(set(shown)) == sorted(prefetched)
            prefetched = page.evaluate(
                "[...document.querySelectorAll('link[rel=prefetch]')].map(link => link.href)"
            )
            assert len(prefetched) == (2 if number < 2 else 0)
            assert _focused(page) == "question 0"  # ready for the keys at once
            if number == 0:
                # Enter with nothing answered sends nothing: the browser points at question 1.
                page.keyboard.press("Enter")
                page.wait_for_timeout(300)
                assert page.url.endswith("/s/test-study/rate/")
                assert not Vote.objects.exists()
            for position, key in enumerate(keys):
                page.keyboard.press(key)
                expected = f"question {position + 1}" if position < 3 else "button submit"
                assert _focused(page) == expected
            checked = page.evaluate(
                "[...document.querySelectorAll('fieldset.question input:checked')]"
                ".map(i => i.value)"
            )
            assert checked == [KEYS[key] for key in keys]
            if number == 1:
                # Back to the comment with Shift+Tab; Enter in it sends the answers too.
                page.keyboard.press("Shift+Tab")
                assert _focused(page) == "textarea textarea"
                page.keyboard.type("the second one is closer")
            if number < len(plan) - 1:
                # Answered with the next pair as JSON, swapped in without loading a page.
                page.keyboard.press("Enter")
                page.wait_for_function(
                    "id => document.querySelector('input[name=assignment]').value !== id",
                    arg=assignment_id,
                )
            else:
                with page.expect_navigation():
                    page.keyboard.press("Enter")
            served.append((assignment_id, keys))
        page.wait_for_url(f"{live_server.url}/s/test-study/done/")
        assert page.locator("h1.prompt").count() == 0
    finally:
        context.close()

    for assignment_id, keys in served:
        assignment = Assignment.objects.get(pk=assignment_id)
        vote = Vote.objects.get(rater=rater_india, pair=assignment.pair)
        right = "b" if assignment.shown_left == "a" else "a"
        by_screen = {"1": assignment.shown_left, "2": right, "tie": "tie", "skip": "skip"}
        answers = dict(vote.answers.values_list("criterion__key", "choice"))
        assert answers == {
            key: by_screen[KEYS[pressed]] for key, pressed in zip(CRITERIA, keys, strict=True)
        }
    assert (
        Vote.objects.get(comment="the second one is closer").pair_id
        == Assignment.objects.get(pk=served[1][0]).pair_id
    )


@pytest.mark.parametrize(
    "viewport", [{"width": 1200, "height": 900}, {"width": 390, "height": 844}]
)
def test_images_sit_side_by_side_on_a_desktop_and_on_a_phone(
    browser,
    live_server,
    study,
    pair_factory,
    rater_india,
    viewport,
):
    _ready_study(study, pair_factory, pairs=2)
    context, page = _signed_in_page(browser, live_server, rater_india.user, viewport)
    try:
        page.goto(f"{live_server.url}/s/test-study/rate/")
        page.wait_for_selector("h1.prompt")
        first, second = (page.locator(".pair img").nth(i).bounding_box() for i in range(2))
        # Side by side on both, so that they can be compared: on a phone at about half width.
        assert second["x"] >= first["x"] + first["width"]
        assert abs(second["y"] - first["y"]) < 1
        if viewport["width"] < 640:
            assert viewport["width"] * 0.3 < first["width"] <= viewport["width"] / 2
        # Nothing wider than the screen: no sideways scrolling.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        # The next pair's images are fetched ahead while this one is rated.
        assert page.locator('link[rel="prefetch"]').count() == 2
    finally:
        context.close()
