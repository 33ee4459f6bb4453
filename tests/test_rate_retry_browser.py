"""rate.js in real Chromium when the server is briefly away (issue 14): a vote answered 503
is sent again with a wait, the rater is told it is retrying, and one vote is stored."""

from __future__ import annotations

import json

import pytest

from ratings.models import Vote
from tests.test_rating_keyboard_browser import _ready_study, _signed_in_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_vote_answered_503_is_retried_and_stored_once(
    browser, live_server, study, pair_factory, rater_india
):
    _ready_study(study, pair_factory, pairs=4)
    context, page = _signed_in_page(
        browser, live_server, rater_india.user, {"width": 1200, "height": 900}
    )
    refusals = []

    def database_away_once(route):
        # The fault, at the network: the first post meets the server's 503 for an outage.
        if route.request.method == "POST" and not refusals:
            refusals.append(route.request.url)
            route.fulfill(
                status=503,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body=json.dumps({"error": "The service is briefly unavailable."}),
            )
            return
        route.continue_()

    try:
        page.route("**/s/test-study/vote/", database_away_once)
        page.goto(f"{live_server.url}/s/test-study/rate/")
        page.evaluate("window.loadedOnce = true")
        first = page.get_attribute("input[name=assignment]", "value")
        for key in ("1", "2", "3", "0"):
            page.keyboard.press(key)
        page.keyboard.press("Enter")
        page.wait_for_selector(".retry-status:not([hidden])", timeout=5000)
        assert "trying again" in page.inner_text(".retry-status")
        page.wait_for_function(
            f"document.querySelector('input[name=assignment]').value !== '{first}'",
            timeout=15000,
        )
        assert page.evaluate("window.loadedOnce === true")  # no page load in between
        assert page.is_hidden(".retry-status")
        assert len(refusals) == 1
        assert Vote.objects.filter(rater=rater_india).count() == 1
    finally:
        context.close()
