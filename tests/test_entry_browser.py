"""A new rater's way into a study in real Chromium: sign up by the emailed link, consent, cultures,
questions, pairs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from django.core import mail

from ratings.models import Participation, Rater

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Set to a folder to keep a screenshot of every page the rater sees, for looking at them.
SCREENSHOTS = os.environ.get("POLYPHONY_SCREENSHOTS")


def _looks_right(page, name: str, viewport: dict) -> None:
    """Check that the page fits its width and that every control can be reached without scrolling
    sideways; keep a screenshot when asked to."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SCREENSHOTS}/{name}-{viewport['width']}.png", full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name} scrolls sideways by {overflow}px"
    for control in page.locator("main button, main input:visible, main a").all():
        box = control.bounding_box()
        if box is not None:
            assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], name


@pytest.mark.parametrize(
    "viewport", [{"width": 1200, "height": 900}, {"width": 390, "height": 844}]
)
def test_new_rater_signs_up_consents_picks_a_sub_cohort_and_reaches_pairs(
    browser,
    live_server,
    pair_factory,
    viewport,
    settings,
):
    # Both viewports sign the same address up; the mail limits have tests of their own.
    settings.POLYPHONY_SIGNUP_MAILS_PER_EMAIL_PER_HOUR = 0
    pair = pair_factory(cohort_path="india")
    study = pair.study
    page = browser.new_page(viewport=viewport)
    try:
        page.goto(f"{live_server.url}/s/{study.slug}/")
        _looks_right(page, "sign-in", viewport)
        page.get_by_role("link", name="Create an account").click()

        page.wait_for_selector("text=You are invited to take part in")
        page.get_by_label("Email").fill("Meera@example.org")
        _looks_right(page, "sign-up", viewport)
        page.get_by_role("button", name="Send me a link").click()

        page.wait_for_selector("text=We sent a link to")
        _looks_right(page, "sign-up-sent", viewport)
        # The live server runs in this process: its mail is in the test outbox.
        (message,) = mail.outbox
        page.goto(re.search(r"https?://\S+/accounts/signup/\S+/", message.body).group(0))
        page.wait_for_selector("text=Choose your password")
        page.get_by_label("Password", exact=True).fill("ripe mango 4172")
        page.get_by_label("Password again").fill("ripe mango 4172")
        _looks_right(page, "sign-up-password", viewport)
        page.get_by_role("button", name="Create account").click()

        page.wait_for_selector("text=some images may be offensive")
        assert page.get_by_role("link", name="Stop").is_visible()
        _looks_right(page, "consent", viewport)
        page.get_by_role("button", name="I agree, start rating").click()

        page.wait_for_selector("text=Your cultures")
        india, tamil = page.get_by_label("India"), page.get_by_label("Tamil")
        assert not india.is_checked()
        tamil.check()
        assert india.is_checked()  # a sub-culture says its culture too
        page.get_by_text("None of these fits me").click()
        assert page.get_by_label("Your culture, in your own words").is_visible()
        _looks_right(page, "cohorts", viewport)
        page.get_by_role("button", name="Continue").click()

        page.wait_for_selector("text=A few questions about you")
        _looks_right(page, "demographics", viewport)
        page.get_by_role("button", name="Skip").click()

        page.wait_for_selector("h1.prompt")
        assert page.inner_text("h1.prompt") == pair.prompt.text
        assert page.get_by_role("link", name="Stop").is_visible()
        _looks_right(page, "rate", viewport)

        page.get_by_role("link", name="Stop").click()
        page.wait_for_selector("text=Stop here?")
        _looks_right(page, "stop", viewport)
        page.get_by_role("button", name="Stop now").click()
        page.wait_for_selector("text=Thank you for your time")
    finally:
        page.close()

    rater = Rater.objects.get(user__email="Meera@example.org")
    assert rater.cohort_paths() == ["india:tamil"]
    participation = Participation.objects.get(rater=rater, study=study)
    assert participation.consented_at is not None
    assert participation.demographics == {"age_band": None, "languages": None, "years_lived": None}
