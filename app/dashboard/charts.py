"""Server-rendered SVG bar charts for Home: no JavaScript, readable by screen readers (with a data table).

The SVG scales to its container (viewBox, width 100%); each bar has a <title> (a tooltip on hover) and the
chart as a whole has a text label. The template shows the same numbers as a table under a disclosure.
"""
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 200
PAD_LEFT = 8
PAD_RIGHT = 8
PAD_TOP = 18
PAD_BOTTOM = 26
BAR_GAP_RATIO = 0.2


@dataclass(frozen=True)
class Point:
    slot: datetime
    label: str       # "Mar 3" or "14:00"
    value: int       # minor units
    text: str        # formatted amount


def bar_chart(points: list[Point], *, title: str, max_text: str) -> Markup:
    """An SVG bar chart of the points (equal-width bars, the tallest bar reaching the top)."""
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    top = max((p.value for p in points), default=0)
    slot_w = plot_w / max(len(points), 1)
    bar_w = max(slot_w * (1 - BAR_GAP_RATIO), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" focusable="false" xmlns="http://www.w3.org/2000/svg">',
        f'<line class="chart-axis" x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH - PAD_RIGHT}" '
        f'y2="{PAD_TOP + plot_h}"/>',
        f'<line class="chart-grid" x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{WIDTH - PAD_RIGHT}" y2="{PAD_TOP}"/>',
        f'<text class="chart-max" x="{PAD_LEFT}" y="{PAD_TOP - 5}">{escape(max_text)}</text>',
    ]
    for index, point in enumerate(points):
        height = 0 if top == 0 else max(plot_h * point.value / top, 1 if point.value else 0)
        x = PAD_LEFT + index * slot_w + (slot_w - bar_w) / 2
        y = PAD_TOP + plot_h - height
        parts.append(f'<rect class="chart-bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{height:.1f}">'
                     f'<title>{escape(point.label)}: {escape(point.text)}</title></rect>')
    # Three x labels (first, middle, last) stay legible at any width.
    for index in sorted({0, len(points) // 2, len(points) - 1}) if points else ():
        point = points[index]
        x = PAD_LEFT + index * slot_w + slot_w / 2
        anchor = "start" if index == 0 else ("end" if index == len(points) - 1 else "middle")
        x = PAD_LEFT if anchor == "start" else (WIDTH - PAD_RIGHT if anchor == "end" else x)
        parts.append(f'<text class="chart-label" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">'
                     f'{escape(point.label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
