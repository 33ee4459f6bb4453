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
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
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
        assert charts.count() == 2  # India, Korea; Nigeria is below k
        named = page.get_by_role("img", name=re.compile(r"\S"))
        assert named.count() == page.locator("svg.chart").count()
        india = page.get_by_role(
            "img", name=re.compile(r"^India, sd-base versus sd-culture-lora\. alignment: consensus")
        )
        assert india.count() == 1
        assert "representation: split, 45% chose sd-base" in india.get_attribute("aria-label")
        assert page.locator("figure.score-panel table").count() == charts.count()
        assert page.get_by_role("columnheader", name="Share of b (95% interval)").count() == 2
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
        # Below k: one line, the words, no numbers.
        assert page.get_by_role("table", name=re.compile(r"^Nigeria, sd-base versus")).count() == 0
        collapsed = page.locator("section.cohort ~ p.collapsed-cohorts")
        assert "Nigeria (fewer than 5 raters)" in collapsed.inner_text()
        # The opening matrix: India split on representation, first.
        matrix = page.get_by_role("table", name=re.compile("Label of every cohort"))
        assert (
            matrix.get_by_role("row")
            .nth(1)
            .get_by_role("rowheader")
            .inner_text()
            .startswith("India")
        )

        # Each chart downloads as SVG and as PNG, for a paper.
        with page.expect_download() as svg_download:
            page.locator(".chart-downloads").first.get_by_role("button", name="SVG").click()
        svg_file = tmp_path / svg_download.value.suggested_filename
        svg_download.value.save_as(svg_file)
        assert svg_file.name == "india-sd-base-versus-sd-culture-lora.svg"
        svg_text = svg_file.read_text()
        assert svg_text.startswith("<?xml") and 'xmlns="http://www.w3.org/2000/svg"' in svg_text
        assert "representation: split" in svg_text
        with page.expect_download() as png_download:
            page.locator(".chart-downloads").first.get_by_role("button", name="PNG").click()
        png_file = tmp_path / png_download.value.suggested_filename
        png_download.value.save_as(png_file)
        assert png_file.name.endswith(".png")
        assert png_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png_file.stat().st_size > 5_000
        assert page.get_by_role("table", name=re.compile("stereotypical and more offensive"))
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the dashboard scrolls sideways by {overflow}px"

        page.get_by_role("link", name="Subcultures and periods of India →").click()
        page.wait_for_selector("h2:has-text('Subcultures and periods of India')")
        assert page.get_by_role("img", name=re.compile(r"^Tamil, sd-base versus")).count() == 1
        assert page.get_by_role("img", name=re.compile(r"^Kerala, sd-base versus")).count() == 0
        assert "Kerala (fewer than 5 raters)" in page.locator("p.collapsed-cohorts").inner_text()
        page.screenshot(path=tmp_path / "dashboard-india.png", full_page=True)
        page.get_by_role("navigation", name="Breadcrumbs").get_by_role(
            "link", name="Test study"
        ).click()
        page.wait_for_selector("a:has-text('Subcultures and periods of India')")
        assert page.locator("svg.chart.diverging").count() == 2
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
