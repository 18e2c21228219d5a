"""Human-readable outputs of a run: ``report.md`` and ``curves.png`` per reward version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewardlab.rundir import read_csv


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


def write_run_report(run_dir: Path, summary: dict[str, Any]) -> None:
    """Write ``report.md``: the reward lineage, then the latest version in detail."""
    lines = [
        f"# {summary['task']}: {summary['instruction']}",
        "",
        f"- status: **{summary['status']}**",
        f"- reward writer: {summary['generator']}",
        f"- algorithm: {summary['algo']}",
    ]
    if summary.get("message"):
        lines += ["", "```", str(summary["message"]), "```"]
    versions = summary.get("versions", [])
    if versions:
        lines += ["", "## Reward versions", "", "| version | parent | feedback | steps | success rate |", "|---|---|---|---|---|"]
        for v in versions:
            feedback = "; ".join(v.get("feedback", [])).replace("|", "/") or "-"
            rate = v.get("success_rate")
            lines.append(
                f"| v{v['version']} | {'v' + str(v['parent']) if 'parent' in v else '-'} | {feedback} "
                f"| {v.get('timesteps', '-')} | {'-' if rate is None else f'{rate:.2f}'} |"
            )
    latest = summary.get("latest_version")
    vdir = run_dir / "rewards" / f"v{latest}"
    if latest is not None and vdir.is_dir():
        lines += ["", f"## Latest version: v{latest}"]
        rollout = next((v.get("rollout") for v in versions if v.get("version") == latest), None)
        if rollout:
            lines += ["", f"Rollout: {rollout} ([rollout.json](rewards/v{latest}/rollout.json))"]
        rows = read_csv(vdir / "metrics.csv")
        if rows:
            lines += ["", "| steps | success | progress | reward return | env return |", "|---|---|---|---|---|"]
            lines += [
                f"| {r['timesteps']} | {r['success_rate']} | {r['mean_progress']} | {r['mean_reward_return']} | {r['mean_env_return']} |"
                for r in rows
            ]
        if (vdir / "curves.png").exists():
            lines += ["", f"![curves](rewards/v{latest}/curves.png)"]
        videos = summary.get("videos") or []
        if videos:
            lines += ["", "Videos:", ""] + [f"- [{Path(v).name}]({Path(v).relative_to(run_dir)})" for v in videos]
        if (vdir / "diff.patch").exists():
            lines += ["", "Change from its parent:", "", "```diff", (vdir / "diff.patch").read_text().rstrip(), "```"]
        if (vdir / "reward.py").exists():
            lines += ["", "Reward program:", "", "```python", (vdir / "reward.py").read_text().rstrip(), "```"]
    (run_dir / "report.md").write_text("\n".join(lines) + "\n")
