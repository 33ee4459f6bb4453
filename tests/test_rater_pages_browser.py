"""The rater's pages in real Chromium at three sizes and in two languages (issue 13).

Both images stay inside the viewport while every question is answered, on a desktop down to a
600 px high window and on a phone; the phone's comparison view opens and closes; axe-core
finds no WCAG 2.2 AA violation on any rater page; one Tab per question; and the next pair's
images are on screen quickly after Enter (measured with the Performance API and printed; the
numbers are recorded in bench/RESULTS.md, never asserted as timings here).
"""

from __future__ import annotations

import json
import os

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.conf import settings
from django.test import Client

from ratings.models import Cohort, Criterion, Study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 900}
LOW_DESKTOP = {"width": 1280, "height": 600}
PHONE = {"width": 390, "height": 844}
WCAG_22_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def _browser_context(chromium, viewport, language):
    """A browser context asking for `language`; a phone has touch."""
    phone = viewport["width"] < 600
    return chromium.new_context(
        viewport=viewport,
        locale=language,
        has_touch=phone,
        is_mobile=phone,
        extra_http_headers={"Accept-Language": language},
    )


def _context(chromium, live_server, user, viewport, language):
    """A browser context for a signed-in rater, asking for `language`; a phone has touch."""
    client = Client()
    client.force_login(user)
    context = _browser_context(chromium, viewport, language)
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


def _ready(study, pair_factory, pairs: int, quota: int = 3) -> None:
    Study.objects.filter(pk=study.pk).update(
        pairs_per_rater=quota, attention_check_rate=0, min_seconds_per_pair=0
    )
    for _ in range(pairs):
        pair_factory()


def _in_viewport(page, selector: str) -> list[bool]:
    return page.evaluate(
        """selector => [...document.querySelectorAll(selector)].map(element => {
            const box = element.getBoundingClientRect();
            return box.width > 0 && box.top >= 0 && box.left >= 0
                && box.bottom <= window.innerHeight + 0.5 && box.right <= window.innerWidth + 0.5;
        })""",
        selector,
    )


def _focused_question(page) -> int | str:
    return page.evaluate(
        """() => {
            const active = document.activeElement;
            const question = active.closest('fieldset.question');
            if (!question) return active.tagName.toLowerCase();
            return [...document.querySelectorAll('fieldset.question')].indexOf(question);
        }"""
    )


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize(
    "viewport", [DESKTOP, LOW_DESKTOP, PHONE], ids=["1280x900", "1280x600", "390x844"]
)
def test_both_images_are_in_view_while_each_question_is_answered(
    browser, live_server, study, pair_factory, rater_india, viewport, language
):
    _ready(study, pair_factory, pairs=2)
    context, page = _context(browser, live_server, rater_india.user, viewport, language)
    try:
        page.goto(f"{live_server.url}/s/test-study/rate/")
        page.wait_for_selector("h1.prompt")
        assert page.get_attribute("html", "lang") == language
        labels = page.eval_on_selector_all(".pair img", "images => images.map(i => i.alt)")
        assert labels == (
            ["Image 1 of 2", "Image 2 of 2"]
            if language == "en"
            else ["Imagen 1 de 2", "Imagen 2 de 2"]
        )
        questions = page.locator("fieldset.question")
        assert questions.count() == 4
        for index in range(4):
            question = questions.nth(index)
            # Answered the way this screen answers: a tap on a phone, a click on a desktop.
            answer = question.locator("label").nth(index % 4)
            question.scroll_into_view_if_needed()
            if viewport is PHONE:
                answer.tap()
            else:
                answer.click()
            assert all(_in_viewport(page, f"fieldset.question:nth-of-type({index + 1})")), index
            # Seen, not hidden under the images that stay in view.
            assert page.evaluate(
                """index => {
                    const question = document.querySelectorAll('fieldset.question')[index];
                    const box = question.querySelector('legend').getBoundingClientRect();
                    const hit = document.elementFromPoint(box.left + 4, box.top + box.height / 2);
                    return question.contains(hit);
                }""",
                index,
            ), index
            # Both images, whole, beside or above the question being answered.
            assert _in_viewport(page, ".pair img") == [True, True], (viewport, index)
        first, second = (page.locator(".pair img").nth(i).bounding_box() for i in range(2))
        assert second["x"] >= first["x"] + first["width"]  # side by side, always
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        # Keyboard hints only where there is a keyboard.
        assert page.locator("#keys-help").is_visible() is (viewport is not PHONE)
        if viewport is PHONE:
            for box in page.locator("fieldset.question label").evaluate_all(
                "labels => labels.map(l => l.getBoundingClientRect().height)"
            ):
                assert box >= 44  # large tap targets
    finally:
        context.close()


def test_phone_comparison_view_opens_swipes_and_closes(
    browser, live_server, study, pair_factory, rater_india
):
    _ready(study, pair_factory, pairs=2)
    context, page = _context(browser, live_server, rater_india.user, PHONE, "es")
    try:
        page.goto(f"{live_server.url}/s/test-study/rate/")
        page.wait_for_selector("h1.prompt")
        assert not page.locator("dialog#compare").is_visible()
        page.locator(".pair button.enlarge").nth(1).tap()
        dialog = page.locator("dialog#compare")
        dialog.wait_for(state="visible")
        # The same two images as on screen, one screen wide each: swiped, not shrunk.
        shown = page.eval_on_selector_all(".pair img", "images => images.map(i => i.src)")
        enlarged = page.eval_on_selector_all(
            "#compare-track img", "images => images.map(i => i.src)"
        )
        assert enlarged == shown
        track = page.evaluate(
            """() => { const t = document.getElementById('compare-track');
                return {scroll: t.scrollWidth, width: t.clientWidth, left: t.scrollLeft}; }"""
        )
        assert track["scroll"] >= 2 * track["width"] - 2
        assert track["left"] > 0  # opened on the image that was tapped, the second
        first_box = page.locator("#compare-track img").first.bounding_box()
        assert first_box["width"] > PHONE["width"] * 0.8  # enlarged: nearly the screen's width
        page.evaluate("document.getElementById('compare-track').scrollTo({left: 0})")
        page.wait_for_function("document.getElementById('compare-track').scrollLeft === 0")
        _axe(page, "comparison view")
        page.get_by_role("button", name="Cerrar").tap()
        dialog.wait_for(state="hidden")
        assert page.evaluate("document.activeElement.classList.contains('enlarge')")
        # And with Escape, from a keyboard.
        page.locator(".pair button.enlarge").first.click()
        dialog.wait_for(state="visible")
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")
    finally:
        context.close()


def test_a_desktop_click_enlarges_both_images_side_by_side(
    browser, live_server, study, pair_factory, rater_india
):
    _ready(study, pair_factory, pairs=2)
    context, page = _context(browser, live_server, rater_india.user, LOW_DESKTOP, "en")
    try:
        page.goto(f"{live_server.url}/s/test-study/rate/")
        page.locator(".pair img").first.click()
        page.locator("dialog#compare").wait_for(state="visible")
        first, second = (page.locator("#compare-track img").nth(i).bounding_box() for i in range(2))
        small = page.locator(".pair img").first.bounding_box()
        assert second["x"] >= first["x"] + first["width"]
        assert first["width"] > small["width"] * 1.3
        assert _in_viewport(page, "#compare-track img") == [True, True]
        page.get_by_role("button", name="Close").click()
        page.locator("dialog#compare").wait_for(state="hidden")
    finally:
        context.close()


def test_one_tab_per_question_and_focus_back_on_the_first_after_a_vote(
    browser, live_server, study, pair_factory, rater_india
):
    _ready(study, pair_factory, pairs=3)
    context, page = _context(browser, live_server, rater_india.user, DESKTOP, "en")
    try:
        page.goto(f"{live_server.url}/s/test-study/rate/")
        page.wait_for_selector("h1.prompt")
        assert _focused_question(page) == 0
        for expected in (1, 2, 3):
            page.keyboard.press("Tab")
            assert _focused_question(page) == expected
        page.keyboard.press("Tab")
        assert _focused_question(page) == "textarea"
        # Focus is visible on the question it is in.
        page.keyboard.press("Shift+Tab")
        outline = page.evaluate(
            "getComputedStyle(document.activeElement.closest('fieldset')).outlineStyle"
        )
        assert outline != "none"
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Shift+Tab")
        assert _focused_question(page) == 0
        assignment = page.get_attribute("input[name=assignment]", "value")
        for key in "1230":
            page.keyboard.press(key)
        page.keyboard.press("Enter")
        page.wait_for_function(
            "id => document.querySelector('input[name=assignment]').value !== id", arg=assignment
        )
        assert _focused_question(page) == 0
    finally:
        context.close()


def test_next_pair_latency_after_enter(browser, live_server, study, pair_factory, rater_india):
    """Time from Enter to the next pair's two images painted, by the Performance API.

    Printed as JSON for bench/RESULTS.md; the test checks that the images shown were the ones
    fetched ahead and were on screen complete, not how fast (no timed assertion).
    """
    pairs = int(os.environ.get("POLYPHONY_NEXT_PAIR_ROUNDS", "12"))  # bench/next_pair.py: more
    _ready(study, pair_factory, pairs=pairs + 1, quota=pairs + 1)
    context, page = _context(browser, live_server, rater_india.user, DESKTOP, "en")
    latencies = []
    try:
        page.goto(f"{live_server.url}/s/test-study/rate/")
        page.wait_for_selector("h1.prompt")
        page.evaluate(
            """() => {
                window.pairShown = new Promise(() => {});
                document.addEventListener('keydown', event => {
                    if (event.key !== 'Enter') return;
                    const start = performance.now();
                    const before = [...document.querySelectorAll('.pair img')].map(i => i.src);
                    window.pairShown = new Promise(resolve => {
                        const check = () => {
                            const images = [...document.querySelectorAll('.pair img')];
                            const changed = images.some((i, n) => i.src !== before[n]);
                            if (changed && images.every(i => i.complete && i.naturalWidth > 0)) {
                                requestAnimationFrame(() => resolve(performance.now() - start));
                            } else {
                                requestAnimationFrame(check);
                            }
                        };
                        check();
                    });
                }, true);
            }"""
        )
        for _ in range(pairs):
            page.wait_for_function("document.querySelectorAll('link[rel=prefetch]').length === 2")
            # Let the prefetch land, as it does while a rater answers four questions.
            page.wait_for_timeout(400)
            for key in "1230":
                page.keyboard.press(key)
            page.keyboard.press("Enter")
            latencies.append(page.evaluate("window.pairShown"))
        # The part of it that is the vote's round trip to the server.
        posts = page.evaluate(
            """() => performance.getEntriesByType('resource')
                .filter(entry => entry.name.includes('/vote/')).map(entry => entry.duration)"""
        )
    finally:
        context.close()
    posts.sort()
    latencies.sort()
    result = {
        "pairs": len(latencies),
        "p50_ms": round(latencies[len(latencies) // 2], 1),
        "p95_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))], 1),
        "max_ms": round(latencies[-1], 1),
        "vote_request_p50_ms": round(posts[len(posts) // 2], 1) if posts else None,
    }
    print("next-pair latency", json.dumps(result))
    assert len(latencies) == pairs


def _axe(page, where: str) -> None:
    results = Axe().run(page, options={"runOnly": WCAG_22_AA})
    assert results.violations_count == 0, f"{where}:\n{results.generate_report()}"


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280x900", "390x844"])
def test_axe_finds_no_violation_on_any_rater_page(
    browser, live_server, study, pair_factory, outsider, viewport, language
):
    _ready(study, pair_factory, pairs=2, quota=1)
    context, page = _context(browser, live_server, outsider, viewport, language)
    base = f"{live_server.url}/s/test-study"
    try:
        page.goto(f"{base}/")
        page.wait_for_url(f"{base}/consent/")
        _axe(page, "consent")
        page.locator("button[value=accept]").click()
        page.wait_for_url(f"{base}/cohorts/")
        _axe(page, "cohorts")
        page.locator("input[type=checkbox][value]").first.check()
        page.locator("form.cohort-form button[type=submit]").first.click()
        page.wait_for_url(f"{base}/about-you/")
        _axe(page, "demographics")
        page.locator("button[name=skip]").click()
        page.wait_for_url(f"{base}/rate/")
        page.wait_for_selector("h1.prompt")
        _axe(page, "rating")
        page.locator("details.skip summary").click()
        _axe(page, "skip")
        page.goto(f"{base}/stop/")
        _axe(page, "stop")
        page.goto(f"{base}/rate/")
        for index in range(4):
            page.locator("fieldset.question").nth(index).locator("label").first.click()
        with page.expect_navigation():
            page.locator("#vote-form button[type=submit]").click()
        page.wait_for_url(f"{base}/done/")
        _axe(page, "done")
        page.goto(f"{base}/stop/")
        page.locator("form.actions button.primary").click()
        page.wait_for_selector("h1")
        _axe(page, "stopped")
    finally:
        context.close()


@pytest.fixture
def spanish_study(study, pair_factory):
    """The test study translated into Spanish, all but one question and a prompt."""
    Study.objects.filter(pk=study.pk).update(
        name_es="Estudio de prueba",
        consent_text_es="Puede parar cuando quiera.",
        pairs_per_rater=2,
        attention_check_rate=0,
        min_seconds_per_pair=0,
    )
    Criterion.objects.filter(study=study, key="alignment").update(
        question_es="¿Qué imagen muestra mejor la descripción?"
    )
    # A wording of the study's own, with no Spanish: shown as written.
    Criterion.objects.filter(study=study, key="offensiveness").update(
        question_en="Which image would upset people in {culture}?",
        question="Which image would upset people in {culture}?",
    )
    Cohort.objects.filter(path="india").update(name_es="India (es)")
    pair = pair_factory()
    pair.prompt.text_es = "un plato de idli (es)"
    pair.prompt.save(update_fields=["text_es"])
    return study


def test_a_spanish_rater_on_a_phone_rates_a_translated_study(
    browser, live_server, spanish_study, outsider
):
    context, page = _context(browser, live_server, outsider, PHONE, "es")
    base = f"{live_server.url}/s/test-study"
    try:
        page.goto(f"{base}/")
        page.wait_for_url(f"{base}/consent/")
        assert "Puede parar cuando quiera." in page.inner_text("main")
        assert "Estudio de prueba" in page.inner_text("h1")
        page.locator("button[value=accept]").tap()
        page.wait_for_url(f"{base}/cohorts/")
        assert "India (es)" in page.inner_text("main")
        page.get_by_label("India (es)", exact=True).check()
        page.locator("form.cohort-form button[type=submit]").first.tap()
        page.wait_for_url(f"{base}/about-you/")
        page.locator("button[name=skip]").tap()
        page.wait_for_url(f"{base}/rate/")
        assert page.inner_text("h1.prompt").startswith("un plato de idli (es)")
        # The prompt the images were rendered from is one tap away.
        assert not page.locator("#prompt-original").is_visible()
        page.locator("details.original summary").tap()
        assert page.inner_text("#prompt-original").startswith("a plate of idli")
        legends = page.eval_on_selector_all(
            "fieldset.question legend", "ls => ls.map(l => l.textContent)"
        )
        assert legends[0] == "¿Qué imagen muestra mejor la descripción?"
        assert legends[3] == "Which image would upset people in India (es)?"  # the fallback
        for index in range(4):
            page.locator("fieldset.question").nth(index).locator("label").nth(1).tap()
            assert _in_viewport(page, ".pair img") == [True, True]
        # The language menu names each language in its own name.
        assert page.eval_on_selector_all(
            "#language option", "os => os.map(o => o.textContent)"
        ) == [
            "English",
            "Español",
        ]
    finally:
        context.close()


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280x900", "390x844"])
def test_axe_finds_no_violation_on_the_sign_in_and_sign_up_pages(
    browser, live_server, study, viewport, language
):
    # A rater invited by mail arrives signed out: sign-up, the mail's link, sign-in, reset.
    from django.core import mail

    context = _browser_context(browser, viewport, language)
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/accounts/signup/?next=/s/test-study/")
        _axe(page, "sign-up")
        page.locator("input[name=email]").fill("new-rater@example.org")
        with page.expect_navigation():
            page.locator("form.stack button[type=submit]").click()
        page.wait_for_selector("h1")
        _axe(page, "sign-up mail sent")
        link = next(word for word in mail.outbox[-1].body.split() if "/accounts/signup/" in word)
        page.goto(link)
        page.wait_for_selector("input[name=password1]")
        page.locator("button[type=submit].primary").click()  # empty: the errors shown
        page.wait_for_selector(".error")
        _axe(page, "choose a password, with errors")
        for where, url in (
            ("sign-in", "/accounts/login/"),
            ("password reset", "/accounts/password_reset/"),
            ("expired or altered link", "/accounts/signup/not-a-link/"),
        ):
            page.goto(f"{live_server.url}{url}")
            _axe(page, where)
    finally:
        context.close()
