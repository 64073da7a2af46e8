"""Server-rendered SVG plots for the review page: lines over time, a scatter with its front, a family tree.

Each function takes plain numbers and labels and returns an `<svg>` element as `Markup`; every
label (a candidate id, an LLM-written title) is escaped here, so nothing a run wrote can become
markup. No JavaScript and no inline `style` (the page's Content-Security-Policy forbids both):
colours are presentation attributes, tooltips are SVG `<title>` elements. Each plot says how many
data points it drew (`data-points`), which is what the browser tests look for.

What it does not do: decide what is plotted (`archlab.ui.views`) or rank anything (`agents.scoring`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from markupsafe import Markup, escape

WIDTH, HEIGHT = 560, 260
MARGIN = {"left": 58, "right": 16, "top": 14, "bottom": 40}
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
# candidate status -> fill colour in the lineage tree and the scatter
STATUS_COLOURS = {"baseline": "#1f77b4", "evaluated": "#2ca02c", "failed": "#d62728", "rejected": "#ff7f0e",
                  "screened": "#999999", "reference": "#9467bd", "proposed": "#dddddd", "checked": "#bbbbbb"}


@dataclass
class Series:
    name: str
    points: list[tuple[float, float, str]]      # (x, y, tooltip)
    colour: str = ""
    step: bool = False                          # a staircase (best so far) rather than straight segments
    dashed: bool = False


@dataclass
class Node:
    id: str
    depth: int
    status: str
    label: str = ""                             # tooltip text
    href: str = ""
    parents: list[str] = field(default_factory=list)
    marker: str = "circle"                      # circle | square (baseline) | diamond (random reference)


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    out, value = [], first
    while value <= high + step * 1e-9:
        out.append(round(value, 12))
        value += step
    return out


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _span(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high == low:
        pad = abs(low) * 0.05 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.06
    return low - pad, high + pad


def _empty(kind: str, message: str) -> Markup:
    return Markup(f'<svg class="plot" data-plot="{escape(kind)}" data-points="0" viewBox="0 0 {WIDTH} 60" '
                  f'role="img"><text x="{WIDTH / 2}" y="34" text-anchor="middle" fill="#777">{escape(message)}'
                  f'</text></svg>')


class _Frame:
    """Maps data to pixels and draws the axes."""

    def __init__(self, xs: list[float], ys: list[float], x_label: str, y_label: str):
        self.x0, self.x1 = _span(xs)
        self.y0, self.y1 = _span(ys)
        self.x_label, self.y_label = x_label, y_label
        self.left, self.right = MARGIN["left"], WIDTH - MARGIN["right"]
        self.top, self.bottom = MARGIN["top"], HEIGHT - MARGIN["bottom"]

    def x(self, value: float) -> float:
        return self.left + (value - self.x0) / (self.x1 - self.x0) * (self.right - self.left)

    def y(self, value: float) -> float:
        return self.bottom - (value - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top)

    def axes(self) -> list[str]:
        parts = [f'<rect x="{self.left}" y="{self.top}" width="{self.right - self.left}" '
                 f'height="{self.bottom - self.top}" fill="#fff" stroke="#ccc"/>']
        for value in ticks(self.x0, self.x1):
            px = self.x(value)
            parts.append(f'<line x1="{px:.1f}" y1="{self.bottom}" x2="{px:.1f}" y2="{self.bottom + 4}" stroke="#888"/>'
                         f'<text x="{px:.1f}" y="{self.bottom + 16}" text-anchor="middle" class="tick">'
                         f'{escape(_fmt(value))}</text>')
        for value in ticks(self.y0, self.y1):
            py = self.y(value)
            parts.append(f'<line x1="{self.left}" y1="{py:.1f}" x2="{self.right}" y2="{py:.1f}" stroke="#eee"/>'
                         f'<text x="{self.left - 6}" y="{py + 4:.1f}" text-anchor="end" class="tick">'
                         f'{escape(_fmt(value))}</text>')
        parts.append(f'<text x="{(self.left + self.right) / 2}" y="{HEIGHT - 6}" text-anchor="middle" '
                     f'class="axis-label">{escape(self.x_label)}</text>')
        parts.append(f'<text x="14" y="{(self.top + self.bottom) / 2}" text-anchor="middle" class="axis-label" '
                     f'transform="rotate(-90 14 {(self.top + self.bottom) / 2})">{escape(self.y_label)}</text>')
        return parts


def _finite(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    return [p for p in points if math.isfinite(p[0]) and math.isfinite(p[1])]


def line_chart(kind: str, series: list[Series], x_label: str, y_label: str, empty: str) -> Markup:
    """One or more series over a shared x axis, with a legend when there is more than one."""
    series = [Series(s.name, _finite(s.points), s.colour, s.step, s.dashed) for s in series]
    drawn = [s for s in series if s.points]
    if not drawn:
        return _empty(kind, empty)
    frame = _Frame([p[0] for s in drawn for p in s.points], [p[1] for s in drawn for p in s.points], x_label, y_label)
    parts = frame.axes()
    count = 0
    for i, s in enumerate(drawn):
        colour = s.colour or PALETTE[i % len(PALETTE)]
        coords: list[tuple[float, float]] = []
        for j, (x, y, _) in enumerate(s.points):
            if s.step and j:
                coords.append((frame.x(x), coords[-1][1]))
            coords.append((frame.x(x), frame.y(y)))
        if s.step:
            coords.append((frame.right, coords[-1][1]))          # the best so far holds until now
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in coords)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for x, y, tip in s.points:
            parts.append(f'<circle class="point" cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="3.5" fill="{colour}">'
                         f'<title>{escape(tip)}</title></circle>')
            count += 1
    if len(drawn) > 1:
        for i, s in enumerate(drawn):
            colour = s.colour or PALETTE[i % len(PALETTE)]
            y = frame.bottom - 10 - 15 * (len(drawn) - 1 - i)
            parts.append(f'<rect x="{frame.right - 150}" y="{y - 8}" width="10" height="10" fill="{colour}"/>'
                         f'<text x="{frame.right - 136}" y="{y + 1}" class="legend">{escape(s.name)}</text>')
    return _svg(kind, count, parts)


def scatter(kind: str, points: list[tuple[float, float, str, str]], front: list[tuple[float, float]],
            x_label: str, y_label: str, empty: str) -> Markup:
    """Points (x, y, tooltip, status) coloured by status, with the front drawn through `front` as a staircase."""
    points = [p for p in points if math.isfinite(p[0]) and math.isfinite(p[1])]
    if not points:
        return _empty(kind, empty)
    frame = _Frame([p[0] for p in points], [p[1] for p in points], x_label, y_label)
    parts = frame.axes()
    if front:
        ordered = sorted(front)
        coords = []
        for j, (x, y) in enumerate(ordered):
            if j:
                coords.append(f"{frame.x(x):.1f},{frame.y(ordered[j - 1][1]):.1f}")
            coords.append(f"{frame.x(x):.1f},{frame.y(y):.1f}")
        parts.append(f'<polyline class="front" points="{" ".join(coords)}" fill="none" stroke="#333" '
                     f'stroke-width="1.5" stroke-dasharray="4 3"/>')
    on_front = set(front)
    for x, y, tip, status in points:
        ring = ' stroke="#000" stroke-width="2"' if (x, y) in on_front else ' stroke="#fff"'
        parts.append(f'<circle class="point" cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="5" '
                     f'fill="{STATUS_COLOURS.get(status, "#555")}"{ring}><title>{escape(tip)}</title></circle>')
    return _svg(kind, len(points), parts)


def tree(kind: str, nodes: list[Node], empty: str) -> Markup:
    """Generations left to right (depth), each node linked to its parents; colour = status, shape = origin."""
    if not nodes:
        return _empty(kind, empty)
    columns: dict[int, list[Node]] = {}
    for node in nodes:
        columns.setdefault(node.depth, []).append(node)
    rows = max(len(c) for c in columns.values())
    depth = max(columns)
    label = max(len(n.id) for n in nodes) * 7 + 22          # room for the id right of each node
    col_w, row_h = label + 60, 30
    width, height = 40 + col_w * depth + label + 20, max(80, 30 + row_h * rows)
    where: dict[str, tuple[float, float]] = {}
    for d, column in columns.items():
        offset = (rows - len(column)) * row_h / 2
        for i, node in enumerate(column):
            where[node.id] = (40 + d * col_w, 24 + offset + i * row_h)
    parts = []
    for node in nodes:
        x, y = where[node.id]
        for parent in node.parents:
            if parent in where:
                px, py = where[parent]
                start = px + label - 8
                parts.append(f'<path class="edge" d="M{start:.1f},{py:.1f} C{(start + x) / 2:.1f},{py:.1f} '
                             f'{(start + x) / 2:.1f},{y:.1f} {x - 8:.1f},{y:.1f}" fill="none" stroke="#aaa"/>')
    for node in nodes:
        x, y = where[node.id]
        colour = STATUS_COLOURS.get(node.status, "#555")
        if node.marker == "square":
            shape = f'<rect x="{x - 7:.1f}" y="{y - 7:.1f}" width="14" height="14" fill="{colour}" stroke="#000"/>'
        elif node.marker == "diamond":
            shape = (f'<polygon points="{x:.1f},{y - 8:.1f} {x + 8:.1f},{y:.1f} {x:.1f},{y + 8:.1f} {x - 8:.1f},{y:.1f}" '
                     f'fill="{colour}" stroke="#000" stroke-dasharray="2 1"/>')
        else:
            shape = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="{colour}" stroke="#333"/>'
        body = (f'<g class="node" data-id="{escape(node.id)}" data-status="{escape(node.status)}">{shape}'
                f'<text x="{x + 10:.1f}" y="{y + 4:.1f}" class="node-label">{escape(node.id)}</text>'
                f'<title>{escape(node.label or node.id)}</title></g>')
        parts.append(f'<a href="{escape(node.href)}">{body}</a>' if node.href else body)
    return Markup(f'<svg class="plot tree" data-plot="{escape(kind)}" data-points="{len(nodes)}" width="{width}" '
                  f'height="{height}" viewBox="0 0 {width} {height}" role="img">' + "".join(parts) + "</svg>")


def _svg(kind: str, count: int, parts: list[str]) -> Markup:
    return Markup(f'<svg class="plot" data-plot="{escape(kind)}" data-points="{count}" viewBox="0 0 {WIDTH} {HEIGHT}" '
                  f'role="img">' + "".join(parts) + "</svg>")
