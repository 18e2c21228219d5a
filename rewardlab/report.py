"""Human-readable outputs of a run: ``summary.json``, ``report.md`` and ``curves.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewardlab.rundir import read_csv, write_json


def plot_curves(run_dir: Path) -> Path | None:
    """Plot success rate / progress over training and the per-component reward means."""
    rows = read_csv(run_dir / "metrics.csv")
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(r["timesteps"]) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].plot(steps, [float(r["success_rate"]) for r in rows], "o-", label="success rate")
    axes[0].plot(steps, [float(r["mean_progress"]) for r in rows], "s--", label="progress")
    axes[0].set(xlabel="environment steps", ylim=(-0.05, 1.05), title="task success (evaluation)")
    axes[0].legend()
    tb = read_csv(run_dir / "tb" / "progress.csv")
    comps = sorted({k for r in tb for k in r if k.startswith("reward/") and k != "reward/error"})
    for key in comps:
        pts = [(int(r["time/total_timesteps"]), float(r[key])) for r in tb if r.get(key) and r.get("time/total_timesteps")]
        if pts:
            axes[1].plot(*zip(*pts, strict=True), label=key[7:])
    axes[1].set(xlabel="environment steps", title="reward components (mean per step)")
    if comps:
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    path = run_dir / "curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(run_dir: Path, summary: dict[str, Any], source: str | None) -> None:
    """Write ``summary.json`` and ``report.md``."""
    write_json(run_dir / "summary.json", summary)
    rows = read_csv(run_dir / "metrics.csv")
    lines = [
        f"# {summary.get('task')}: {summary.get('instruction')}",
        "",
        f"- status: **{summary.get('status')}**",
        f"- reward writer: {summary.get('generator')}",
        f"- algorithm: {summary.get('algo')}, {summary.get('timesteps', 0):,} environment steps "
        f"in {summary.get('train_wall_s', 0):.0f} s",
        f"- final success rate (task metric, {summary.get('final_eval', {}).get('episodes', 0)} "
        f"episodes): **{summary.get('final_eval', {}).get('success_rate', float('nan')):.2f}**",
    ]
    if summary.get("message"):
        lines += ["", "```", str(summary["message"]), "```"]
    if rows:
        lines += ["", "## Evaluations during training", "", "| steps | success | progress | reward return | env return |", "|---|---|---|---|---|"]
        lines += [
            f"| {r['timesteps']} | {r['success_rate']} | {r['mean_progress']} | {r['mean_reward_return']} | {r['mean_env_return']} |"
            for r in rows
        ]
    if (run_dir / "curves.png").exists():
        lines += ["", "![curves](curves.png)"]
    videos = summary.get("videos") or []
    if videos:
        lines += ["", "## Videos", ""] + [f"- [{Path(v).name}]({Path(v).relative_to(run_dir)})" for v in videos]
    if source:
        lines += ["", "## Reward program", "", "```python", source.rstrip(), "```"]
    (run_dir / "report.md").write_text("\n".join(lines) + "\n")
