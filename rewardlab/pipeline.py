"""Reward versions: obtain one (generated, from a file, or refined from feedback), train it,
evaluate it, and record it in the run directory. ``rewardlab train`` and ``rewardlab refine``
are thin shells over these functions.

Each version lives in ``rewards/v<N>/`` with its source, check report, the pre-flight gate's
report (``gate.json``; ``gate.on_train``: ``warn`` records and trains anyway, ``block`` sends
rejections back to the reward writer and never trains a rejected version), every LLM call,
training outputs (metrics, TensorBoard, checkpoints, model), videos and ``summary.json``;
refined versions also hold ``feedback.json`` (parent, feedback, the evidence shown) and
``diff.patch`` against their parent. The run's ``summary.json`` and ``report.md`` describe the
whole lineage.
"""

from __future__ import annotations

import difflib
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rewardlab.checkpoints import load_policy
from rewardlab.config import BENCHMARK_REWARD, GateMode, RewardLabConfig, WarmStart
from rewardlab.evaluation import run_episodes, summarize
from rewardlab.generators.base import GeneratorError
from rewardlab.generators.loop import Attempt, GenerationResult, generate_reward, make_generator
from rewardlab.generators.prompts import generation_messages, refinement_messages
from rewardlab.multitask import Reward, evaluate_members, member_programs, member_tasks
from rewardlab.report import evaluation_line, plot_curves, write_run_report
from rewardlab.reward.check import CheckReport, check_program
from rewardlab.reward.program import RewardProgram
from rewardlab.rollout.record import summary as rollout_summary
from rewardlab.rundir import RunDir, Status, outcome, read_csv, read_json, write_json
from rewardlab.tasks.registry import TaskSpec
from rewardlab.tasks.success import describe_success
from rewardlab.training import train
from rewardlab.wrappers import compile_for_task

log = logging.getLogger(__name__)


def describe_generator(cfg: RewardLabConfig) -> str:
    """How the run's rewards are written, honestly."""
    if cfg.reward_file in BENCHMARK_REWARD:
        return f"the benchmark's own reward (reward_file={cfg.reward_file})"
    if cfg.reward_file:
        return f"file {cfg.reward_file}"
    if cfg.llm.backend == "offline":
        return "offline synthesizer (deterministic term library, not an LLM)"
    return f"{cfg.llm.backend}:{cfg.llm.model} at {cfg.llm.base_url or 'default endpoint'}"


def gate_version(
    cfg: RewardLabConfig, task: TaskSpec, vdir: Path, source: str, check: CheckReport | None = None
) -> str:
    """Run the pre-flight gate on a new version's program (unless ``gate.on_train=off``),
    write ``gate.json`` and log the verdict; the failure message when it rejects the program
    and ``gate.on_train=block``, else ``""``."""
    from rewardlab.gate import gate, remember_check

    mode = cfg.gate.on_train
    if mode == GateMode.off:
        return ""
    if check is not None:
        remember_check(task, source, cfg, check)
    report = gate(task, source, cfg)
    write_json(vdir / "gate.json", report.to_dict())
    log.info(f"pre-flight gate: {report.summary()}")
    if not report.ok:
        if mode == GateMode.block:
            return "the pre-flight gate rejected the program (gate.on_train=block):\n" + "\n".join(
                f"  {line}" for line in report.feedback_lines()
            )
        log.info("  training anyway (gate.on_train=warn); details in " + str(vdir / "gate.json"))
    return ""


def generate(
    cfg: RewardLabConfig, task: TaskSpec, out_dir: Path, **kwargs: Any
) -> GenerationResult:
    """:func:`generate_reward` with the run's LLM settings (back-end, fixes, checks, prices);
    with ``gate.on_train=block`` the pre-flight gate is part of the fix loop."""
    try:
        generator = make_generator(cfg.llm)
    except GeneratorError as exc:
        return GenerationResult(None, None, [Attempt(index=0, messages=[], error=str(exc))])
    screen = None
    if cfg.gate.on_train == GateMode.block:
        from rewardlab.gate import gate, remember_check

        def screen(source: str, report: CheckReport) -> Any:
            remember_check(task, source, cfg, report)
            return gate(task, source, cfg)

    return generate_reward(
        task, task.instruction, generator, fix_attempts=cfg.llm.fix_attempts, check=cfg.check,
        out_dir=out_dir, price_per_mtok=(cfg.llm.price_input_per_mtok, cfg.llm.price_output_per_mtok),
        screen=screen,
        **{"messages": generation_messages(task, task.instruction, few_shot=cfg.llm.few_shot), **kwargs},
    )  # fmt: skip


def accept(
    cfg: RewardLabConfig, task: TaskSpec, result: GenerationResult, vdir: Path
) -> tuple[str | None, str]:
    """Keep a generated program in ``vdir`` (``reward.py``, check and gate reports) if it was
    accepted and passes the pre-flight gate: ``(source, failure message)``."""
    if result.gate is not None:
        write_json(vdir / "gate.json", result.gate.to_dict())
    if not result.ok or result.source is None:
        return (
            None,
            f"no acceptable reward program after {len(result.attempts)} attempt(s):\n{result.failure_summary()}",
        )
    (vdir / "reward.py").write_text(result.source)
    for line in result.notes():
        log.info(f"  {line}")
    if result.report is not None:
        write_json(vdir / "check.json", result.report.to_dict())
    if result.gate is not None:
        log.info(f"pre-flight gate: {result.gate.summary()}")
        return result.source, ""
    failure = gate_version(cfg, task, vdir, result.source, result.report)
    return (None, failure) if failure else (result.source, "")


def success_lines(task: TaskSpec) -> list[str]:
    """Which behaviour the success metric measures, when the instruction or the metric is not
    the registered task's (:func:`rewardlab.generators.offline.grammar.success_notice`)."""
    from rewardlab.generators.offline.grammar import success_notice
    from rewardlab.tasks.registry import get_task

    try:
        registered: TaskSpec | None = get_task(task.name)
    except KeyError:
        registered = None
    return success_notice(task, task.instruction, registered)


def initial_reward(cfg: RewardLabConfig, task: TaskSpec, run_dir: Path) -> tuple[str | None, str]:
    """Reward v0: ``(source, failure message)``; ``source`` is ``None`` for the env reward."""
    vdir = RunDir(run_dir).version_dir(0)
    vdir.mkdir(parents=True, exist_ok=True)
    for line in success_lines(task):
        log.info(line)
    if cfg.reward_file in BENCHMARK_REWARD:
        return None, ""
    if cfg.reward_file:
        source = Path(cfg.reward_file).read_text()
        report = check_program(
            task,
            source,
            steps=cfg.check.steps,
            timeout_s=cfg.check.timeout_s,
            memory_mb=cfg.check.memory_mb,
        )
        write_json(vdir / "check.json", report.to_dict())
        (vdir / "reward.py").write_text(source)
        if not report.ok:
            return None, f"reward file rejected:\n{report.summary()}"
        failure = gate_version(cfg, task, vdir, source, report)
        return (None, failure) if failure else (source, "")
    log.info(f"writing a reward for {task.instruction!r} with {describe_generator(cfg)} ...")
    return accept(cfg, task, generate(cfg, task, vdir), vdir)


def evidence(run_dir: Path, version: int, member: str | None = None) -> dict[str, Any]:
    """What training version ``version`` showed: success, progress, per-component means (of
    multi-task set ``member`` only, when given)."""
    summary = RunDir(run_dir).version_summary(version)
    if summary is None or summary.get("status") != "done":
        raise ValueError(f"reward v{version} of {run_dir} has no finished training")
    final = summary["final_eval"] if member is None else summary["final_eval"]["per_task"][member]
    episodes = [
        e for e in summary["final_eval"]["per_episode"] if member is None or e.get("task") == member
    ]
    steps = max(sum(e["length"] for e in episodes), 1)
    means = (
        {
            name: sum(e["components"].get(name, 0.0) for e in episodes) / steps
            for name in episodes[0]["components"]
        }
        if episodes
        else {}
    )
    total = sum(abs(v) for v in means.values()) or 1.0
    return {
        "timesteps": summary["timesteps"],
        "episodes": len(episodes),
        "success_rate": final["success_rate"],
        "progress": final["mean_progress"],
        "components": {k: {"mean": v, "share": abs(v) / total} for k, v in means.items()},
    }


def refined_reward(
    cfg: RewardLabConfig, task: TaskSpec, run_dir: Path, parent: int, feedback: list[str],
    observation: str = "",
) -> tuple[int, str | None, str]:  # fmt: skip
    """Write the next free version from ``feedback`` on version ``parent`` (which must be
    trained): ``(version, source, failure message)``. ``observation``: what was seen besides
    the feedback (the prompt's "I can see from the robot that" sentence)."""
    run = RunDir(run_dir)
    parent_source = run.source(parent)
    if parent_source is None:
        raise ValueError(f"reward v{parent} of {run_dir} has no reward program to refine")
    shown = evidence(run_dir, parent)
    if observation:
        shown["observation"] = observation
    version = run.next_version()
    vdir = run.version_dir(version)
    vdir.mkdir(parents=True, exist_ok=True)
    write_json(vdir / "feedback.json", {"parent": parent, "feedback": feedback, "evidence": shown,
                                        "time": time.strftime("%Y-%m-%d %H:%M:%S")})  # fmt: skip
    log.info(f"refining v{parent} -> v{version} with {describe_generator(cfg)} ...")
    result = generate(
        cfg, task, vdir, previous_source=parent_source, feedback=feedback,
        messages=refinement_messages(task, task.instruction, parent_source, feedback, shown),
    )  # fmt: skip
    source, failure = accept(cfg, task, result, vdir)
    if source is not None:
        diff = difflib.unified_diff(
            parent_source.splitlines(keepends=True), source.splitlines(keepends=True),
            fromfile=f"v{parent}/reward.py", tofile=f"v{version}/reward.py",
        )  # fmt: skip
        (vdir / "diff.patch").write_text("".join(diff))
    return version, source, failure


def train_version(
    cfg: RewardLabConfig, task: TaskSpec, run_dir: Path, version: int, source: Reward
) -> dict[str, Any]:
    """Train (or resume) reward version ``version``, evaluate it with videos, record it.

    The version's ``summary.json`` says ``training`` from the start and its final status
    however training ends (:func:`rewardlab.rundir.outcome`); exceptions propagate (a
    checkpoint is saved first on Ctrl-C/SIGTERM) and everything recorded so far stays on disk.
    """
    run = RunDir(run_dir)
    vdir = run.version_dir(version)
    algo, train_cfg, shaping, rollout = cfg.algo, cfg.train, cfg.shaping, cfg.rollout
    log.info(
        f"training {algo.name} on {task.name} (reward v{version}) for up to {train_cfg.total_timesteps:,} steps -> {vdir}"
    )
    vdir.mkdir(
        parents=True, exist_ok=True
    )  # the settings this version is trained with (a refinement may change them)
    OmegaConf.save(
        OmegaConf.create({"algo": algo, "train": train_cfg, "rollout": rollout}),
        vdir / "train.yaml",
    )
    run.write_version_summary(version, {"status": "training"})
    parent = parent_version(run, version)
    start = (
        run.version_dir(parent)
        if parent is not None and train_cfg.warm_start == WarmStart.parent
        else None
    )
    if start is not None:
        log.info(f"warm start from v{parent}'s policy (train.adapt={train_cfg.adapt})")
    try:
        program: Reward = (
            member_programs(task, source)
            if task.members
            else (compile_for_task(source, task) if isinstance(source, str) else None)
        )  # vetted once here
        result = train(
            task,
            program,
            algo,
            train_cfg,
            vdir,
            shaping=shaping,
            rollout=rollout,
            moe=cfg.moe,
            parent=start,
        )
        model, normalizer = load_policy(vdir, algo.name)
        videos: dict[str, Any] = {"video_dir": vdir / "videos", "video_episodes": train_cfg.video_episodes,
                                  "video_size": train_cfg.video_size}  # fmt: skip
        if task.members:  # every member, success per member (rewardlab.multitask)
            final = evaluate_members(task, model, program, episodes=train_cfg.eval_episodes, seed=20_000 + train_cfg.seed,
                                     normalizer=normalizer, **videos)  # fmt: skip
        else:
            assert program is None or isinstance(program, RewardProgram)
            final = summarize(
                run_episodes(
                    task,
                    model,
                    episodes=train_cfg.eval_episodes,
                    seed=20_000 + train_cfg.seed,
                    program=program,
                    normalizer=normalizer,
                    **videos,
                )  # fmt: skip
            )
    except BaseException as exc:
        status, message = outcome(exc)
        run.write_version_summary(version, {"status": status, "message": message})
        raise
    summary = {
        "status": "done", "timesteps": result.timesteps,
        "train_wall_s": round(result.wall_s, 1), "stopped_early": result.stopped_early,
        "best_success_rate": result.best_success_rate, "reward_errors": result.reward_errors,
        "rollout": rollout_summary(result.rollout),
        "success_rate": final["success_rate"], "final_eval": final,
        "videos": [e["video"] for e in final["per_episode"] if e["video"]],
    }  # fmt: skip
    if task.members:
        summary["success_per_task"] = {
            name: s["success_rate"] for name, s in final["per_task"].items()
        }
    if result.moe:
        summary["moe"] = result.moe
    if parent is not None:
        summary["parent_level"] = parent_level(run, version, parent, start is not None)
    run.write_version_summary(version, summary)
    plot_curves(vdir)
    log.info(
        f"{task.name} v{version} after {result.timesteps:,} steps ({result.wall_s:.0f} s): {evaluation_line(final)}"
    )
    for video in summary["videos"]:
        log.info(f"  video: {video}")
    return {"version": version, **summary}


def parent_version(run: RunDir, version: int) -> int | None:
    """The version ``version`` was refined from (``feedback.json``), ``None`` for none."""
    try:
        parent = read_json(run.version_dir(version) / "feedback.json").get("parent")
    except (OSError, ValueError, AttributeError):
        return None
    return parent if isinstance(parent, int) and parent in run.versions() else None


def parent_level(run: RunDir, version: int, parent: int, warm: bool) -> dict[str, Any]:
    """How fast version ``version`` got back to its parent's final success rate: the first
    evaluation step (``metrics.csv``) at or above it (``None``: never; when the parent's rate
    is 0 the level is met at the first evaluation and says nothing)."""
    target = float((run.version_summary(parent) or {}).get("success_rate") or 0.0)
    rows = read_csv(run.version_dir(version) / "metrics.csv")
    steps = next((int(r["timesteps"]) for r in rows if float(r["success_rate"]) >= target), None)
    return {"parent": parent, "parent_success_rate": target, "steps": steps,
            "start": "parent" if warm else "scratch"}  # fmt: skip


def success_metric(task: TaskSpec) -> dict[str, Any]:
    """The task's success metric as recorded in the run's summary (a multi-task set: the mean
    over its members of each member's own metric, described per member)."""
    if not task.members:
        return {"metric": task.success.metric, "description": describe_success(task.success),
                "params": dict(task.success.params)}  # fmt: skip
    members = {m.name: describe_success(m.success) for m in member_tasks(task)}
    return {"metric": "mean over members", "params": {},
            "description": "the mean over members of each member's own success rate: "
                           + "; ".join(f"{name}: {text}" for name, text in members.items())}  # fmt: skip


def record_run(
    run_dir: Path, cfg: RewardLabConfig, task: TaskSpec, status: Status, message: str = ""
) -> dict[str, Any]:
    """Rewrite the run's ``summary.json`` (:meth:`RunDir.record`) and ``report.md``."""
    summary = RunDir(run_dir).record(
        status=status, message=message, task=task.name, instruction=task.instruction,
        algo=str(cfg.algo.name), generator=describe_generator(cfg),
        success_metric=success_metric(task),
    )  # fmt: skip
    write_run_report(run_dir, summary)
    return summary
