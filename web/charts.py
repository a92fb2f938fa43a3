"""Small server-side SVG charts: stacked bars, horizontal bars, a histogram with a threshold line, a line
chart and budget bullets. No JavaScript, no chart library.

Every chart is readable without colour: series are told apart by pattern as well as hue (solid, hatched,
dotted, cross-hatched), the legend shows the same swatches, values are written as text where there is
room, and every mark carries a <title> (a tooltip, and what a screen reader announces). Colours come
from CSS classes in static/ui/arbiter.css (`.chart .s0` ...), so the page's stylesheet owns the palette;
the SVG itself uses presentation attributes only, never `style`, so the Content Security Policy needs no
'unsafe-inline'.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PATTERNS = ("solid", "hatch", "dots", "cross")
_ids = itertools.count(1)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


@dataclass(frozen=True)
class Budget:
    label: str
    spend: float
    soft: float | None
    hard: float | None


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))


def plain(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    return _number(round(value, 2))


def usd(value: float) -> str:
    if value >= 100:
        return f"${value:,.0f}"
    if value >= 1:
        return f"${value:,.2f}"
    if not value:
        return "$0"
    places = min(max(3, 1 - math.floor(math.log10(value))), 6)  # two significant digits, at least 3 places
    return f"${value:.{places}f}"


def percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2, 2.5 or 5 x 10^n)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5):
        if step * magnitude >= value * (1 - 1e-9):
            return step * magnitude
    return 10 * magnitude


class _Svg:
    """Collects the parts of one chart; `render` wraps them in an accessible <svg>."""

    def __init__(self, width: int, height: int, title: str, description: str):
        self.id = f"c{next(_ids)}"
        self.width, self.height = width, height
        self.title, self.description = title, description
        self.parts: list[str] = []

    def pattern_fill(self, index: int) -> str:
        return f"url(#{self.id}-p{index % len(PATTERNS)})"

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def text(self, x: float, y: float, label: str, *, anchor: str = "start", css: str = "label") -> None:
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{css}">{escape(label)}</text>')

    def defs(self, count: int) -> str:
        shapes = {
            "solid": "",
            "hatch": '<path class="ink" d="M-1,1 l2,-2 M0,6 l6,-6 M5,7 l2,-2"/>',
            "dots": '<circle class="ink" cx="3" cy="3" r="1.3"/>',
            "cross": '<path class="ink" d="M0,0 L6,6 M6,0 L0,6"/>',
        }
        patterns = []
        for index in range(count):
            kind = PATTERNS[index % len(PATTERNS)]
            patterns.append(
                f'<pattern id="{self.id}-p{index}" patternUnits="userSpaceOnUse" width="6" height="6">'
                f'<rect class="s{index}" width="6" height="6"/>{shapes[kind]}</pattern>'
            )
        return "<defs>" + "".join(patterns) + "</defs>"

    def legend(self, names: Sequence[str], y: float, x: float = 0) -> None:
        for index, name in enumerate(names):
            self.add(
                f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="12" height="12" fill="{self.pattern_fill(index)}" '
                f'class="swatch"/>'
            )
            self.text(x + 16, y + 1, name)
            x += 24 + 7.2 * len(name)

    def render(self, series_count: int = 1) -> SafeString:
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {self.width} {self.height}" '
            f'role="img" aria-labelledby="{self.id}-t {self.id}-d">'
            f'<title id="{self.id}-t">{escape(self.title)}</title>'
            f'<desc id="{self.id}-d">{escape(self.description)}</desc>'
        )
        return mark_safe(head + self.defs(max(series_count, 1)) + "".join(self.parts) + "</svg>")  # noqa: S308


def _empty(svg: _Svg, message: str = "No data in this window") -> SafeString:
    svg.text(svg.width / 2, svg.height / 2, message, anchor="middle", css="label muted")
    return svg.render()


def _divisions(maximum: float) -> int:
    """4 gridlines for a maximum of 2 x 10^n, else 5: every gridline then falls on a round number."""
    leading = maximum / 10 ** math.floor(math.log10(maximum))
    return 4 if abs(leading - 2) < 1e-9 else 5


def _places(step: float) -> int:
    """Decimals every tick gets: as many as the step needs (0.25 needs two, 0.5 one, 20 none)."""
    exponent = math.floor(math.log10(step) + 1e-9)
    leading = round(step / 10**exponent, 6)
    return max(0, -exponent) + (1 if leading % 1 else 0)


def _y_ticks(maximum: float, fmt: Callable[[float], str]) -> list[tuple[float, str]]:
    """(value, label) of each gridline, every label with the decimals the step needs."""
    divisions = _divisions(maximum)
    step = maximum / divisions
    places = _places(step)
    ticks = []
    for index in range(divisions + 1):
        value = step * index
        if fmt is usd:
            label = f"${value:,.{places}f}"
        elif fmt is plain:
            label = f"{value:,.{places}f}"
        else:
            label = fmt(value)
        ticks.append((value, label))
    return ticks


def _axis_left(ticks: list[tuple[float, str]], minimum: float = 30) -> float:
    """Room for the longest tick label (about 6.3 units a character at the charts' 11-unit font)."""
    return max(minimum, 12 + 6.3 * max(len(label) for _, label in ticks))


def _y_axis(svg: _Svg, ticks: list[tuple[float, str]], top: float, bottom: float, left: float, right: float) -> None:
    maximum = ticks[-1][0]
    for value, label in ticks:
        y = bottom - (bottom - top) * value / maximum
        svg.add(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        svg.text(left - 6, y + 4, label, anchor="end", css="label tick")


def stacked_bars(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    fmt: Callable[[float], str] = plain,
    width: int = 560,
    height: int = 230,
    label_every: int = 1,
) -> SafeString:
    """One bar per category, its series stacked bottom-up; the total is written above each bar."""
    svg = _Svg(
        width,
        height,
        title,
        f"{title}: "
        + "; ".join(f"{category} {fmt(sum(s.values[i] for s in series))}" for i, category in enumerate(categories)),
    )
    totals = [sum(s.values[i] for s in series) for i in range(len(categories))]
    if not categories or not any(totals):
        return _empty(svg)
    maximum = _nice_max(max(totals))
    ticks = _y_ticks(maximum, fmt)
    left, right, top, bottom = _axis_left(ticks), width - 8, 30, height - 42
    _y_axis(svg, ticks, top, bottom, left, right)
    slot = (right - left) / len(categories)
    bar = max(slot * 0.7, 2)
    for index, category in enumerate(categories):
        x = left + slot * index + (slot - bar) / 2
        y = bottom
        for number, item in enumerate(series):
            value = item.values[index]
            if value <= 0:
                continue
            h = (bottom - top) * value / maximum
            y -= h
            svg.add(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{svg.pattern_fill(number)}" class="mark"><title>{escape(category)} · '
                f"{escape(item.name)}: {escape(fmt(value))}</title></rect>"
            )
        if totals[index] and len(categories) <= 16:
            svg.text(x + bar / 2, y - 4, fmt(totals[index]), anchor="middle", css="label value")
        if index % label_every == 0:
            svg.text(x + bar / 2, bottom + 15, category, anchor="middle", css="label tick")
    svg.add(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" class="axis"/>')
    svg.legend([s.name for s in series], height - 8, left)
    return svg.render(len(series))


def horizontal_bars(
    rows: Sequence[tuple[str, float, str]],
    *,
    title: str,
    maximum: float | None = None,
    width: int = 560,
) -> SafeString:
    """(label, value, text) rows as bars from the left; `text` is written after each bar."""
    height = max(60, 26 * len(rows) + 20)
    svg = _Svg(width, height, title, f"{title}: " + "; ".join(f"{label} {text}" for label, _, text in rows))
    if not rows:
        return _empty(svg)
    label_width = min(150, 8 + 7 * max(len(label) for label, _, _ in rows))
    left, right = label_width, width - 110
    top = 10
    scale = maximum or _nice_max(max(value for _, value, _ in rows))
    for index, (label, value, text) in enumerate(rows):
        y = top + 26 * index
        length = (right - left) * min(value / scale, 1) if scale else 0
        svg.text(left - 8, y + 13, label, anchor="end")
        svg.add(f'<rect x="{left}" y="{y + 2}" width="{right - left}" height="14" class="track"/>')
        svg.add(
            f'<rect x="{left}" y="{y + 2}" width="{length:.1f}" height="14" fill="{svg.pattern_fill(0)}" '
            f'class="mark"><title>{escape(label)}: {escape(text)}</title></rect>'
        )
        svg.text(right + 8, y + 13, text, css="label value")
    return svg.render()


def histogram(
    counts: Sequence[int],
    *,
    title: str,
    threshold: float | None,
    low: float = 0.0,
    high: float = 1.0,
    width: int = 400,
    height: int = 190,
) -> SafeString:
    """Counts of equal-width bins over [low, high]; bins under the threshold are hatched, the threshold
    is a dashed line with its value written beside it."""
    total = sum(counts)
    under = sum(
        count
        for index, count in enumerate(counts)
        if threshold is not None and low + (high - low) * (index + 1) / len(counts) <= threshold + 1e-9
    )
    description = f"{title}: {total} scores"
    if threshold is not None:
        description += f", threshold {threshold:.2f}, {under} below it"
    svg = _Svg(width, height, title, description)
    if not total:
        return _empty(svg, "No scores in this window")
    maximum = _nice_max(max(counts))
    ticks = _y_ticks(maximum, plain)
    left, right, top, bottom = _axis_left(ticks), width - 12, 22, height - 34
    _y_axis(svg, ticks, top, bottom, left, right)
    slot = (right - left) / len(counts)
    for index, count in enumerate(counts):
        if not count:
            continue
        start = low + (high - low) * index / len(counts)
        end = low + (high - low) * (index + 1) / len(counts)
        below = threshold is not None and end <= threshold + 1e-9
        h = (bottom - top) * count / maximum
        svg.add(
            f'<rect x="{left + slot * index + 0.5:.1f}" y="{bottom - h:.1f}" width="{max(slot - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="{svg.pattern_fill(1 if below else 0)}" class="mark">'
            f"<title>{start:.2f}–{end:.2f}: {count}{' (below threshold)' if below else ''}</title></rect>"  # noqa: RUF001
        )
    for tick in (0, 0.25, 0.5, 0.75, 1):
        x = left + (right - left) * (tick - low) / (high - low)
        svg.text(x, bottom + 14, f"{tick:g}", anchor="middle", css="label tick")
    svg.add(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" class="axis"/>')
    if threshold is not None:
        x = left + (right - left) * (threshold - low) / (high - low)
        svg.add(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{bottom}" class="threshold"/>')
        anchor = "end" if x > width * 0.7 else "start"
        svg.text(
            x + (-4 if anchor == "end" else 4),
            top - 8,
            f"threshold {threshold:.2f}",
            anchor=anchor,
            css="label threshold-label",
        )
    svg.text(
        left,
        height - 6,
        f"{total} scores · {under} below threshold"
        if threshold is not None
        else f"{total} scores (final tier: no threshold)",
        css="label muted",
    )
    return svg.render(2)


def line_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    fmt: Callable[[float], str] = plain,
    width: int = 560,
    height: int = 190,
    label_every: int = 10,
) -> SafeString:
    """One series as a line with a marker at every point; the latest value is written at the end."""
    svg = _Svg(
        width,
        height,
        title,
        f"{title}: latest {fmt(values[-1]) if values else 'none'}, peak {fmt(max(values)) if values else 'none'}",
    )
    if not values or not any(values):
        return _empty(svg)
    maximum = _nice_max(max(values))
    ticks = _y_ticks(maximum, fmt)
    left, right, top, bottom = _axis_left(ticks), width - 44, 16, height - 28
    _y_axis(svg, ticks, top, bottom, left, right)
    step = (right - left) / max(len(values) - 1, 1)
    points = [(left + step * i, bottom - (bottom - top) * v / maximum) for i, v in enumerate(values)]
    svg.add('<polyline class="line" fill="none" points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y in points) + '"/>')
    for (x, y), label, value in zip(points, labels, values, strict=True):
        if not value:
            continue  # a bead on every empty minute is noise; the line says zero
        svg.add(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.2" class="marker"><title>{escape(label)}: '
            f"{escape(fmt(value))}</title></circle>"
        )
    for index, label in enumerate(labels):
        if index % label_every == 0 or index == len(labels) - 1:
            svg.text(left + step * index, bottom + 15, label, anchor="middle", css="label tick")
    svg.add(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" class="axis"/>')
    x, y = points[-1]
    svg.text(x + 6, y + 4, fmt(values[-1]), css="label value")
    return svg.render()


def budget_bullets(rows: Sequence[Budget], *, title: str, width: int = 560) -> SafeString:
    """Spend this month per application against its soft (dashed) and hard (solid) limits."""
    height = max(60, 34 * len(rows) + 24)
    svg = _Svg(
        width,
        height,
        title,
        f"{title}: "
        + "; ".join(f"{row.label} {usd(row.spend)}" + (f" of {usd(row.hard)}" if row.hard else "") for row in rows),
    )
    if not rows:
        return _empty(svg, "No applications")
    label_width = min(150, 8 + 7 * max(len(row.label) for row in rows))
    left, right = label_width, width - 130
    scale = _nice_max(max(max(row.spend, row.hard or 0, row.soft or 0) for row in rows))
    for index, row in enumerate(rows):
        y = 8 + 34 * index

        def at(value: float) -> float:
            return left + (right - left) * min(value / scale, 1)

        over = (row.hard is not None and row.spend >= row.hard) or (row.soft is not None and row.spend >= row.soft)
        svg.text(left - 8, y + 15, row.label, anchor="end")
        svg.add(f'<rect x="{left}" y="{y + 4}" width="{right - left}" height="16" class="track"/>')
        svg.add(
            f'<rect x="{left}" y="{y + 4}" width="{at(row.spend) - left:.1f}" height="16" '
            f'fill="{svg.pattern_fill(1 if over else 0)}" class="mark"><title>{escape(row.label)}: '
            f"{usd(row.spend)} spent this month</title></rect>"
        )
        for limit, css, name in ((row.soft, "limit soft", "soft"), (row.hard, "limit hard", "hard")):
            if limit is not None:
                svg.add(
                    f'<line x1="{at(limit):.1f}" x2="{at(limit):.1f}" y1="{y}" y2="{y + 24}" class="{css}">'
                    f"<title>{name} limit {usd(limit)}</title></line>"
                )
        limits = " / ".join(f"{usd(v)} {n}" for v, n in ((row.soft, "soft"), (row.hard, "hard")) if v is not None)
        svg.text(right + 8, y + 11, usd(row.spend) + (" — over" if over else ""), css="label value")
        svg.text(right + 8, y + 24, limits or "no limit", css="label muted small")
    svg.legend(["within budget", "over a limit"], height - 4, left)
    return svg.render(2)


def confidence_meter(value: float | None, threshold: float | None, *, width: int = 132) -> SafeString:
    """A one-line bar: the score, a tick at the threshold, and both written out ("0.62 < 0.80")."""
    if value is None:
        return mark_safe('<span class="muted">no score</span>')
    met = threshold is None or value >= threshold
    verdict = "no threshold" if threshold is None else ("met" if met else "below threshold")
    label = f"{value:.2f}" + ("" if threshold is None else (" ≥ " if met else " < ") + f"{threshold:.2f}")
    bar = 60
    tick = ""
    if threshold is not None:
        x = 1 + (bar - 2) * threshold
        tick = f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="14" class="threshold"/>'
    fill = "meter-neutral" if threshold is None else ("meter-met" if met else "meter-under")
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="meter" viewBox="0 0 {width} 14" width="{width}" '
        f'height="14" role="img" aria-label="confidence {escape(label)} ({verdict})">'
        f'<rect x="0.5" y="2.5" width="{bar - 1}" height="9" class="track"/>'
        f'<rect x="1" y="3" width="{(bar - 2) * min(max(value, 0), 1):.1f}" height="8" class="{fill}"/>'
        f'{tick}<text x="{bar + 6}" y="11" class="label">{escape(label)}</text></svg>'
    )
    return mark_safe(svg)  # noqa: S308


# ---------------------------------------------------------------- x/y charts

MARKERS = ("circle", "square", "diamond", "triangle")


@dataclass(frozen=True)
class XYPoint:
    x: float
    y: float
    label: str = ""  # written beside the point when the series asks for it
    title: str = ""  # the tooltip; the label and coordinates when empty
    size: float = 4.0


@dataclass(frozen=True)
class XYSeries:
    name: str
    points: Sequence[XYPoint]
    line: bool = False  # join the points (in x order) with a line
    labelled: bool = False
    faint: bool = False  # context, drawn light and under the other series
    style: int | None = None  # colour and marker; the series' position when None

    def look(self, index: int) -> int:
        return index if self.style is None else self.style


def _marker(kind: str, x: float, y: float, r: float, css: str, title: str) -> str:
    tip = f"<title>{escape(title)}</title>"
    if kind == "square":
        side = 2 * r
        box = f'x="{x - r:.1f}" y="{y - r:.1f}" width="{side:.1f}" height="{side:.1f}"'
        return f'<rect {box} class="{css}">{tip}</rect>'
    if kind == "diamond":
        d = r * 1.3
        points = f"{x:.1f},{y - d:.1f} {x + d:.1f},{y:.1f} {x:.1f},{y + d:.1f} {x - d:.1f},{y:.1f}"
        return f'<polygon points="{points}" class="{css}">{tip}</polygon>'
    if kind == "triangle":
        d = r * 1.3
        points = f"{x:.1f},{y - d:.1f} {x + d:.1f},{y + d * 0.8:.1f} {x - d:.1f},{y + d * 0.8:.1f}"
        return f'<polygon points="{points}" class="{css}">{tip}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" class="{css}">{tip}</circle>'


def _range_ticks(low: float, high: float) -> list[float]:
    """Round tick values from low to high (both ends included when they are round themselves)."""
    span = high - low
    step = _nice_max(span / 5)
    first = math.ceil(low / step - 1e-9) * step
    ticks, value = [], first
    while value <= high + 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def xy_chart(
    series: Sequence[XYSeries],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    fmt_x: Callable[[float], str] = plain,
    fmt_y: Callable[[float], str] = plain,
    diagonal: bool = False,
    note: str = "",
    width: int = 560,
    height: int = 320,
) -> SafeString:
    """Points (and lines) on two value axes. Series are told apart by marker shape as well as colour;
    `diagonal` draws the y = x reference (perfect calibration) dashed; `note` is written under the axes."""
    description = f"{title}: " + "; ".join(
        f"{item.name} " + ", ".join(f"({fmt_x(p.x)}, {fmt_y(p.y)})" for p in item.points[:12])
        + (" …" if len(item.points) > 12 else "")
        for item in series
        if item.points
    )
    svg = _Svg(width, height, title, description)
    if not any(item.points for item in series):
        return _empty(svg, "Nothing to plot")
    (x0, x1), (y0, y1) = x_range, y_range
    y_ticks = _range_ticks(y0, y1)
    left = _axis_left([(0, fmt_y(tick)) for tick in y_ticks], minimum=36) + 14
    right, top, bottom = width - 16, 14, height - (62 if note else 48)

    def at(x: float, y: float) -> tuple[float, float]:
        return left + (right - left) * (x - x0) / (x1 - x0), bottom - (bottom - top) * (y - y0) / (y1 - y0)

    for tick in y_ticks:
        _, y = at(x0, tick)
        svg.add(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        svg.text(left - 6, y + 4, fmt_y(tick), anchor="end", css="label tick")
    for tick in _range_ticks(x0, x1):
        x, _ = at(tick, y0)
        svg.add(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" class="grid"/>')
        svg.text(x, bottom + 14, fmt_x(tick), anchor="middle", css="label tick")
    svg.add(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" class="axis"/>')
    svg.add(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" class="axis"/>')
    svg.text((left + right) / 2, bottom + 30, x_label, anchor="middle", css="label axis-title")
    middle = (top + bottom) / 2
    svg.add(
        f'<text x="12" y="{middle:.1f}" text-anchor="middle" transform="rotate(-90 12 {middle:.1f})" '
        f'class="label axis-title">{escape(y_label)}</text>'
    )
    if diagonal:
        low, high = max(x0, y0), min(x1, y1)
        (ax, ay), (bx, by) = at(low, low), at(high, high)
        svg.add(
            f'<line x1="{ax:.1f}" y1="{ay:.1f}" x2="{bx:.1f}" y2="{by:.1f}" class="diagonal">'
            "<title>perfectly calibrated: accuracy equals confidence</title></line>"
        )
    # The first series is drawn last, on top: the order of `series` is the order of importance.
    labels: list[tuple[float, float, str]] = []
    for index, item in reversed(list(enumerate(series))):
        look = item.look(index)
        kind = MARKERS[look % len(MARKERS)]
        css = f"point s{look % len(PATTERNS)}" + (" faint" if item.faint else "")
        points = sorted(item.points, key=lambda p: p.x) if item.line else list(item.points)
        if item.line and len(points) > 1:
            path = " ".join("{:.1f},{:.1f}".format(*at(p.x, p.y)) for p in points)
            svg.add(f'<polyline points="{path}" fill="none" class="xy-line s{look % len(PATTERNS)}"/>')
        for point in points:
            x, y = at(point.x, point.y)
            tip = point.title or f"{point.label or item.name}: {fmt_x(point.x)}, {fmt_y(point.y)}"
            svg.add(_marker(kind, x, y, point.size, css, tip))
            if item.labelled and point.label:
                labels.append((x, y, point.label))
    placed: list[tuple[float, float]] = []
    for x, y, label in reversed(labels):
        label_y = y + 4
        while any(abs(label_y - other_y) < 12 and abs(x - other_x) < 90 for other_x, other_y in placed):
            label_y += 12
        placed.append((x, label_y))
        anchor = "end" if x > right - 90 else "start"
        svg.text(x + (-9 if anchor == "end" else 9), label_y, label, anchor=anchor, css="label value point-label")
    legend_y = height - (24 if note else 8)
    x = left
    for index, item in enumerate(series):
        if not item.points:
            continue
        look = item.look(index)
        svg.add(_marker(MARKERS[look % len(MARKERS)], x + 6, legend_y - 4, 4.5, f"point s{look % len(PATTERNS)}",
                        item.name))
        svg.text(x + 16, legend_y, item.name)
        x += 30 + 6.6 * len(item.name)
    if note:
        svg.text(left, height - 6, note, css="label muted")
    return svg.render(len(series))


def cost_quality(
    points: Sequence[tuple[str, float, float]],
    *,
    policy: tuple[str, float, float] | None = None,
    curve: Sequence[XYPoint] = (),
    settings: Sequence[XYPoint] = (),
    guides: Sequence[XYSeries] = (),
    title: str = "Accuracy against relative cost",
    x_label: str = "cost relative to the flagship alone",
    width: int = 560,
    height: int = 320,
) -> SafeString:
    """Accuracy (y) against cost relative to the flagship alone (x): the policy, the baselines (each
    labelled), the other threshold settings tried as small points, and the curve (their frontier) as a line;
    `guides` are drawn after them (a target line, a certificate's margin)."""
    guided = [p for series in guides for p in series.points]
    ys = [y for _, _, y in points] + [p.y for p in (*curve, *settings, *guided)] + ([policy[2]] if policy else [])
    xs = [x for _, x, _ in points] + [p.x for p in (*curve, *settings, *guided)] + ([policy[1]] if policy else [])
    low = max(0.0, math.floor((min(ys, default=0) - 0.05) * 10) / 10)
    high = min(1.0, math.ceil((max(ys, default=1) + 0.02) * 10) / 10) or 1.0
    x_high = max(1.0, math.ceil(max(xs, default=1) * 10 + 0.5) / 10)
    series = [
        XYSeries("policy", [XYPoint(policy[1], policy[2], policy[0], size=5.5)] if policy else [], labelled=True,
                 style=0),
        XYSeries("baselines", [XYPoint(x, y, label) for label, x, y in points], labelled=True, style=1),
        XYSeries("threshold curve", curve, line=True, style=2),
        XYSeries("other threshold settings", settings, faint=True, style=3),
        *guides,
    ]
    return xy_chart(
        series,
        title=title,
        x_label=x_label,
        y_label="accuracy",
        x_range=(0.0, x_high),
        y_range=(low, high if high > low else low + 0.1),
        fmt_x=lambda v: f"{v:g}×",  # noqa: RUF001
        fmt_y=percent,
        width=width,
        height=height,
    )


def reliability_diagram(
    bins: Sequence[dict], *, title: str, ece: float | None, answers: int, width: int = 360, height: int = 300
) -> SafeString:
    """A tier's confidence (x) against how often it was right (y), one point per bin sized by its count,
    against the diagonal of perfect calibration; the expected calibration error is written under it."""
    largest = max((row["count"] for row in bins), default=1) or 1
    points = [
        XYPoint(
            row["mean_confidence"],
            row["accuracy"],
            title=(
                f"confidence {row['lower']:.1f}–{row['upper']:.1f}: {row['count']} answers, "  # noqa: RUF001
                f"mean confidence {row['mean_confidence']:.2f}, right {percent(row['accuracy'])}"
            ),
            size=2.5 + 4.5 * math.sqrt(row["count"] / largest),
        )
        for row in bins
    ]
    note = (
        f"ECE {ece:.3f} over {answers} answer{'' if answers == 1 else 's'}"
        if ece is not None
        else "no answers with a confidence and a verdict"
    )
    return xy_chart(
        [XYSeries("bins (size: answers)", points, line=True)],
        title=title,
        x_label="confidence",
        y_label="observed accuracy",
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.0),
        fmt_x=lambda v: f"{v:g}",
        fmt_y=lambda v: f"{v:g}",
        diagonal=True,
        note=note,
        width=width,
        height=height,
    )
