"""Line charts as inline SVG, laid out here and drawn by ``templates/_chart.html``.

No JavaScript and no plotting library at request time: the page renders the same everywhere,
offline, and every label goes through the template's autoescaping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rewardlab.review.runs import Version, num

PALETTE = ("#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#7f7f7f", "#332288", "#882255", "#117733")
"""Okabe-Ito colours (readable for colour-blind viewers), then a few more."""
WIDTH, HEIGHT = 460, 230
LEFT, RIGHT, TOP, BOTTOM = 52, 14, 12, 40
MAX_POINTS = 300
MAX_MARKERS = 40


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]
    dashed: bool = False


@dataclass
class DrawnSeries:
    name: str
    color: str
    dashed: bool
    polyline: str
    """``x,y x,y ...`` in SVG coordinates (empty for a single point)."""
    markers: list[tuple[float, float, str]]
    """(x, y, tooltip) drawn as dots when there are few points."""


@dataclass
class Chart:
    title: str
    xlabel: str
    ylabel: str = ""
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_w: int = WIDTH - LEFT - RIGHT
    plot_h: int = HEIGHT - TOP - BOTTOM
    xticks: list[tuple[float, str]] = field(default_factory=list)
    yticks: list[tuple[float, str]] = field(default_factory=list)
    series: list[DrawnSeries] = field(default_factory=list)
    note: str = ""

    @property
    def empty(self) -> bool:
        return not self.series


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]`` (the first <= lo, the last >= hi)."""
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks = [first]
    while ticks[-1] < hi - 1e-9 * step:
        ticks.append(first + len(ticks) * step)
    return [round(t, 10) for t in ticks]


def short_number(x: float) -> str:
    """Compact axis labels: ``400k``, ``1.5M``, ``0.25``, ``-3``."""
    ax = abs(x)
    if ax >= 1e6:
        return f"{x / 1e6:.3g}M"
    if ax >= 1e3:
        return f"{x / 1e3:.3g}k"
    return f"{x:.3g}"


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_POINTS)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


def line_chart(
    title: str, series: Sequence[Series], *, xlabel: str, ylabel: str = "",
    y_range: tuple[float, float] | None = None, x_format: Callable[[float], str] = short_number,
    integer_x: bool = False,
) -> Chart:  # fmt: skip
    """Lay out ``series`` (empty ones are dropped) on shared axes."""
    chart = Chart(title=title, xlabel=xlabel, ylabel=ylabel)
    kept = [(s, _thin(sorted(p for p in s.points if math.isfinite(p[0]) and math.isfinite(p[1])))) for s in series]
    kept = [(s, pts) for s, pts in kept if pts]
    if not kept:
        return chart
    xs = [x for _, pts in kept for x, _ in pts]
    ys = [y for _, pts in kept for _, y in pts]
    if integer_x:
        lo, hi = min(xs), max(xs)
        step = max(1, math.ceil((hi - lo) / 8))
        xt = [float(v) for v in range(int(lo), int(hi) + 1, step)]
        x0, x1 = (lo - 0.5, hi + 0.5) if hi - lo < 1 else (lo - 0.25 * step, hi + 0.25 * step)
    else:
        xt = nice_ticks(min(xs), max(xs))
        x0, x1 = xt[0], xt[-1]
    if y_range:  # a fixed range, widened if the data leaves it
        y_range = (min(y_range[0], min(ys)), max(y_range[1], max(ys)))
    yt = nice_ticks(*y_range, count=4) if y_range else nice_ticks(min(ys), max(ys), count=4)
    if y_range:
        yt = [t for t in yt if y_range[0] - 1e-9 <= t <= y_range[1] + 1e-9]
        y0, y1 = y_range[0] - 0.04 * (y_range[1] - y_range[0]), y_range[1] + 0.04 * (y_range[1] - y_range[0])
    else:
        y0, y1 = yt[0], yt[-1]

    def sx(x: float) -> float:
        return round(chart.left + (x - x0) / (x1 - x0) * chart.plot_w, 1)

    def sy(y: float) -> float:
        return round(chart.top + (1 - (y - y0) / (y1 - y0)) * chart.plot_h, 1)

    chart.xticks = [(sx(t), x_format(t)) for t in xt]
    chart.yticks = [(sy(t), short_number(t)) for t in yt]
    for i, (s, pts) in enumerate(kept):
        color = PALETTE[i % len(PALETTE)]
        coords = [(sx(x), sy(y)) for x, y in pts]
        markers = [(cx, cy, f"{s.name}: {y:.4g} at {x_format(x)}") for (cx, cy), (x, y) in zip(coords, pts, strict=True)]
        chart.series.append(DrawnSeries(
            name=s.name, color=color, dashed=s.dashed,
            polyline=" ".join(f"{cx},{cy}" for cx, cy in coords) if len(coords) > 1 else "",
            markers=markers if len(markers) <= MAX_MARKERS else [],
        ))  # fmt: skip
    return chart


def _column(rows: list[dict[str, str]], x_key: str, y_key: str) -> list[tuple[float, float]]:
    out = []
    for r in rows:
        x, y = num(r.get(x_key)), num(r.get(y_key))
        if x is not None and y is not None:
            out.append((x, y))
    return out


def version_charts(v: Version) -> list[Chart]:
    """Task success, returns and per-component reward over training for one version."""
    m, tb = v.metrics, v.progress_rows
    success = line_chart(
        "Task success during training (evaluations)",
        [Series("success rate", _column(m, "timesteps", "success_rate")),
         Series("progress", _column(m, "timesteps", "mean_progress"), dashed=True)],
        xlabel="environment steps", y_range=(0.0, 1.0),
    )  # fmt: skip
    returns = line_chart(
        "Learning curve (episode return)",
        [Series("eval: reward program", _column(m, "timesteps", "mean_reward_return")),
         Series("eval: benchmark reward", _column(m, "timesteps", "mean_env_return"), dashed=True),
         Series("training episodes", _column(tb, "time/total_timesteps", "rollout/ep_rew_mean"))],
        xlabel="environment steps",
    )  # fmt: skip
    names = sorted({k[7:] for r in tb for k in r if k and k.startswith("reward/") and k not in ("reward/error", "reward/env")})
    components = line_chart(
        "Reward components (mean per step, training)",
        [Series(name, _column(tb, "time/total_timesteps", f"reward/{name}")) for name in names],
        xlabel="environment steps",
    )  # fmt: skip
    return [success, returns, components]


def lineage_chart(versions: Sequence[Version]) -> Chart:
    """Success rate and progress of every trained version."""
    trained = [v for v in versions if v.success_rate is not None or v.progress is not None]
    return line_chart(
        "Final evaluation per reward version",
        [Series("success rate", [(v.number, v.success_rate) for v in trained if v.success_rate is not None]),
         Series("progress", [(v.number, v.progress) for v in trained if v.progress is not None], dashed=True)],
        xlabel="reward version", y_range=(0.0, 1.0), x_format=lambda x: f"v{int(x)}", integer_x=True,
    )  # fmt: skip
