"""The dashboard's pure parts: SVG charts from numbers, and which cohorts' counts stay hidden."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratings.cohorts import cohort_path_parent
from ratings.results.charts import (
    CENTRE,
    HALF,
    BarRow,
    diverging_bars,
    diverging_extent,
    stacked_bar,
)
from ratings.results.dashboard import cohorts_hidden

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)


def _row(svg: ET.Element, name: str) -> ET.Element:
    (row,) = [g for g in svg.iter(f"{SVG}g") if g.get("data-criterion") == name]
    return row


def _segments(row: ET.Element) -> dict[str, tuple[float, float]]:
    return {
        rect.get("class").split("seg-")[1]: (float(rect.get("x")), float(rect.get("width")))
        for rect in row.iter(f"{SVG}rect")
        if "seg" in (rect.get("class") or "").split()
    }


def test_diverging_extent_centres_the_ties_and_leans_toward_the_majority():
    assert diverging_extent(10, 0, 10) == (0.5, 0.5)
    assert diverging_extent(0, 8, 0) == (0.5, 0.5)
    assert diverging_extent(30, 0, 0) == (1.0, 0.0)
    assert diverging_extent(60, 10, 30) == pytest.approx((0.65, 0.35))
    assert diverging_extent(0, 0, 0) == (0.0, 0.0)


def test_bars_are_drawn_a_left_tie_across_the_centre_b_right_to_scale():
    svg = _parse(
        diverging_bars(
            title="India",
            rows=[BarRow(name="alignment", label="consensus", counts=(60, 10, 30), skip=4)],
            left_name="sd-base",
            right_name="sd-lora",
        )
    )
    segments = _segments(_row(svg, "alignment"))
    # 100 % is HALF wide on either side; a is 60 %, tie 10 % around the centre, b 30 %.
    scale = HALF / 100
    assert segments["a"] == pytest.approx((CENTRE - 65 * scale, 60 * scale))
    tie_x, tie_width = segments["tie"]
    assert tie_x + tie_width / 2 == pytest.approx(CENTRE)
    assert tie_width == pytest.approx(10 * scale)
    assert segments["b"] == pytest.approx((CENTRE + 5 * scale, 30 * scale))
    texts = [text.text for text in _row(svg, "alignment").iter(f"{SVG}text")]
    assert texts == ["alignment", "60%", "30%", "consensus", "skip 4"]  # tie too narrow for text


def test_chart_has_an_accessible_name_that_says_every_row_in_words():
    markup = diverging_bars(
        title="India, sd-base versus sd-lora",
        rows=[
            BarRow(name="alignment", label="consensus", counts=(1, 1, 8), skip=0),
            BarRow(name="representation", label="split", counts=(45, 10, 45), skip=2),
            BarRow(
                name="stereotype", label="insufficient", counts=None, note="fewer than 5 raters"
            ),
        ],
        left_name="sd-base",
        right_name="sd-lora",
    )
    svg = _parse(markup)
    assert svg.get("role") == "img"
    expected = (
        "India, sd-base versus sd-lora. "
        "alignment: consensus, 10% chose sd-base, 10% both equally, 80% chose sd-lora; "
        "representation: split, 45% chose sd-base, 10% both equally, 45% chose sd-lora; "
        "stereotype: insufficient, fewer than 5 raters."
    )
    assert svg.get("aria-label") == expected
    assert svg.find(f"{SVG}title").text == expected
    # The insufficient row draws no bar and no skip count: only its note and its badge.
    stereotype = _row(svg, "stereotype")
    assert _segments(stereotype) == {}
    assert [text.text for text in stereotype.iter(f"{SVG}text")] == [
        "stereotype",
        "fewer than 5 raters",
        "insufficient",
    ]
    # The legend names the variants in words, not colour alone.
    all_text = {text.text for text in svg.iter(f"{SVG}text")}
    assert {"chose sd-base", "both equally", "chose sd-lora"} <= all_text


def test_every_text_in_the_markup_is_escaped():
    markup = diverging_bars(
        title='<script>alert("x")</script>',
        rows=[BarRow(name="a&b", label="split", counts=(1, 0, 1), skip=0)],
        left_name="<b>",
        right_name='"q"',
    )
    assert "<script" not in markup and "<b>" not in markup
    svg = _parse(markup)  # still well-formed XML
    assert svg.find(f"{SVG}title").text.startswith('<script>alert("x")</script>.')
    assert _row(svg, "a&b") is not None


def test_stacked_bar_names_each_share():
    svg = _parse(
        stacked_bar(
            title="India, representation answers",
            parts=(("same", 6, "#000"), ("tie", 0, "#111"), ("other", 2, "#222")),
        )
    )
    assert svg.get("role") == "img"
    assert svg.get("aria-label") == "India, representation answers: 75% same, 0% tie, 25% other"
    widths = {rect.get("data-part"): float(rect.get("width")) for rect in svg.iter(f"{SVG}rect")}
    assert widths == {None: 240.0, "same": 180.0, "other": 60.0}


def test_cohorts_below_k_are_hidden():
    hidden = cohorts_hidden({"india": 14, "india:tamil": 8, "india:kerala": 3, "korea": 4}, k=5)
    assert hidden == {"india:kerala": "below k", "korea": "below k"}


def test_a_sibling_is_hidden_too_when_parent_minus_siblings_would_give_a_small_cohort_away():
    # India 10 = Tamil 8 + Kerala 2: showing Tamil would give Kerala away as 10 - 8.
    hidden = cohorts_hidden({"india": 10, "india:tamil": 8, "india:kerala": 2}, k=5)
    assert hidden == {"india:kerala": "below k", "india:tamil": "complementary"}
    # The smallest shown sibling goes first, and only as many as it takes.
    hidden = cohorts_hidden(
        {"india": 30, "india:tamil": 12, "india:kerala": 6, "india:goa": 9, "india:assam": 1},
        k=5,
    )
    assert hidden == {"india:assam": "below k", "india:kerala": "complementary"}


def test_no_sibling_is_hidden_when_nothing_below_is_hidden():
    # India minus Tamil are raters who gave no subculture: not a hidden cell of the table.
    assert cohorts_hidden({"india": 10, "india:tamil": 7}, k=5) == {}


def test_complementary_suppression_reaches_through_levels():
    counts = {
        "india": 12,
        "india:tamil": 9,
        "india:tamil:old": 5,
        "india:tamil:new": 4,
        "india:kerala": 3,
    }
    hidden = cohorts_hidden(counts, k=5)
    # India 12 - Tamil 9 would give Kerala away: Tamil goes too. India 12 - Tamil's old period
    # 5 is then a group of 7, so the old period may stay; with Tamil hidden, Tamil 9 - old 5 is
    # not there to give the new period away.
    assert hidden == {
        "india:tamil:new": "below k",
        "india:kerala": "below k",
        "india:tamil": "complementary",
    }


@st.composite
def _trees(draw) -> tuple[dict[str, int], int]:
    """Cohort trees of disjoint rater groups: a parent's raters are its own plus its children's."""
    k = draw(st.integers(min_value=2, max_value=11))
    own: dict[str, int] = {}
    for root in range(draw(st.integers(1, 3))):
        own[f"c{root}"] = draw(st.integers(0, 15))
        for child in range(draw(st.integers(0, 4))):
            own[f"c{root}:s{child}"] = draw(st.integers(0, 15))
            for period in range(draw(st.integers(0, 3))):
                own[f"c{root}:s{child}:p{period}"] = draw(st.integers(0, 15))
    totals = {
        path: sum(
            count for other, count in own.items() if other == path or other.startswith(path + ":")
        )
        for path in own
    }
    return totals, k


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_trees())
def test_no_hidden_count_can_be_derived_from_the_shown_ones(tree):
    totals, k = tree
    hidden = cohorts_hidden(totals, k=k)
    assert {path for path, count in totals.items() if count < k} <= set(hidden)

    def frontier(path: str) -> list[str]:
        below = [child for child in totals if cohort_path_parent(child) == path]
        return [
            shown for child in below for shown in (frontier(child) if child in hidden else [child])
        ]

    def hides_below(path: str) -> bool:
        return any(other in hidden for other in totals if other.startswith(path + ":"))

    for path, count in totals.items():
        if path in hidden or not hides_below(path):
            continue
        # What a reader can derive: the shown parent minus its nearest shown descendants.
        rest = count - sum(totals[shown] for shown in frontier(path))
        assert rest == 0 or rest >= k, (path, rest)
