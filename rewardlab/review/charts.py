"""Line charts as inline SVG, laid out here and drawn by ``templates/_chart.html``.

The page renders the same everywhere, offline, with no plotting library at request time, and
every label goes through the template's autoescaping. Each drawn series also carries its data
(``data-xy``) and each chart its axes (``data-x0`` ...), which ``static/review.js`` uses for
smoothing (an exponential moving average, re-projected onto the same axes) and hover values;
without JavaScript the raw curves stay as drawn.

Comparison charts overlay one series per reward version on shared axes, with a colour per
version that is the same in every chart (:func:`version_colors`).
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rewardlab.review.runs import Version, num

PALETTE = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#d55e00",
    "#cc79a7",
    "#56b4e9",
    "#7f7f7f",
    "#332288",
    "#882255",
    "#117733",
)
"""Okabe-Ito colours (readable for colour-blind viewers), then a few more."""
WIDTH, HEIGHT = 460, 230
LEFT, RIGHT, TOP, BOTTOM = 52, 14, 12, 40
MAX_POINTS = 200
MAX_MARKERS = 40
LEGEND_MAX = 6
"""Comparison charts with more series than this rely on the page's shared version legend."""
DIAGNOSTICS = (
    ("rollout/ep_len_mean", "Episode length (training episodes)"),
    ("rollout/ep_rew_mean", "Episode return under the version's own reward (training)"),
    ("train/loss", "Total loss"),
    ("train/policy_gradient_loss", "Policy-gradient loss"),
    ("train/value_loss", "Value loss"),
    ("train/entropy_loss", "Entropy loss (negative entropy)"),
    ("train/approx_kl", "Approximate KL"),
    ("train/clip_fraction", "Clip fraction"),
    ("train/explained_variance", "Explained variance"),
    ("train/std", "Policy standard deviation"),
    ("train/actor_loss", "Actor loss"),
    ("train/critic_loss", "Critic loss"),
    ("train/ent_coef", "Entropy coefficient"),
    ("train/ent_coef_loss", "Entropy coefficient loss"),
    ("time/fps", "Training speed (steps per second)"),
)
"""SB3 training diagnostics shown when a version logged them (``tb/progress.csv``)."""
STEPS = "time/total_timesteps"


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]
    dashed: bool = False
    color: str | None = None
    emphasis: bool = True


@dataclass
class DrawnSeries:
    name: str
    color: str
    dashed: bool
    polyline: str
    """``x,y x,y ...`` in SVG coordinates (empty for a single point)."""
    markers: list[tuple[float, float, str]]
    """(x, y, tooltip) drawn as dots when there are few points."""
    data: str = ""
    """``x,y x,y ...`` in data units (4 significant digits), for smoothing and hover."""
    emphasis: bool = True


@dataclass
class Chart:
    title: str
    xlabel: str
    ylabel: str = ""
    key: str = ""
    """A stable identifier (CSS/test hook)."""
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_w: int = WIDTH - LEFT - RIGHT
    plot_h: int = HEIGHT - TOP - BOTTOM
    x0: float = 0.0
    x1: float = 1.0
    y0: float = 0.0
    y1: float = 1.0
    xticks: list[tuple[float, str]] = field(default_factory=list)
    yticks: list[tuple[float, str]] = field(default_factory=list)
    series: list[DrawnSeries] = field(default_factory=list)
    legend: bool = True
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


def distinct_labels(ticks: Sequence[float]) -> list[str]:
    """:func:`short_number` labels, with more digits where neighbours would read the same
    (a range that is narrow for its magnitude: ``0.001556``, ``0.001558``)."""
    for digits in range(3, 9):
        labels = [f"{t:.{digits}g}" if abs(t) < 1e3 else short_number(t) for t in ticks]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_POINTS)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


def version_colors(numbers: Sequence[int]) -> dict[int, str]:
    """One colour per version, the same in every chart: the palette up to 10 versions, else
    evenly spread hues (golden-angle steps, so neighbours differ)."""
    if len(numbers) <= len(PALETTE):
        return {n: PALETTE[i] for i, n in enumerate(numbers)}
    out = {}
    for i, n in enumerate(numbers):
        r, g, b = colorsys.hls_to_rgb((i * 0.381966) % 1.0, 0.42 + 0.12 * (i % 3) / 2, 0.7)
        out[n] = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
    return out


def line_chart(
    title: str, series: Sequence[Series], *, xlabel: str, ylabel: str = "", key: str = "",
    y_range: tuple[float, float] | None = None, x_format: Callable[[float], str] = short_number,
    integer_x: bool = False,
) -> Chart:  # fmt: skip
    """Lay out ``series`` (empty ones are dropped) on shared axes."""
    chart = Chart(title=title, xlabel=xlabel, ylabel=ylabel, key=key)
    kept = [
        (s, _thin(sorted(p for p in s.points if math.isfinite(p[0]) and math.isfinite(p[1]))))
        for s in series
    ]
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
        y0, y1 = (
            y_range[0] - 0.04 * (y_range[1] - y_range[0]),
            y_range[1] + 0.04 * (y_range[1] - y_range[0]),
        )
    else:
        y0, y1 = yt[0], yt[-1]
    chart.x0, chart.x1, chart.y0, chart.y1 = x0, x1, y0, y1
    ylabels = distinct_labels(yt)
    chart.left = max(
        LEFT, 12 + round(6.6 * max(len(label) for label in ylabels))
    )  # room for the longest label
    chart.plot_w = chart.width - chart.left - RIGHT

    def sx(x: float) -> float:
        return round(chart.left + (x - x0) / (x1 - x0) * chart.plot_w, 1)

    def sy(y: float) -> float:
        return round(chart.top + (1 - (y - y0) / (y1 - y0)) * chart.plot_h, 1)

    chart.xticks = [(sx(t), x_format(t)) for t in xt]
    chart.yticks = [(sy(t), label) for t, label in zip(yt, ylabels, strict=True)]
    for i, (s, pts) in enumerate(kept):
        color = s.color or PALETTE[i % len(PALETTE)]
        coords = [(sx(x), sy(y)) for x, y in pts]
        markers = [
            (cx, cy, f"{s.name}: {y:.4g} at {x_format(x)}")
            for (cx, cy), (x, y) in zip(coords, pts, strict=True)
        ]
        chart.series.append(DrawnSeries(
            name=s.name, color=color, dashed=s.dashed, emphasis=s.emphasis,
            polyline=" ".join(f"{cx},{cy}" for cx, cy in coords) if len(coords) > 1 else "",
            markers=markers if len(markers) <= MAX_MARKERS else [],
            data=" ".join(f"{x:.6g},{y:.4g}" for x, y in pts),
        ))  # fmt: skip
    return chart


def _column(rows: list[dict[str, str]], x_key: str, y_key: str) -> list[tuple[float, float]]:
    out = []
    for r in rows:
        x, y = num(r.get(x_key)), num(r.get(y_key))
        if x is not None and y is not None:
            out.append((x, y))
    return out


@dataclass
class Comparison:
    """The overlaid learning curves of a run's versions: evaluation metrics, reward components
    and SB3 diagnostics, one series per version in every chart."""

    colors: dict[int, str]
    main: list[Chart]
    components: list[Chart]
    diagnostics: list[Chart]


def comparison_charts(versions: Sequence[Version], emphasized: Sequence[int] = ()) -> Comparison:
    """Charts overlaying every version (``emphasized`` ones drawn bold when there are many)."""
    colors = version_colors([v.number for v in versions])
    many = len(versions) > 4

    def overlay(title: str, key: str, rows: Callable[[Version], list[dict[str, str]]], x_key: str, y_key: str,
                y_range: tuple[float, float] | None = None) -> Chart:  # fmt: skip
        return line_chart(
            title, [Series(f"v{v.number}", _column(rows(v), x_key, y_key), color=colors[v.number],
                           emphasis=not many or v.number in emphasized) for v in versions],
            xlabel="environment steps", key=key, y_range=y_range,
        )  # fmt: skip

    def metrics(v: Version) -> list[dict[str, str]]:
        return v.metrics

    def progress_rows(v: Version) -> list[dict[str, str]]:
        return v.progress_rows

    main = [
        overlay("Task success during training (evaluations)", "success", metrics, "timesteps", "success_rate", (0.0, 1.0)),
        overlay("Progress toward the goal (evaluations)", "progress", metrics, "timesteps", "mean_progress", (0.0, 1.0)),
        overlay("Benchmark return (evaluations; comparable across versions)", "env_return", metrics, "timesteps", "mean_env_return"),
    ]  # fmt: skip
    names = sorted({k[7:] for v in versions for r in v.progress_rows[:1] for k in r
                    if k and k.startswith("reward/") and k not in ("reward/error", "reward/env")})  # fmt: skip
    components = [overlay(f"Reward component: {name} (mean per step, training)", f"reward/{name}", progress_rows, STEPS,
                          f"reward/{name}") for name in names]  # fmt: skip
    diagnostics = [overlay(title, key, progress_rows, STEPS, key) for key, title in DIAGNOSTICS]
    for c in [*main, *components, *diagnostics]:
        c.legend = (
            len(c.series) <= LEGEND_MAX
        )  # more versions: the page's shared legend and hover values
    return Comparison(
        colors,
        main,
        [c for c in components if not c.empty],
        [c for c in diagnostics if not c.empty],
    )


def lineage_chart(versions: Sequence[Version]) -> Chart:
    """Success rate and progress of every evaluated version."""
    trained = [v for v in versions if v.success_rate is not None or v.progress is not None]
    return line_chart(
        "Final evaluation per reward version",
        [Series("success rate", [(v.number, v.success_rate) for v in trained if v.success_rate is not None]),
         Series("progress", [(v.number, v.progress) for v in trained if v.progress is not None], dashed=True)],
        xlabel="reward version", y_range=(0.0, 1.0), x_format=lambda x: f"v{int(x)}", integer_x=True, key="lineage",
    )  # fmt: skip
