"""Small inline-SVG charts for the reports: line/scatter charts with markers, and heatmaps.

Hand-written rather than drawn with matplotlib: a report holds a dozen plots and must be written in well under a
second at the end of every run, each marker carries its finding in an SVG <title> (a tooltip in every browser, no
script), and every string that reaches the page goes through html.escape here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
_IDS = itertools.count(1)
MAX_POINTS = 2500  # points per series: a page of a 100k-step run stays a few hundred KB
SEVERITY_COLOR = {"error": "#d62728", "warning": "#e69500", "info": "#1f77b4"}


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def fmt(v: float) -> str:
    """A tick label: short, no trailing zeros."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        return f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{v:.4g}"


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """About n round numbers from lo to hi (whole numbers only when `integer`: epochs, steps)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    if integer:
        raw = max(raw, 1.0)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in ((1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


@dataclass
class _Series:
    xs: list[float]
    ys: list[float]
    label: str
    color: str
    dashed: bool = False
    faded: bool = False
    points: bool = False
    line: bool = True
    legend: bool = True


@dataclass
class _Mark:
    x: float
    text: str
    tooltip: str
    color: str
    cls: str
    code: str = ""


@dataclass
class Chart:
    """A line chart. Non-finite values break the line; on a log axis so do values <= 0."""

    title: str
    xlabel: str = ""
    ylabel: str = ""
    logy: bool = False
    width: int = 760
    height: int = 300
    series: list[_Series] = field(default_factory=list)
    marks: list[_Mark] = field(default_factory=list)
    xint: bool = False  # x counts something (epochs, steps): whole-number ticks
    diagonal: bool = False  # y = x (predicted vs true)
    hline: float | None = None  # y = constant (residuals around 0)

    def line(self, xs: Sequence[float], ys: Sequence[float], label: str, *, color: str | None = None,
             dashed: bool = False, faded: bool = False, points: bool = False, line: bool = True,
             legend: bool = True) -> None:
        color = color or PALETTE[len(self.series) % len(PALETTE)]
        xs, ys = list(xs), list(ys)
        if len(xs) > MAX_POINTS:  # a long run: every k-th point (and every non-finite one, so breaks stay)
            k = -(-len(xs) // MAX_POINTS)
            keep = [i for i in range(len(xs)) if i % k == 0 or i == len(xs) - 1 or not _finite(ys[i])]
            xs, ys = [xs[i] for i in keep], [ys[i] for i in keep]
        self.series.append(_Series([float(x) if _finite(x) else math.nan for x in xs],
                                   [float(y) if _finite(y) else math.nan for y in ys],
                                   label, color, dashed, faded, points, line, legend))

    def mark(self, x: float, text: str, tooltip: str, *, color: str = "#d62728", cls: str = "finding",
             code: str = "") -> None:
        if _finite(x):
            self.marks.append(_Mark(float(x), text, tooltip, color, cls, code))

    # -------------------------------------------------------------------------------------------- drawing
    def _ok(self, y: float) -> bool:
        return math.isfinite(y) and (y > 0 or not self.logy)

    def render(self) -> str:
        W, H = self.width, self.height
        left, right, top, bottom = 64, 170, 28, 42
        pw, ph = W - left - right, H - top - bottom
        xs = [x for s in self.series for x, y in zip(s.xs, s.ys, strict=True) if math.isfinite(x) and self._ok(y)]
        xs += [m.x for m in self.marks]
        ys = [y for s in self.series for x, y in zip(s.xs, s.ys, strict=True) if math.isfinite(x) and self._ok(y)]
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{W}" height="{H}" '
               f'viewBox="0 0 {W} {H}" role="img"><title>{escape(self.title)}</title>',
               f'<text x="{left}" y="16" class="ct">{escape(self.title)}</text>']
        if not ys:
            out.append(f'<text x="{left + 10}" y="{top + ph / 2}" class="empty">no finite values to draw</text></svg>')
            return "".join(out)
        x0, x1 = min(xs), max(xs)
        if x1 == x0:
            x0, x1 = x0 - 1, x1 + 1
        if self.logy:
            y0, y1 = math.log10(min(ys)), math.log10(max(ys))
        else:
            y0, y1 = min(ys), max(ys)
            if self.hline is not None:
                y0, y1 = min(y0, self.hline), max(y1, self.hline)
        if y1 == y0:
            y0, y1 = y0 - (abs(y0) * 0.1 or 1), y1 + (abs(y1) * 0.1 or 1)
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad

        def sx(x: float) -> float:
            return left + (x - x0) / (x1 - x0) * pw

        def sy(y: float) -> float:
            v = math.log10(y) if self.logy else y
            return top + ph - (v - y0) / (y1 - y0) * ph

        out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
        for t in nice_ticks(x0, x1, integer=self.xint):
            out.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top + ph}" y2="{top + ph + 4}" class="tick"/>'
                       f'<text x="{sx(t):.1f}" y="{top + ph + 16}" class="tl" text-anchor="middle">{fmt(t)}</text>')
        if self.logy:
            every = max(1, math.ceil((math.floor(y1) - math.ceil(y0) + 1) / 7))  # at most ~7 decades labelled
            yt = [10.0 ** e for e in range(math.ceil(y0), math.floor(y1) + 1, every)] or [10 ** ((y0 + y1) / 2)]
        else:
            yt = nice_ticks(y0, y1)
        for t in yt:
            y = sy(t)
            out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                       f'<text x="{left - 6}" y="{y + 4:.1f}" class="tl" text-anchor="end">{fmt(t)}</text>')
        out.append(f'<text x="{left + pw / 2}" y="{H - 6}" class="al" text-anchor="middle">{escape(self.xlabel)}</text>'
                   f'<text x="14" y="{top + ph / 2}" class="al" text-anchor="middle" '
                   f'transform="rotate(-90 14 {top + ph / 2})">{escape(self.ylabel)}</text>')
        if self.diagonal:
            lo, hi = max(x0, min(ys)), min(x1, max(ys))
            out.append(f'<line x1="{sx(lo):.1f}" y1="{sy(lo):.1f}" x2="{sx(hi):.1f}" y2="{sy(hi):.1f}" class="ref"/>')
        if self.hline is not None:
            out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(self.hline):.1f}" y2="{sy(self.hline):.1f}" '
                       'class="ref"/>')
        clip = f"clip{next(_IDS)}"  # unique in the page (id() of a chart drawn and dropped can come back)
        out.append(f'<clipPath id="{clip}"><rect x="{left}" y="{top}" width="{pw}" height="{ph}"/></clipPath>'
                   f'<g clip-path="url(#{clip})">')
        for s in self.series:
            style = f'stroke="{s.color}"' + (' stroke-dasharray="5 3"' if s.dashed else "") + (
                ' opacity="0.35"' if s.faded else "")
            if s.line:
                for run in _runs(s.xs, s.ys, self._ok):
                    pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in run)
                    out.append(f'<polyline points="{pts}" fill="none" stroke-width="1.6" {style}/>')
            if s.points:
                out.append(f'<g fill="{s.color}"' + (' opacity="0.5"' if s.faded else "") + ">")
                out.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.6"/>'
                           for x, y in zip(s.xs, s.ys, strict=True) if math.isfinite(x) and self._ok(y))
                out.append("</g>")
        out.append("</g>")
        ends: list[float] = []  # per label row: where its last label ends (markers close together stack down)
        for m in sorted(self.marks, key=lambda m: m.x):
            x = sx(m.x)
            row = next((i for i, e in enumerate(ends) if e < x), len(ends))
            if row == len(ends):
                ends.append(0.0)
            ends[row] = x + 8 + 6 * len(m.text)
            ty = top + 10 + (row % 12) * 11
            out.append(f'<g class="{escape(m.cls)}" data-code="{escape(m.code)}"><title>{escape(m.tooltip)}</title>'
                       f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="{m.color}" '
                       f'stroke-dasharray="3 2" stroke-width="1.4"/>'
                       f'<path d="M{x - 5:.1f},{top} L{x + 5:.1f},{top} L{x:.1f},{top + 7}" fill="{m.color}"/>'
                       f'<text x="{x + 3:.1f}" y="{ty}" class="ml" fill="{m.color}">{escape(m.text)}</text></g>')
        # legend, right of the plot
        ly = top + 4
        shown = [s for s in self.series if s.legend]
        for s in shown[:14]:
            label = s.label if len(s.label) <= 24 else s.label[:23] + "…"
            dash = ' stroke-dasharray="5 3"' if s.dashed else ""
            out.append(f'<g><title>{escape(s.label)}</title><line x1="{left + pw + 10}" x2="{left + pw + 28}" '
                       f'y1="{ly}" y2="{ly}" stroke="{s.color}" stroke-width="2"{dash}/>'
                       f'<text x="{left + pw + 32}" y="{ly + 4}" class="lg">{escape(label)}</text></g>')
            ly += 15
        if len(shown) > 14:
            out.append(f'<text x="{left + pw + 10}" y="{ly + 4}" class="lg">+{len(shown) - 14} more</text>')
        out.append("</svg>")
        return "".join(out)


def _runs(xs: list[float], ys: list[float], ok: object) -> list[list[tuple[float, float]]]:
    """The stretches of drawable points (a NaN breaks the line)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs, ys, strict=True):
        if math.isfinite(x) and ok(y):  # type: ignore[operator]
            runs[-1].append((x, y))
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if r]


def heatmap(matrix: Sequence[Sequence[float]], rows: Sequence[str], cols: Sequence[str], title: str,
            xlabel: str = "predicted", ylabel: str = "true") -> str:
    """A matrix of counts (confusion matrix), each cell with its number and a tooltip."""
    n_r, n_c = len(rows), len(cols)
    cell = max(14, min(44, 440 // max(n_r, n_c, 1)))
    lab = min(150, 8 + 7 * max((len(str(r)) for r in rows), default=4))
    left, top = lab + 30, 44
    W, H = left + n_c * cell + 20, top + n_r * cell + 30
    peak = max((v for r in matrix for v in r), default=0) or 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           f'role="img"><title>{escape(title)}</title><text x="8" y="16" class="ct">{escape(title)}</text>',
           f'<text x="{left + n_c * cell / 2}" y="34" class="al" text-anchor="middle">{escape(xlabel)}</text>',
           f'<text x="10" y="{top + n_r * cell / 2}" class="al" text-anchor="middle" '
           f'transform="rotate(-90 10 {top + n_r * cell / 2})">{escape(ylabel)}</text>']
    show = cell >= 22
    for i, r in enumerate(matrix):
        out.append(f'<text x="{left - 4}" y="{top + i * cell + cell / 2 + 4}" class="tl" text-anchor="end">'
                   f'{escape(_short(rows[i]))}</text>')
        for j, v in enumerate(r):
            a = v / peak
            fill = f"rgba(31,119,180,{0.08 + 0.92 * a:.3f})"
            txt = "#fff" if a > 0.55 else "#222"
            out.append(f'<g><title>true {escape(str(rows[i]))}, predicted {escape(str(cols[j]))}: {v:g}</title>'
                       f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell}" height="{cell}" '
                       f'fill="{fill}" stroke="#fff"/>'
                       + (f'<text x="{left + j * cell + cell / 2}" y="{top + i * cell + cell / 2 + 4}" class="tl" '
                          f'text-anchor="middle" fill="{txt}">{v:g}</text>' if show else "") + "</g>")
    for j, c in enumerate(cols):
        x = left + j * cell + cell / 2
        out.append(f'<g><title>{escape(str(c))}</title><text x="{x}" y="{top + n_r * cell + 14}" class="tl" '
                   f'text-anchor="middle">{escape(_short(c, max(3, cell // 7)))}</text></g>')
    out.append("</svg>")
    return "".join(out)


def _short(s: object, n: int = 20) -> str:
    s = str(s)
    return s if len(s) <= n else s[:n - 1] + "…"
