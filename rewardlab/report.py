"""Human-readable outputs of a run: ``report.md`` and ``curves.png`` per reward version, and the
one-line evaluation summary the CLI prints.

Numbers lead with what is comparable across reward versions and runs: the task's success rate
with its Wilson 95% interval (the task's own metric, from simulator state) and the benchmark's
own return (the environment's reward, whatever reward trained the policy). Each version's return
under its own reward comes last and is labelled as such: it changes when the reward's weights
change (doubling every weight doubles it), so it does not compare versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewardlab.rundir import read_csv, read_json
from rewardlab.stats import wilson_interval

OWN_RETURN = "own-reward return"
"""How a version's return under its own reward is labelled wherever it is shown."""


def success_with_interval(rate: float | None, episodes: int) -> str:
    """``"0.40 [0.12, 0.77] (2/5)"``: a success rate with its Wilson 95% interval and counts.

    Example:
        >>> success_with_interval(0.4, 5)
        '0.40 [0.12, 0.77] (2/5)'
        >>> success_with_interval(None, 0)
        '-'
    """
    if rate is None or episodes <= 0:
        return "-"
    wins = round(rate * episodes)
    low, high = wilson_interval(wins, episodes)
    return f"{rate:.2f} [{low:.2f}, {high:.2f}] ({wins}/{episodes})"


def evaluation_line(final: dict[str, Any]) -> str:
    """One line for an evaluation summary (:func:`rewardlab.evaluation.summarize`): success with
    its interval, benchmark return, progress, then the own-reward return, labelled.

    Example:
        >>> evaluation_line({"success_rate": 0.4, "episodes": 5, "mean_env_return": 812.5,
        ...                  "mean_progress": 0.61, "mean_reward_return": 1500.0})
        'task success rate 0.40 [0.12, 0.77] (2/5 episodes); benchmark return 812.5; progress 0.61; own-reward return 1500.0 (not comparable across versions)'
    """
    n = int(final.get("episodes", 0))
    text = success_with_interval(final.get("success_rate"), n).replace(f"/{n})", f"/{n} episodes)")
    line = (
        f"task success rate {text}; benchmark return {float(final.get('mean_env_return', 0.0)):.1f}"
    )
    line += f"; progress {float(final.get('mean_progress', 0.0)):.2f}"
    if final.get("mean_reward_return") is not None:
        line += f"; {OWN_RETURN} {float(final['mean_reward_return']):.1f} (not comparable across versions)"
    return line


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
    axes[0].plot(steps, [float(r["success_rate"]) for r in rows], "o-", label="task success rate")
    axes[0].plot(steps, [float(r["mean_progress"]) for r in rows], "s--", label="progress")
    axes[0].set(xlabel="environment steps", ylim=(-0.05, 1.05), title="task success (evaluation)")
    axes[0].legend()
    tb = read_csv(run_dir / "tb" / "progress.csv")
    comps = sorted({k for r in tb for k in r if k.startswith("reward/") and k != "reward/error"})
    for key in comps:
        pts = [
            (int(r["time/total_timesteps"]), float(r[key]))
            for r in tb
            if r.get(key) and r.get("time/total_timesteps")
        ]
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


def _final_eval(run_dir: Path, version: int) -> dict[str, Any]:
    path = run_dir / "rewards" / f"v{version}" / "summary.json"
    if not path.is_file():
        return {}
    final = read_json(path).get("final_eval")
    return final if isinstance(final, dict) else {}


def _number(value: Any, digits: int = 1) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "-"


def write_run_report(run_dir: Path, summary: dict[str, Any]) -> None:
    """Write ``report.md``: which metric judges the run, the reward lineage with comparable
    numbers first, then the latest version in detail."""
    lines = [
        f"# {summary['task']}: {summary['instruction']}",
        "",
        f"- status: **{summary['status']}**",
        f"- reward writer: {summary['generator']}",
        f"- algorithm: {summary['algo']}",
    ]
    metric = summary.get("success_metric")
    if isinstance(metric, dict):
        lines.append(
            f"- success judged by: {metric.get('description')} (metric `{metric.get('metric')}`)"
        )
    if summary.get("message"):
        lines += ["", "```", str(summary["message"]), "```"]
    versions = summary.get("versions", [])
    if versions:
        lines += [
            "",
            "## Reward versions",
            "",
            "Task success with its Wilson 95% interval and the benchmark's own return compare "
            f"versions; the {OWN_RETURN} is each version's return under its own reward and does not.",
            "",
            f"| version | parent | feedback | steps | task success [95% CI] (wins/episodes) | benchmark return | {OWN_RETURN} |",
            "|---|---|---|---|---|---|---|",
        ]
        for v in versions:
            feedback = "; ".join(v.get("feedback", [])).replace("|", "/") or "-"
            final = _final_eval(run_dir, int(v["version"]))
            success = success_with_interval(
                final.get("success_rate", v.get("success_rate")), int(final.get("episodes", 0))
            )
            lines.append(
                f"| v{v['version']} | {'v' + str(v['parent']) if 'parent' in v else '-'} | {feedback} "
                f"| {v.get('timesteps', '-')} | {success} | {_number(final.get('mean_env_return'))} "
                f"| {_number(final.get('mean_reward_return'))} |"
            )
    latest = summary.get("current_version")
    vdir = run_dir / "rewards" / f"v{latest}"
    if latest is not None and vdir.is_dir():
        lines += ["", f"## Current version: v{latest}"]
        final = _final_eval(run_dir, int(latest))
        if final:
            lines += ["", f"Final evaluation: {evaluation_line(final)}."]
        lines += _per_task_lines(final)
        lines += _router_lines(
            read_json(vdir / "summary.json").get("moe")
            if (vdir / "summary.json").is_file()
            else None
        )
        rollout = next((v.get("rollout") for v in versions if v.get("version") == latest), None)
        if rollout:
            lines += ["", f"Rollout: {rollout} ([rollout.json](rewards/v{latest}/rollout.json))"]
        rows = read_csv(vdir / "metrics.csv")
        if rows:
            lines += [
                "",
                "During training (evaluation episodes at each point):",
                "",
                f"| steps | task success | benchmark return | progress | {OWN_RETURN} |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| {r['timesteps']} | {r['success_rate']} | {r['mean_env_return']} | {r['mean_progress']} | {r['mean_reward_return']} |"
                for r in rows
            ]
        if (vdir / "curves.png").exists():
            lines += ["", f"![curves](rewards/v{latest}/curves.png)"]
        videos = summary.get("videos") or []
        if videos:
            lines += ["", "Videos:", ""] + [
                f"- [{Path(v).name}]({_relative(Path(v), run_dir)})" for v in videos
            ]
        if (vdir / "diff.patch").exists():
            lines += [
                "",
                "Change from its parent:",
                "",
                "```diff",
                (vdir / "diff.patch").read_text().rstrip(),
                "```",
            ]
        if (vdir / "reward.py").exists():
            lines += [
                "",
                "Reward program:",
                "",
                "```python",
                (vdir / "reward.py").read_text().rstrip(),
                "```",
            ]
    (run_dir / "report.md").write_text("\n".join(lines) + "\n")


def _per_task_lines(final: dict[str, Any]) -> list[str]:
    """A multi-task set's final evaluation per member (:mod:`rewardlab.multitask`)."""
    per_task = final.get("per_task") or {}
    if not per_task:
        return []
    lines = ["", "Success per task (each member's own metric, Wilson 95% interval):", "",
             "| task | task success [95% CI] (wins/episodes) | benchmark return | progress |", "|---|---|---|---|"]  # fmt: skip
    for name, s in per_task.items():
        success = success_with_interval(s.get("success_rate"), int(s.get("episodes", 0)))
        lines.append(
            f"| {name} | {success} | {_number(s.get('mean_env_return'))} | {_number(s.get('mean_progress'), 2)} |"
        )
    return lines


def _router_lines(moe: dict[str, Any] | None) -> list[str]:
    """``algo.policy=moe``: parameter counts and the newest router statistics per layer (the
    curves are the version's ``moe.csv`` and TensorBoard's ``moe/...``)."""
    if not moe:
        return []
    counts = moe.get("parameters") or {}
    lines = ["", f"Mixture of experts: {counts.get('total', '?'):,} trainable parameters "
             f"(actor {counts.get('actor', '?'):,}, critic {counts.get('critic', '?'):,})."]  # fmt: skip
    layers: dict[str, dict[str, float]] = {}
    for key, value in (moe.get("routers") or {}).items():
        _, layer, stat = key.split("/", 2)
        layers.setdefault(layer, {})[stat] = float(value)
    if layers:
        lines += ["", "Router statistics at the end of training (means over the last logging window):", "",
                  "| layer | load per expert | entropy | experts per token | dropped | balance (1 = even) | aux loss |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for layer, stats in layers.items():
            load = " ".join(
                f"{stats[k]:.2f}"
                for k in sorted(
                    (k for k in stats if k.startswith("load/")), key=lambda k: int(k.split("/")[1])
                )
            )
            cells = " | ".join(
                _number(stats.get(k), 3)
                for k in ("entropy", "active", "dropped", "balance", "aux_loss")
            )
            lines.append(f"| {layer} | {load} | {cells} |")
    return lines


def _relative(path: Path, run_dir: Path) -> str:
    """``path`` relative to the run directory when it lies inside it, else as it is."""
    try:
        return path.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return str(path)
