"""Charts as SVG text, written by hand so that hnm needs no plotting library.

    svg = histograms({"positives": pos_scores, "negatives": neg_scores}, title="Scores", xlabel="cosine")
    Path("scores.svg").write_text(svg)

`histograms`: overlaid, semi-transparent histograms over shared bins, with axes, ticks and a legend. `bars`: one
bar per system with its confidence interval as a whisker. `lines`: a line per series over labelled, evenly spaced
x positions (a learning curve's sizes), each point with an optional whisker, and a legend. Not here:
anything interactive, log scales, or other chart types.
"""

from html import escape
from typing import Dict, Sequence

import numpy as np

COLOURS = ("#2a9d8f", "#e76f51", "#264653", "#e9c46a", "#8d99ae", "#6a4c93")
W, H = 640, 360  # canvas
L, R, T, B = 60, 20, 40, 50  # margins: left, right, top, bottom


def nice_step(span: float, n: int = 6) -> float:
    """The smallest step of 1, 2 or 5 times a power of ten that covers `span` in at most n - 1 steps.
    span 0.89 -> 0.2 (0.178 rounded up); span 86 -> 20; span 4 -> 1."""
    raw = max(span, 1e-12) / (n - 1)
    power = 10.0 ** np.floor(np.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9)))


def nice_ticks(lo: float, hi: float, n: int = 6) -> np.ndarray:
    """Ticks at round steps (nice_step) from the last multiple at or below lo to the first at or above hi.
    0.03, 0.92 -> 0, 0.2, 0.4, 0.6, 0.8, 1 (the first tick may lie below lo, the last above hi)."""
    step = nice_step(hi - lo, n)
    first, last = np.floor(lo / step + 1e-9), np.ceil(hi / step - 1e-9)
    return np.round(np.arange(first, last + 1) * step, 12)


def _label(v: float, ticks: np.ndarray) -> str:
    """A tick's text with as many decimals as its step needs: 0.2 -> '0.2', 20 -> '20'."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = max(0, int(-np.floor(np.log10(step) + 1e-9)))
    return f"{v:.{decimals}f}"


def histograms(series: Dict[str, Sequence[float]], title: str, xlabel: str, bins: int = 40) -> str:
    """One SVG document with a histogram per named series (counts on the y axis), sharing the bins."""
    data = {k: np.asarray(v, dtype=np.float64) for k, v in series.items()}
    values = np.concatenate([v for v in data.values() if len(v)]) if any(len(v) for v in data.values()) else np.zeros(1)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    counts = {k: np.histogram(v, edges)[0] for k, v in data.items()}
    x_ticks = nice_ticks(lo, hi)
    lo, hi = float(x_ticks[0]), float(x_ticks[-1])  # the axis spans whole steps; the bins keep the data's range
    y_ticks = nice_ticks(0, max(1, max(int(c.max()) for c in counts.values())))
    y_ticks = y_ticks[y_ticks == np.round(y_ticks)] if y_ticks[-1] >= 4 else y_ticks  # whole counts
    top = float(y_ticks[-1])
    pw, ph = W - L - R, H - T - B

    def x(v: float) -> float:
        return L + (v - lo) / (hi - lo) * pw

    def y(c: float) -> float:
        return T + ph - c / top * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>']
    for (name, c), colour in zip(counts.items(), COLOURS):
        for i, n in enumerate(c):
            if n:
                out.append(f'<rect x="{x(edges[i]):.1f}" y="{y(n):.1f}" width="{x(edges[i + 1]) - x(edges[i]):.1f}" '
                           f'height="{T + ph - y(n):.1f}" fill="{colour}" fill-opacity="0.55"/>')
    out.append(f'<line x1="{L}" y1="{T + ph}" x2="{L + pw}" y2="{T + ph}" stroke="black"/>')
    out.append(f'<line x1="{L}" y1="{T}" x2="{L}" y2="{T + ph}" stroke="black"/>')
    for v in x_ticks:
        out.append(f'<line x1="{x(v):.1f}" y1="{T + ph}" x2="{x(v):.1f}" y2="{T + ph + 5}" stroke="black"/>')
        out.append(f'<text x="{x(v):.1f}" y="{T + ph + 18}" text-anchor="middle">{_label(v, x_ticks)}</text>')
    for c in y_ticks:
        out.append(f'<text x="{L - 6}" y="{y(c) + 4:.1f}" text-anchor="end">{_label(c, y_ticks)}</text>')
    out.append(f'<text x="{L + pw / 2}" y="{H - 10}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text x="16" y="{T + ph / 2}" text-anchor="middle" transform="rotate(-90 16 {T + ph / 2})">count</text>')
    for i, ((name, v), colour) in enumerate(zip(data.items(), COLOURS)):
        out.append(f'<rect x="{L + pw - 150}" y="{T + 8 + 18 * i}" width="12" height="12" fill="{colour}" '
                   f'fill-opacity="0.55"/>')
        out.append(f'<text x="{L + pw - 132}" y="{T + 18 + 18 * i}">{escape(name)} ({len(v)})</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def bars(values: Dict[str, float], low: Dict[str, float], high: Dict[str, float], title: str, ylabel: str) -> str:
    """One SVG document: a bar per name with its confidence interval drawn as a whisker from low to high."""
    names = list(values)
    ticks = nice_ticks(0.0, max([high.get(n, values[n]) for n in names] + [1e-9]))
    top = float(ticks[-1])
    pw, ph = W - L - R, H - T - B
    slot = pw / max(1, len(names))
    slanted = max(len(n) for n in names) * 7 > slot  # names wider than their slot are written at a slant below
    height = H + (int(max(len(n) for n in names) * 7 * 0.5) if slanted else 0)

    def y(v: float) -> float:
        return T + ph - v / top * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{height}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
           f'<line x1="{L}" y1="{T + ph}" x2="{L + pw}" y2="{T + ph}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{T + ph}" stroke="black"/>']
    for v in ticks:
        out.append(f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{_label(v, ticks)}</text>')
    for i, name in enumerate(names):
        cx = L + slot * (i + 0.5)
        out.append(f'<rect x="{cx - slot * 0.3:.1f}" y="{y(values[name]):.1f}" width="{slot * 0.6:.1f}" '
                   f'height="{T + ph - y(values[name]):.1f}" fill="{COLOURS[i % len(COLOURS)]}"/>')
        if name in low and name in high:
            out.append(f'<line x1="{cx:.1f}" y1="{y(low[name]):.1f}" x2="{cx:.1f}" y2="{y(high[name]):.1f}" '
                       f'stroke="black"/>')
            for v in (low[name], high[name]):
                out.append(f'<line x1="{cx - 6:.1f}" y1="{y(v):.1f}" x2="{cx + 6:.1f}" y2="{y(v):.1f}" stroke="black"/>')
        if slanted:
            out.append(f'<text x="{cx:.1f}" y="{T + ph + 14}" text-anchor="end" '
                       f'transform="rotate(-30 {cx:.1f} {T + ph + 14})">{escape(name)}</text>')
        else:
            out.append(f'<text x="{cx:.1f}" y="{T + ph + 16}" text-anchor="middle">{escape(name)}</text>')
        out.append(f'<text x="{cx:.1f}" y="{y(values[name]) - 4:.1f}" text-anchor="middle">{values[name]:.3f}</text>')
    out.append(f'<text x="16" y="{T + ph / 2}" text-anchor="middle" transform="rotate(-90 16 {T + ph / 2})">'
               f'{escape(ylabel)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def lines(labels: Sequence[str], series: Dict[str, Sequence[float]], low: Dict[str, Sequence[float]],
          high: Dict[str, Sequence[float]], title: str, xlabel: str, ylabel: str) -> str:
    """One SVG document: a line with a dot per point for each named series over the evenly spaced x positions
    `labels`, and a whisker from low to high at each point of a series that has them."""
    values = [v for name in series for v in (*series[name], *low.get(name, ()), *high.get(name, ()))]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    ticks = nice_ticks(lo, hi if hi > lo else lo + 1e-3)
    bottom, top = float(ticks[0]), float(ticks[-1])
    pw, ph = W - L - R, H - T - B
    slot = pw / max(1, len(labels))

    def x(i: int) -> float:
        return L + slot * (i + 0.5)

    def y(v: float) -> float:
        return T + ph - (v - bottom) / (top - bottom) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
           f'<line x1="{L}" y1="{T + ph}" x2="{L + pw}" y2="{T + ph}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{T + ph}" stroke="black"/>']
    for v in ticks:
        out.append(f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{_label(v, ticks)}</text>')
    for i, label in enumerate(labels):
        out.append(f'<text x="{x(i):.1f}" y="{T + ph + 18}" text-anchor="middle">{escape(str(label))}</text>')
    for k, (name, ys) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(ys))
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for i, v in enumerate(ys):
            if name in low and name in high:
                out.append(f'<line x1="{x(i):.1f}" y1="{y(low[name][i]):.1f}" x2="{x(i):.1f}" '
                           f'y2="{y(high[name][i]):.1f}" stroke="{colour}"/>')
            out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        out.append(f'<rect x="{L + 10}" y="{T + 8 + 18 * k}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{L + 28}" y="{T + 18 + 18 * k}">{escape(name)}</text>')
    out.append(f'<text x="{L + pw / 2}" y="{H - 10}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text x="16" y="{T + ph / 2}" text-anchor="middle" transform="rotate(-90 16 {T + ph / 2})">'
               f'{escape(ylabel)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
