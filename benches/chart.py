"""Draw the ratios to gevent as an SVG bar chart: one horizontal bar per bench on a log scale, centred on 1x (to the
right: ferrovent is better), under the machine header. Plain SVG text written here, so the benches need no plotting
library.
"""

from __future__ import annotations

import math
from pathlib import Path
from xml.sax.saxutils import escape

WIDTH = 900
LABEL_WIDTH = 190  # bench names, left of the plot
VALUE_WIDTH = 70  # room for the ratio text right of the longest bar
ROW_HEIGHT = 24
LINE_HEIGHT = 16
BETTER, WORSE = "#2e7d32", "#c62828"
TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _text(x: float, y: float, content: str, size: int = 12, anchor: str = "start", weight: str = "normal") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}">'
        f"{escape(content)}</text>"
    )


def _domain(ratios: list[float]) -> tuple[float, float]:
    """log10 bounds of the axis: every ratio and 1x inside, with a margin."""
    values = [*ratios, 1.0]
    return math.log10(min(values)) - 0.15, math.log10(max(values)) + 0.15


def render(title: str, header: list[tuple[str, str]], bars: list[tuple[str, float | None]], notes: list[str]) -> str:
    """The chart as an SVG document. `bars` are (bench, ratio) in display order; a ratio of None (no figure for
    one side) gets a label and no bar."""
    low, high = _domain([ratio for _, ratio in bars if ratio is not None and ratio > 0])
    plot_left, plot_right = LABEL_WIDTH, WIDTH - VALUE_WIDTH

    def x_of(ratio: float) -> float:
        return plot_left + (math.log10(ratio) - low) / (high - low) * (plot_right - plot_left)

    out: list[str] = []
    y = 24.0
    out.append(_text(12, y, title, size=15, weight="bold"))
    for label, value in header:
        y += LINE_HEIGHT
        out.append(_text(12, y, f"{label}: {value}", size=11))
    y += LINE_HEIGHT
    plot_top = y + 8
    plot_bottom = plot_top + ROW_HEIGHT * len(bars)
    for tick in TICKS:
        if low <= math.log10(tick) <= high:
            tx = x_of(tick)
            colour, dash = ("#555", "") if tick == 1 else ("#ccc", ' stroke-dasharray="3,3"')
            out.append(
                f'<line x1="{tx:.1f}" y1="{plot_top:.1f}" x2="{tx:.1f}" y2="{plot_bottom:.1f}" '
                f'stroke="{colour}"{dash}/>'
            )
            out.append(_text(tx, plot_bottom + 14, f"{tick:g}x", size=10, anchor="middle"))
    one = x_of(1.0)
    for row, (bench, ratio) in enumerate(bars):
        top = plot_top + row * ROW_HEIGHT
        middle = top + ROW_HEIGHT / 2 + 4
        out.append(_text(plot_left - 8, middle, bench, anchor="end"))
        if ratio is None or ratio <= 0:
            out.append(_text(one + 6, middle, "n/a", size=11))
            continue
        end = x_of(ratio)
        left, width = min(one, end), max(abs(end - one), 1.0)
        colour = BETTER if ratio >= 1 else WORSE
        out.append(
            f'<rect class="bar" data-bench="{escape(bench)}" data-ratio="{ratio:.4g}" x="{left:.1f}" '
            f'y="{top + 4:.1f}" width="{width:.1f}" height="{ROW_HEIGHT - 8}" fill="{colour}"/>'
        )
        label_x, anchor = (end + 5, "start") if ratio >= 1 else (end - 5, "end")
        out.append(_text(label_x, middle, f"{ratio:.2f}x", size=11, anchor=anchor))
    y = plot_bottom + 20
    for note in notes:
        y += LINE_HEIGHT
        out.append(_text(12, y, note, size=10))
    height = math.ceil(y + 12)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">\n'
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>\n' + "\n".join(out) + "\n</svg>\n"
    )


def write(
    path: Path, title: str, header: list[tuple[str, str]], bars: list[tuple[str, float | None]], notes: list[str]
) -> None:
    path.write_text(render(title, header, bars, notes))
