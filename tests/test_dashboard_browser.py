"""A researcher reads the dashboard in real Chromium: named charts, tables, drill-down."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

# The scored study of the view tests: scores at two levels, a split, a consensus, insufficient.
from tests.test_dashboard_views import score_variants, scored  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("scored"),
]

# Where a copy of the desktop screenshot goes, to look at; POLYPHONY_DASHBOARD_PNG overrides.
SCREENSHOT_COPY = Path(os.environ.get("POLYPHONY_DASHBOARD_PNG", "/tmp/dashboard.png"))


def test_researcher_reads_named_charts_with_tables_and_drills_into_a_culture(
    browser, live_server, researcher, tmp_path
):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(f"{live_server.url}/studies/test-study/")
        page.fill("#id_username", "rosa")
        page.fill("#id_password", "x-rosa")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("h1:has-text('Test study')")

        screenshot = tmp_path / "dashboard.png"
        page.screenshot(path=screenshot, full_page=True)
        assert screenshot.stat().st_size > 10_000
        shutil.copyfile(screenshot, SCREENSHOT_COPY)

        # Every chart is an image with a name that says what it shows, and has a table beside it.
        charts = page.locator("svg.chart.diverging")
        assert charts.count() == 3  # India, Korea, Nigeria
        named = page.get_by_role("img", name=re.compile(r"\S"))
        assert named.count() == page.locator("svg.chart").count()
        india = page.get_by_role(
            "img", name=re.compile(r"^India, sd-base versus sd-culture-lora\. alignment: consensus")
        )
        assert india.count() == 1
        assert "representation: split, 45% chose sd-base" in india.get_attribute("aria-label")
        assert page.locator("figure.score-panel table").count() == charts.count()
        assert page.get_by_role("columnheader", name="Share of b (95% interval)").count() == 3
        india_table = page.get_by_role("table", name=re.compile(r"^India, sd-base versus"))
        assert india_table.get_by_role("row", name=re.compile(r"^representation")).count() == 1
        row = india_table.get_by_role("row", name=re.compile(r"^representation"))
        assert row.get_by_role("cell").nth(0).inner_text().startswith("split")
        # A split row leads to its faction panel: who is on each side, and their leans.
        row.get_by_role("link", name="Who is on each side").click()
        page.wait_for_url(re.compile(r"/factions/\d+/$"))
        assert page.get_by_role("heading", name=re.compile("^Who is on each side: India"))
        factions = page.get_by_role("table", name="Each faction's size, lean and answers")
        sizes = factions.locator("tbody tr td.num:first-of-type").all_inner_texts()
        assert sizes == ["8", "6"]
        assert "Faction 1 (leans to sd-base): 8 raters, lean -0.60" in page.inner_text("body")
        page.go_back()
        # Below k: the words, no numbers.
        nigeria = page.get_by_role("table", name=re.compile(r"^Nigeria, sd-base versus"))
        assert nigeria.get_by_role("cell", name="fewer than 5 raters").count() == 4
        assert page.get_by_role("table", name=re.compile("stereotypical and more offensive"))
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the dashboard scrolls sideways by {overflow}px"

        page.get_by_role("link", name="Subcultures and periods of India →").click()
        page.wait_for_selector("h2:has-text('Subcultures and periods of India')")
        assert page.get_by_role("img", name=re.compile(r"^Tamil, sd-base versus")).count() == 1
        assert (
            page.get_by_role(
                "img", name=re.compile(r"^Kerala, sd-base versus.*insufficient")
            ).count()
            == 1
        )
        page.screenshot(path=tmp_path / "dashboard-india.png", full_page=True)
        page.get_by_role("navigation", name="Breadcrumbs").get_by_role(
            "link", name="Test study"
        ).click()
        page.wait_for_selector("a:has-text('Subcultures and periods of India')")
        assert page.locator("svg.chart.diverging").count() == 3
    finally:
        page.close()


def test_on_a_phone_the_page_does_not_scroll_sideways(browser, live_server, researcher, tmp_path):
    page = browser.new_page(viewport={"width": 390, "height": 844})
    try:
        page.goto(f"{live_server.url}/studies/test-study/?cohort=india")
        page.fill("#id_username", "rosa")
        page.fill("#id_password", "x-rosa")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("h2:has-text('Subcultures and periods of India')")
        page.screenshot(path=tmp_path / "dashboard-phone.png", full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the dashboard scrolls sideways by {overflow}px"
        # The wide tables scroll inside their own box instead.
        box = page.locator(".table-scroll").first.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        assert page.get_by_role("button", name="Recompute now").is_visible()
    finally:
        page.close()
