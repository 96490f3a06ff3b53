"""Small charts as inline SVG, for the monitor's pages: time series, and values with their bands;
no scripts, no network."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
MARK_COLORS = ("#ff7f0e", "#7f7f7f", "#17becf")
PAD_L, PAD_R, PAD_T, PAD_B = 48, 12, 22, 22


def finite(value: Any) -> bool:
    """Whether ``value`` is a number that is neither missing, NaN nor infinite."""
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class _Frame:
    """The chart's size and the data ranges its axes span."""

    width: int
    height: int
    x0: float
    x1: float
    lo: float
    hi: float

    def px(self, x: float) -> float:
        return PAD_L + (x - self.x0) / ((self.x1 - self.x0) or 1.0) * (self.width - PAD_L - PAD_R)

    def py(self, y: float) -> float:
        return self.height - PAD_B - (y - self.lo) / (self.hi - self.lo) * (self.height - PAD_T - PAD_B)


def _axes(f: _Frame) -> str:
    fmt = "%m-%d %H:%M"
    first, last = datetime.fromtimestamp(f.x0, UTC), datetime.fromtimestamp(f.x1, UTC)
    return (
        f"<text x='4' y='{f.py(f.hi) + 4:.1f}' font-size='10'>{f.hi:.3g}</text>"
        f"<text x='4' y='{f.py(f.lo) + 4:.1f}' font-size='10'>{f.lo:.3g}</text>"
        f"<text x='{PAD_L}' y='{f.height - 5}' font-size='10'>{first:{fmt}}</text>"
        f"<text x='{f.width - PAD_R}' y='{f.height - 5}' font-size='10' text-anchor='end'>"
        f"{last:{fmt}} UTC</text>"
    )


def _threshold(f: _Frame, name: str, value: float) -> str:
    """A dashed horizontal line at ``value``, labelled."""
    y = f.py(value)
    return (
        f"<line x1='{PAD_L}' x2='{f.width - PAD_R}' y1='{y:.1f}' y2='{y:.1f}' "
        "stroke='#888' stroke-dasharray='4 3'/>"
        f"<text x='{f.width - PAD_R}' y='{y - 3:.1f}' font-size='10' text-anchor='end' fill='#666'>"
        f"{html.escape(name)} {value:g}</text>"
    )


def _series(f: _Frame, i: int, name: str, xs: list[float], values: Sequence[Any]) -> str:
    """One series: a polyline through its finite points, a dot on each, its name in the legend."""
    color = COLORS[i % len(COLORS)]
    pts = [(f.px(x), f.py(float(v))) for x, v in zip(xs, values, strict=True) if finite(v)]
    parts = []
    if len(pts) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        parts.append(f"<polyline points='{path}' fill='none' stroke='{color}' stroke-width='1.5'/>")
    parts += [f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.5' fill='{color}'/>" for x, y in pts]
    legend_x = PAD_L + 200 + 140 * i
    parts.append(f"<text x='{legend_x}' y='15' font-size='11' fill='{color}'>{html.escape(name)}</text>")
    return "".join(parts)


def _marks(f: _Frame, marks: dict[str, Sequence[Any]]) -> str:
    """Vertical lines at events (a retrain, an onset), one colour per kind, named at the bottom."""
    parts = []
    for i, (name, when) in enumerate(marks.items()):
        color = MARK_COLORS[i % len(MARK_COLORS)]
        for t in when:
            x = f.px(t.timestamp() if hasattr(t, "timestamp") else float(t))
            if PAD_L <= x <= f.width - PAD_R:
                parts.append(
                    f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{PAD_T}' y2='{f.height - PAD_B}' "
                    f"stroke='{color}' stroke-width='1.2' stroke-dasharray='2 2'>"
                    f"<title>{html.escape(name)}</title></line>"
                )
        legend_x = PAD_L + 110 + 80 * i  # between the axis' first and last time
        parts.append(
            f"<text x='{legend_x}' y='{f.height - 5}' font-size='10' fill='{color}'>"
            f"| {html.escape(name)}</text>"
        )
    return "".join(parts)


def svg_chart(
    title: str,
    times: Sequence[Any],
    series: dict[str, list[Any]],
    *,
    lines: dict[str, float] | None = None,
    marks: dict[str, Sequence[Any]] | None = None,
    width: int = 760,
    height: int = 170,
) -> str:
    """A small time-series chart as inline SVG: one polyline and dots per series, dashed
    horizontal lines for thresholds, dotted vertical ones at ``marks`` (name -> times), the time
    range and value range on the axes."""
    xs = [t.timestamp() if hasattr(t, "timestamp") else float(t) for t in times]
    values = [float(v) for vs in series.values() for v in vs if finite(v)] + list((lines or {}).values())
    head = f"<text x='{PAD_L}' y='15' font-size='12' font-weight='600'>{html.escape(title)}</text>"
    if not xs or not values:
        empty = f"<text x='{PAD_L}' y='60' font-size='12'>no data</text>"
        return f"<svg width='{width}' height='{height}'>{head}{empty}</svg>"
    lo, hi = min(0.0, *values), max(values)
    f = _Frame(width, height, min(xs), max(xs), lo, hi if hi > lo else lo + 1.0)
    parts = [head, _axes(f)]
    parts += [_threshold(f, name, value) for name, value in (lines or {}).items()]
    parts += [_series(f, i, name, xs, vs) for i, (name, vs) in enumerate(series.items())]
    if marks:
        parts.append(_marks(f, marks))
    return f"<svg width='{width}' height='{height}' role='img'>{''.join(parts)}</svg>"


def _interval(x: float, ends: tuple[float, float] | None, y: float, *, color: str, tip: str) -> str:
    """A dot at ``x`` with a whisker across ``ends`` (pixels), its numbers as a tooltip."""
    whisker = (
        f"<line x1='{ends[0]:.1f}' x2='{ends[1]:.1f}' y1='{y:.1f}' y2='{y:.1f}' stroke='{color}' "
        "stroke-width='2'/>"
        if ends
        else ""
    )
    dot = f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3.5' fill='{color}'>"
    return f"{whisker}{dot}<title>{html.escape(tip)}</title></circle>"


def svg_intervals(
    title: str, rows: dict[str, dict[str, tuple[Any, Any]]], *, width: int = 760, row_height: int = 34
) -> str:
    """Values with their bands on a 0-1 axis, one row per metric (``rows``: metric -> series ->
    (value, half width or None)); a series keeps its colour and offset in every row."""
    names = list(dict.fromkeys(name for series in rows.values() for name in series))
    height, label_w, right = PAD_T + 14 + row_height * len(rows) + PAD_B, 90, width - PAD_R

    def px(v: float) -> float:
        return label_w + min(max(v, 0.0), 1.0) * (right - label_w)

    parts = [f"<text x='{PAD_L}' y='15' font-size='12' font-weight='600'>{html.escape(title)}</text>"]
    for i, name in enumerate(names):
        parts.append(
            f"<text x='{label_w + 170 * i}' y='{PAD_T + 8}' font-size='11' "
            f"fill='{COLORS[i % len(COLORS)]}'>{html.escape(name)}</text>"
        )
    for r, (metric, series) in enumerate(rows.items()):
        top = PAD_T + 14 + r * row_height
        parts.append(
            f"<text x='4' y='{top + row_height / 2 + 4:.1f}' font-size='11'>{html.escape(metric)}</text>"
        )
        for i, name in enumerate(names):
            value, half = series.get(name, (None, None))
            if not finite(value):
                continue
            v, band = float(value), float(half) if finite(half) else None
            y = top + 6 + i * (row_height - 10) / len(names)
            tip = f"{name}: {v:.3f}" + (f" ± {band:.3f}" if band is not None else "")
            ends = (px(v - band), px(v + band)) if band is not None else None
            parts.append(_interval(px(v), ends, y, color=COLORS[i % len(COLORS)], tip=tip))
    for tick in (0.0, 0.5, 1.0):
        parts.append(
            f"<text x='{px(tick):.1f}' y='{height - 5}' font-size='10' text-anchor='middle'>{tick:g}</text>"
        )
    return f"<svg width='{width}' height='{height}' role='img'>{''.join(parts)}</svg>"
