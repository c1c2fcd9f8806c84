"""Line charts in the terminal, drawn with Unicode braille dots and rich colours (no plotting library).

Each character cell holds a 2×4 grid of dots (U+2800–U+28FF), so a chart of ``width × height`` cells
has ``2·width × 4·height`` dots. Consecutive points are joined by straight dot lines; where series
cross, the cell takes the colour of the series drawn last.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text

#: bit of each dot in a braille cell, indexed [row][column] within the 4×2 grid
_DOT_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
COLOURS = ("cyan", "magenta", "yellow", "green", "blue", "red", "bright_white")


class BrailleCanvas:
    """A ``width × height`` cell canvas; ``set(x, y, colour)`` lights the dot at (x, y), y=0 at the top."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.bits = [[0] * width for _ in range(height)]
        self.colour = [[""] * width for _ in range(height)]

    def set(self, x: int, y: int, colour: str) -> None:
        if 0 <= x < 2 * self.width and 0 <= y < 4 * self.height:
            row, col = y // 4, x // 2
            self.bits[row][col] |= _DOT_BITS[y % 4][x % 2]
            self.colour[row][col] = colour

    def line(self, x0: int, y0: int, x1: int, y1: int, colour: str) -> None:
        """Dots along the segment, one per step of the longer axis."""
        n = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(n + 1):
            self.set(round(x0 + (x1 - x0) * i / n), round(y0 + (y1 - y0) * i / n), colour)

    def rows(self) -> list[Text]:
        out = []
        for bits, colours in zip(self.bits, self.colour):
            t = Text()
            for b, c in zip(bits, colours):
                t.append(chr(0x2800 + b), style=c or None)
            out.append(t)
        return out


def _span(values: list[float], log: bool) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:  # a flat line still needs a range to sit in
        pad = abs(lo) * 0.05 if lo else 1.0
        lo, hi = lo - pad, hi + pad
    return lo, hi


def line_chart(
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    title: str = "",
    width: int = 60,
    height: int = 12,
    log_y: bool = False,
) -> Text:
    """A chart of ``series`` = [(label, xs, ys), ...] with y-axis labels, an x range and a legend.

    ``width``/``height`` are the plot area in character cells. Non-finite points are skipped (a
    diverged run simply stops); with ``log_y`` non-positive values are skipped too.
    """
    clean = []
    for label, xs, ys in series:
        pts = [
            (float(x), float(y))
            for x, y in zip(xs, ys)
            if math.isfinite(x) and math.isfinite(y) and (not log_y or y > 0)
        ]
        clean.append((label, [(x, math.log10(y) if log_y else y) for x, y in pts]))
    out = Text()
    if title:
        out.append(title + "\n", style="bold")
    all_pts = [p for _, pts in clean for p in pts]
    if not all_pts:
        out.append("(no data)\n", style="dim")
        return out
    x_lo, x_hi = _span([p[0] for p in all_pts], False)
    y_lo, y_hi = _span([p[1] for p in all_pts], False)
    canvas = BrailleCanvas(width, height)
    dots_w, dots_h = 2 * width - 1, 4 * height - 1

    def to_dot(x: float, y: float) -> tuple[int, int]:
        return (
            round((x - x_lo) / (x_hi - x_lo) * dots_w),
            round((y_hi - y) / (y_hi - y_lo) * dots_h),
        )  # y grows downwards on screen

    for i, (_, pts) in enumerate(clean):
        colour = COLOURS[i % len(COLOURS)]
        dots = [to_dot(x, y) for x, y in pts]
        for (xa, ya), (xb, yb) in zip(dots, dots[1:]):
            canvas.line(xa, ya, xb, yb, colour)
        if len(dots) == 1:
            canvas.set(*dots[0], colour)

    def y_label(v: float) -> str:
        return f"{10**v:.3g}" if log_y else f"{v:.4g}"

    labels = {0: y_label(y_hi), height - 1: y_label(y_lo), (height - 1) // 2: y_label((y_hi + y_lo) / 2)}
    pad = max(len(s) for s in labels.values())
    for r, row in enumerate(canvas.rows()):
        out.append(labels.get(r, "").rjust(pad) + " ┤" if r in labels else " " * pad + " │", style="dim")
        out.append_text(row)
        out.append("\n")
    out.append(" " * pad + " └" + "─" * width + "\n", style="dim")
    left, right = f"{x_lo:.6g}", f"step {x_hi:.6g}"
    out.append(
        " " * (pad + 2) + left + right.rjust(max(width - len(left), len(right) + 1)) + "\n", style="dim"
    )
    for i, (label, pts) in enumerate(clean):
        out.append("  ● ", style=COLOURS[i % len(COLOURS)])
        out.append(f"{label}" + ("" if pts else " (no data)") + "\n")
    return out


def to_plain(text: Text) -> str:
    """The chart without colours, e.g. for a log file or a test."""
    return text.plain
