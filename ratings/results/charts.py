"""Server-rendered SVG charts for the researchers' dashboard. Pure code: numbers in, markup out.

No Django import and no script: the markup is inlined into the page, so a screenshot, a print
and a screen reader all see the same chart. Every chart is `role="img"` with an `aria-label`
and a `<title>` that say what it shows in words; the page puts a table with the numbers beside
it. Every text written into the markup is escaped here, so callers may mark the result safe.

Colours are from the Okabe-Ito palette, which stays distinct under the common colour-vision
deficiencies; labels are written out in text, never told by colour alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

# Okabe-Ito orange, a neutral grey and Okabe-Ito sky blue: dark ink reads on all three.
COLOUR_A = "#E69F00"
COLOUR_TIE = "#CBD0D8"
COLOUR_B = "#56B4E9"
INK = "#1d2330"
MUTED = "#5b6475"
GRID = "#d6dae2"

# Badge fill, text and border per label: light fills with dark text of the same hue, so the
# word stays readable (WCAG AA) and the hue is only a second cue.
BADGE_COLOURS = {
    "consensus": ("#D7EFE6", "#0B5D45", "#009E73"),
    "split": ("#FBE3D0", "#8A3300", "#D55E00"),
    "contested": ("#FFF2C7", "#6B5200", "#C9A400"),
    "insufficient": ("#ECEEF2", "#5B6475", "#9AA3B2"),
}

# Geometry of the diverging chart, in viewBox units (the SVG scales to its box).
WIDTH = 760
NAME_RIGHT = 150  # criterion names end here, right-aligned
BAR_LEFT, BAR_RIGHT = 160, 560
CENTRE = (BAR_LEFT + BAR_RIGHT) / 2
HALF = (BAR_RIGHT - BAR_LEFT) / 2  # the width of 100 % on either side of the centre
BADGE_LEFT, BADGE_WIDTH = 572, 96
SKIP_LEFT = 678
LEGEND_HEIGHT = 30
ROW_HEIGHT = 34
BAR_HEIGHT = 22
AXIS_HEIGHT = 34
MIN_TEXT_WIDTH = 34  # a segment narrower than this carries no percentage inside it


@dataclass(frozen=True)
class BarRow:
    """One criterion of one cohort: the a/tie/b counts, or None when they may not be shown."""

    name: str
    label: str
    counts: tuple[int, int, int] | None
    skip: int | None = None
    # What the row says in place of the bar when `counts` is None ("fewer than 5 raters").
    note: str = ""


def _fmt(value: float) -> str:
    """Write a coordinate compactly: at most two decimals, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def percent(part: int, whole: int) -> int:
    """Return part/whole as a whole percentage (0 for an empty whole)."""
    return round(100 * part / whole) if whole else 0


def diverging_extent(a: int, tie: int, b: int) -> tuple[float, float]:
    """Return how far a row's bar reaches left and right of the centre, as shares of 1.

    The tie segment straddles the centre, so the bar leans the way the cohort leans; `a` goes
    left, `b` right. An empty row reaches nowhere.
    """
    total = a + tie + b
    if total == 0:
        return 0.0, 0.0
    return (a + tie / 2) / total, (b + tie / 2) / total


def _badge(label: str, x: float, y: float) -> str:
    fill, text, border = BADGE_COLOURS.get(label, BADGE_COLOURS["insufficient"])
    return (
        f'<g class="badge badge-{escape(label)}">'
        f'<rect x="{_fmt(x)}" y="{_fmt(y)}" width="{BADGE_WIDTH}" height="{BAR_HEIGHT}" rx="11" '
        f'fill="{fill}" stroke="{border}"/>'
        f'<text x="{_fmt(x + BADGE_WIDTH / 2)}" y="{_fmt(y + BAR_HEIGHT / 2)}" fill="{text}" '
        f'text-anchor="middle" dominant-baseline="central" font-weight="600">'
        f"{escape(label)}</text></g>"
    )


def _segment(
    x: float, y: float, width: float, colour: str, share: int, kind: str
) -> tuple[str, str]:
    """Return a segment's rectangle and its percentage text (empty where it would not fit)."""
    if width <= 0:
        return "", ""
    rect = (
        f'<rect class="seg seg-{kind}" x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(width)}" '
        f'height="{BAR_HEIGHT}" fill="{colour}"/>'
    )
    if width < MIN_TEXT_WIDTH:
        return rect, ""
    text = (
        f'<text x="{_fmt(x + width / 2)}" y="{_fmt(y + BAR_HEIGHT / 2)}" fill="{INK}" '
        f'text-anchor="middle" dominant-baseline="central">{share}%</text>'
    )
    return rect, text


def _row_summary(row: BarRow, left_name: str, right_name: str) -> str:
    if row.counts is None:
        return f"{row.name}: {row.label}, {row.note}" if row.note else f"{row.name}: {row.label}"
    a, tie, b = row.counts
    total = a + tie + b
    return (
        f"{row.name}: {row.label}, {percent(a, total)}% chose {left_name}, "
        f"{percent(tie, total)}% both equally, {percent(b, total)}% chose {right_name}"
    )


def diverging_summary(
    *, title: str, rows: Sequence[BarRow], left_name: str, right_name: str
) -> str:
    """Say in words what a diverging chart shows: its accessible name."""
    parts = "; ".join(_row_summary(row, left_name, right_name) for row in rows)
    return f"{title}. {parts}." if parts else f"{title}: nothing to show."


def diverging_bars(*, title: str, rows: Sequence[BarRow], left_name: str, right_name: str) -> str:
    """Draw one diverging stacked bar per row (a | tie | b, centred on the tie), as inline SVG.

    Each row carries its label as a text badge and its skips as a count; a row without counts
    shows its note instead of a bar. `left_name` and `right_name` name the variants a and b.
    """
    summary = diverging_summary(title=title, rows=rows, left_name=left_name, right_name=right_name)
    top = LEGEND_HEIGHT
    height = top + ROW_HEIGHT * len(rows) + AXIS_HEIGHT
    out = [
        f'<svg class="chart diverging" role="img" aria-label="{escape(summary)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="system-ui, sans-serif" font-size="13">',
        f"<title>{escape(summary)}</title>",
    ]
    # Legend: what each colour means, in words.
    legend_x = BAR_LEFT
    for colour, text in (
        (COLOUR_A, f"chose {left_name}"),
        (COLOUR_TIE, "both equally"),
        (COLOUR_B, f"chose {right_name}"),
    ):
        out.append(
            f'<rect x="{_fmt(legend_x)}" y="6" width="14" height="14" rx="2" fill="{colour}"/>'
            f'<text x="{_fmt(legend_x + 20)}" y="13" dominant-baseline="central" '
            f'fill="{INK}">{escape(text)}</text>'
        )
        legend_x += 20 + 7.2 * len(text) + 22
    # Grid lines at 50 % and 100 % either way, and the centre.
    bottom = top + ROW_HEIGHT * len(rows)
    for share in (-1.0, -0.5, 0.5, 1.0):
        x = CENTRE + share * HALF
        out.append(
            f'<line x1="{_fmt(x)}" y1="{top}" x2="{_fmt(x)}" y2="{bottom}" stroke="{GRID}" '
            f'stroke-dasharray="2 3"/>'
        )
    for index, row in enumerate(rows):
        y = top + index * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) / 2
        middle = y + BAR_HEIGHT / 2
        out.append(f'<g class="row" data-criterion="{escape(row.name)}">')
        out.append(
            f'<text x="{NAME_RIGHT}" y="{_fmt(middle)}" text-anchor="end" '
            f'dominant-baseline="central" fill="{INK}" font-weight="600">{escape(row.name)}</text>'
        )
        if row.counts is None:
            # A plain band over the grid: nothing is drawn where no count may be shown.
            out.append(
                f'<rect class="withheld" x="{BAR_LEFT}" y="{_fmt(y)}" '
                f'width="{BAR_RIGHT - BAR_LEFT}" height="{BAR_HEIGHT}" rx="3" fill="#f1f2f5"/>'
            )
            out.append(
                f'<text x="{_fmt(CENTRE)}" y="{_fmt(middle)}" text-anchor="middle" '
                f'dominant-baseline="central" fill="{MUTED}" font-style="italic">'
                f"{escape(row.note)}</text>"
            )
        else:
            a, tie, b = row.counts
            total = a + tie + b
            left, _ = diverging_extent(a, tie, b)
            x = CENTRE - left * HALF
            texts = []
            for count, colour, kind in (
                (a, COLOUR_A, "a"),
                (tie, COLOUR_TIE, "tie"),
                (b, COLOUR_B, "b"),
            ):
                width = HALF * count / total if total else 0
                rect, text = _segment(x, y, width, colour, percent(count, total), kind)
                out.append(rect)
                texts.append(text)
                x += width
            # The centre as ticks above and below the bar, clear of the tie's number on it.
            for y1, y2 in ((y - 5, y), (y + BAR_HEIGHT, y + BAR_HEIGHT + 5)):
                out.append(
                    f'<line class="centre" x1="{_fmt(CENTRE)}" y1="{_fmt(y1)}" '
                    f'x2="{_fmt(CENTRE)}" y2="{_fmt(y2)}" stroke="{INK}" stroke-width="2"/>'
                )
            out.extend(texts)
            if total == 0:
                out.append(
                    f'<text x="{_fmt(CENTRE)}" y="{_fmt(middle)}" text-anchor="middle" '
                    f'dominant-baseline="central" fill="{MUTED}" font-style="italic">'
                    f"no answers</text>"
                )
        out.append(_badge(row.label, BADGE_LEFT, y))
        if row.skip is not None:
            out.append(
                f'<text x="{SKIP_LEFT}" y="{_fmt(middle)}" dominant-baseline="central" '
                f'fill="{MUTED}">skip {row.skip}</text>'
            )
        out.append("</g>")
    # The axis: a tick at the centre, shares either way, and which variant lies which way.
    out.append(
        f'<line x1="{_fmt(CENTRE)}" y1="{bottom}" x2="{_fmt(CENTRE)}" y2="{bottom + 4}" '
        f'stroke="{INK}" stroke-width="1.5"/>'
    )
    for share, text in ((-1.0, "100%"), (-0.5, "50%"), (0.0, "0"), (0.5, "50%"), (1.0, "100%")):
        out.append(
            f'<text x="{_fmt(CENTRE + share * HALF)}" y="{bottom + 12}" text-anchor="middle" '
            f'dominant-baseline="central" fill="{MUTED}" font-size="11">{text}</text>'
        )
    out.append(
        f'<text x="{BAR_LEFT}" y="{bottom + 27}" dominant-baseline="central" fill="{MUTED}" '
        f'font-size="11">← {escape(left_name)}</text>'
        f'<text x="{BAR_RIGHT}" y="{bottom + 27}" text-anchor="end" dominant-baseline="central" '
        f'fill="{MUTED}" font-size="11">{escape(right_name)} →</text>'
    )
    out.append("</svg>")
    return "".join(out)


def stacked_bar(*, title: str, parts: Sequence[tuple[str, int, str]]) -> str:
    """Draw one small stacked bar of (name, count, colour) parts, as inline SVG.

    For table cells (the cross-criterion table): the accessible name says each part's share.
    """
    total = sum(count for _, count, _ in parts)
    words = ", ".join(f"{percent(count, total)}% {name}" for name, count, _ in parts)
    summary = f"{title}: {words}" if total else f"{title}: no answers"
    width, height = 240, 18
    out = [
        f'<svg class="chart stacked" role="img" aria-label="{escape(summary)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="11">',
        f"<title>{escape(summary)}</title>",
        f'<rect width="{width}" height="{height}" rx="3" fill="#eef0f4"/>',
    ]
    x = 0.0
    for name, count, colour in parts:
        part_width = width * count / total if total else 0
        if part_width > 0:
            out.append(
                f'<rect class="seg" data-part="{escape(name)}" x="{_fmt(x)}" y="0" '
                f'width="{_fmt(part_width)}" height="{height}" fill="{colour}"/>'
            )
            if part_width >= MIN_TEXT_WIDTH:
                out.append(
                    f'<text x="{_fmt(x + part_width / 2)}" y="{height / 2}" fill="{INK}" '
                    f'text-anchor="middle" dominant-baseline="central">'
                    f"{percent(count, total)}%</text>"
                )
        x += part_width
    out.append("</svg>")
    return "".join(out)


def faction_leans(
    *,
    title: str,
    factions: Sequence[tuple[str, int, float | None, float | None, float | None]],
    left_name: str,
    right_name: str,
) -> str:
    """Draw each faction's lean (a -1 … b +1) with its interval, its size as the dot's area.

    `factions` holds (name, raters, lean, low, high). The text summary under the chart says
    the same in words, for screen readers and for a reader who prints the page in grey.
    """
    width, left, right, row_height, top = 640, 150, 40, 44, 34
    axis = width - left - right

    def x(value: float) -> float:
        return left + (max(-1.0, min(1.0, value)) + 1) / 2 * axis

    height = top + row_height * len(factions) + 24
    largest = max((size for _, size, *_ in factions), default=1) or 1
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" font-size="12">← {escape(left_name)} better</text>',
        f'<text x="{width - right}" y="16" font-size="12" text-anchor="end">'
        f"{escape(right_name)} better →</text>",
        f'<line x1="{_fmt(x(0))}" y1="{top - 8}" x2="{_fmt(x(0))}" y2="{height - 18}" '
        'stroke="#888" stroke-dasharray="3 3"/>',
    ]
    summary = []
    for index, (name, size, lean, low, high) in enumerate(factions):
        y = top + row_height * index + row_height / 2
        parts.append(
            f'<text x="{left - 8}" y="{_fmt(y + 4)}" font-size="12" text-anchor="end">'
            f"{escape(name)}</text>"
        )
        if lean is None:
            continue
        colour = COLOUR_B if lean > 0 else COLOUR_A
        if low is not None and high is not None:
            parts.append(
                f'<line x1="{_fmt(x(low))}" y1="{_fmt(y)}" x2="{_fmt(x(high))}" '
                f'y2="{_fmt(y)}" stroke="#333" stroke-width="2"/>'
            )
        radius = 4 + 12 * (size / largest) ** 0.5
        parts.append(
            f'<circle cx="{_fmt(x(lean))}" cy="{_fmt(y)}" r="{_fmt(radius)}" '
            f'fill="{colour}" stroke="#333"/>'
        )
        interval = f", interval {low:+.2f} to {high:+.2f}" if low is not None else ""
        summary.append(f"{name}: {size} raters, lean {lean:+.2f}{interval}")
    parts.append(
        f'<text x="{left}" y="{height - 4}" font-size="11">-1</text>'
        f'<text x="{width - right}" y="{height - 4}" font-size="11" text-anchor="end">+1</text>'
    )
    parts.append("</svg>")
    parts.append(f'<p class="chart-summary">{escape("; ".join(summary))}.</p>')
    return "".join(parts)
