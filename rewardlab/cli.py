"""The ``rewardlab`` command: ``rewardlab <command> [hydra overrides ...]``.

Commands::

    rewardlab tasks                                  list tasks, instructions, success metrics
    rewardlab train task=mujoco/hopper_backflip      generate a reward, train, evaluate, record
    rewardlab train run=<run dir>                    resume an interrupted run
    rewardlab generate task=... instruction="..."    write and check a reward program
    rewardlab check task=... file=my_reward.py       validate a reward file (exit 1 if rejected)
    rewardlab evaluate run=<run dir> episodes=10     success rate + videos of a trained policy

Everything after the command is a Hydra override (``key=value``, ``-m`` for sweeps,
``--cfg job`` to print the config); the schema is :mod:`rewardlab.config`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")
logging.getLogger("OpenGL").setLevel(logging.WARNING)

USAGE = __doc__.split("Everything after")[0].strip() if __doc__ else ""


def _print(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- commands


def cmd_tasks(argv: list[str]) -> int:
    from rewardlab.tasks import list_tasks

    tasks = list_tasks()
    width = max(len(t.name) for t in tasks)
    _print(f"{'task':<{width}}  {'env':<18} {'success metric':<14} instruction")
    for t in tasks:
        _print(f"{t.name:<{width}}  {t.resolved_env_id():<18} {t.success.metric:<14} {t.instruction}")
    _print(f"\n{len(tasks)} tasks. Train one: rewardlab train task=<task>")
    return 0


def _task(cfg: Any) -> Any:
    from omegaconf import OmegaConf

    from rewardlab.tasks.registry import TaskSpec

    task = TaskSpec.from_dict(OmegaConf.to_container(cfg.task, resolve=True))
    if cfg.instruction:
        task.instruction = str(cfg.instruction)
    return task


def cmd_check(cfg: Any) -> int:
    from rewardlab.reward.check import check_program

    if not cfg.file:
        _print("error: give the reward program to check: rewardlab check task=<task> file=<path>")
        return 2
    path = Path(cfg.file)
    if not path.is_file():
        _print(f"error: {path} does not exist")
        return 2
    task = _task(cfg)
    report = check_program(
        task, path.read_text(), steps=cfg.check.steps, timeout_s=cfg.check.timeout_s,
        memory_mb=cfg.check.memory_mb,
    )  # fmt: skip
    _print(f"{path} for {task.name}: {'ACCEPTED' if report.ok else 'REJECTED'}")
    _print(report.summary())
    return 0 if report.ok else 1


def cmd_generate(cfg: Any) -> int:
    from hydra.core.hydra_config import HydraConfig

    from rewardlab.generators.loop import generate_reward, make_generator
    from rewardlab.rundir import reward_dir, write_json

    task = _task(cfg)
    out = reward_dir(Path(HydraConfig.get().runtime.output_dir), 0)
    result = generate_reward(
        task, task.instruction, make_generator(cfg.llm), fix_attempts=cfg.llm.fix_attempts,
        check=cfg.check, out_dir=out,
    )  # fmt: skip
    if not result.ok or result.source is None:
        _print(f"no acceptable reward program after {len(result.attempts)} attempt(s):")
        _print(result.failure_summary())
        _print(f"prompts and replies: {out / 'llm'}")
        return 1
    (out / "reward.py").write_text(result.source)
    if result.report is not None:
        write_json(out / "check.json", result.report.to_dict())
    if cfg.file:
        Path(cfg.file).write_text(result.source)
    _print(result.source)
    _print(f"# accepted after {len(result.attempts)} attempt(s); written to {out / 'reward.py'}")
    return 0


def _obtain_reward(cfg: Any, task: Any, run_dir: Path) -> tuple[str | None, str, str]:
    """``(source, generator description, failure message)`` for a new run's reward v0."""
    from rewardlab.generators.loop import generate_reward, make_generator
    from rewardlab.reward.check import check_program
    from rewardlab.rundir import reward_dir, write_json

    out = reward_dir(run_dir, 0)
    if cfg.reward_file == "env":
        return None, "the benchmark's own reward (reward_file=env)", ""
    if cfg.reward_file:
        source = Path(cfg.reward_file).read_text()
        report = check_program(task, source, steps=cfg.check.steps, timeout_s=cfg.check.timeout_s, memory_mb=cfg.check.memory_mb)
        write_json(out / "check.json", report.to_dict())
        (out / "reward.py").write_text(source)
        if not report.ok:
            return None, f"file {cfg.reward_file}", f"reward file rejected:\n{report.summary()}"
        return source, f"file {cfg.reward_file}", ""
    generator = make_generator(cfg.llm)
    desc = (
        "offline synthesizer (deterministic term library, not an LLM)"
        if cfg.llm.backend == "offline"
        else f"{cfg.llm.backend}:{cfg.llm.model} at {cfg.llm.base_url or 'default endpoint'}"
    )
    _print(f"writing a reward for {task.instruction!r} with {desc} ...")
    result = generate_reward(task, task.instruction, generator, fix_attempts=cfg.llm.fix_attempts, check=cfg.check, out_dir=out)
    if not result.ok or result.source is None:
        return None, desc, f"no acceptable reward program after {len(result.attempts)} attempt(s):\n{result.failure_summary()}"
    (out / "reward.py").write_text(result.source)
    if result.report is not None:
        write_json(out / "check.json", result.report.to_dict())
    return result.source, desc, ""


def cmd_train(cfg: Any) -> int:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from rewardlab.config import AlgoConfig, TrainConfig
    from rewardlab.evaluation import run_episodes, summarize
    from rewardlab.report import plot_curves, write_report
    from rewardlab.reward.sandbox import limit_process_memory
    from rewardlab.rundir import latest_reward_version, read_json, reward_dir
    from rewardlab.training import load_policy, train
    from rewardlab.wrappers import RewardFailure, compile_for_task

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    resuming = cfg.run is not None
    if resuming:
        run_dir = Path(cfg.run)
        if not (run_dir / "config.yaml").exists():
            _print(f"error: {run_dir} is not a rewardlab run directory (no config.yaml)")
            return 2
        saved = OmegaConf.load(run_dir / "config.yaml")
        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("run=")]
        cfg = OmegaConf.merge(saved, OmegaConf.from_dotlist(overrides))
        cfg.run = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    gb = cfg.train.memory_limit_gb
    if gb >= 0:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        limit_process_memory(int(gb * 2**30) if gb > 0 else int(0.8 * total))
    task = _task(cfg)
    summary: dict[str, Any] = {
        "task": task.name, "instruction": task.instruction, "algo": cfg.algo.name,
        "run_dir": str(run_dir), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }  # fmt: skip
    if resuming:
        version = latest_reward_version(run_dir)
        source_path = reward_dir(run_dir, version or 0) / "reward.py"
        source = source_path.read_text() if source_path.exists() else None
        previous = read_json(run_dir / "summary.json") if (run_dir / "summary.json").exists() else {}
        generator = previous.get("generator", "unknown")
        _print(f"resuming {run_dir} from its latest checkpoint")
    else:
        source, generator, failure = _obtain_reward(cfg, task, run_dir)
        if failure:
            summary.update(status="reward_rejected", generator=generator, message=failure)
            write_report(run_dir, summary, None)
            _print(failure)
            _print(f"run directory: {run_dir}")
            return 1
    summary["generator"] = generator
    summary["status"] = "training"
    write_report(run_dir, summary, source)
    algo = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AlgoConfig), cfg.algo))
    train_cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), cfg.train))
    _print(f"training {cfg.algo.name} on {task.name} for {cfg.train.total_timesteps:,} steps -> {run_dir}")
    try:
        result = train(task, source, algo, train_cfg, run_dir)  # type: ignore[arg-type]
    except RewardFailure as exc:
        summary.update(status="reward_failed", message=str(exc))
        write_report(run_dir, summary, source)
        _print(f"training stopped: {exc}")
        return 1
    except KeyboardInterrupt:
        summary.update(status="interrupted", message=f"resume with: rewardlab train run={run_dir}")
        write_report(run_dir, summary, source)
        _print(f"\ninterrupted; resume with: rewardlab train run={run_dir}")
        return 130
    model, normalizer = load_policy(run_dir, cfg.algo.name)
    program = compile_for_task(source, task) if source is not None else None
    final = summarize(
        run_episodes(
            task, model, episodes=cfg.train.eval_episodes, seed=20_000 + cfg.train.seed,
            program=program, normalizer=normalizer, video_dir=run_dir / "videos",
            video_episodes=cfg.train.video_episodes, video_size=cfg.train.video_size,
        )  # fmt: skip
    )
    summary.update(
        status="done", timesteps=result.timesteps, train_wall_s=round(result.wall_s, 1),
        stopped_early=result.stopped_early, best_success_rate=result.best_success_rate,
        reward_errors=result.reward_errors, final_eval=final,
        videos=[e["video"] for e in final["per_episode"] if e["video"]],
        success_rate=final["success_rate"],
    )  # fmt: skip
    plot_curves(run_dir)
    write_report(run_dir, summary, source)
    _print(f"\n{task.name}: success rate {final['success_rate']:.2f} over {final['episodes']} episodes "
           f"after {result.timesteps:,} steps ({result.wall_s:.0f} s)")
    _print(f"run directory: {run_dir}\n  report: {run_dir / 'report.md'}")
    for video in summary["videos"]:
        _print(f"  video: {video}")
    return 0


def cmd_evaluate(cfg: Any) -> int:
    from omegaconf import OmegaConf

    from rewardlab.evaluation import run_episodes, summarize
    from rewardlab.rundir import latest_reward_version, reward_dir, write_json
    from rewardlab.training import load_policy
    from rewardlab.wrappers import compile_for_task

    if not cfg.run or not (Path(cfg.run) / "config.yaml").exists():
        _print("error: give a run directory: rewardlab evaluate run=<run dir> (it must hold config.yaml)")
        return 2
    run_dir = Path(cfg.run)
    saved = OmegaConf.load(run_dir / "config.yaml")
    task = _task(saved)
    model, normalizer = load_policy(run_dir, saved.algo.name)
    version = latest_reward_version(run_dir)
    source_path = reward_dir(run_dir, version or 0) / "reward.py"
    program = compile_for_task(source_path.read_text(), task) if source_path.exists() else None
    out = run_dir / "eval" / time.strftime("%Y-%m-%d_%H-%M-%S")
    results = run_episodes(
        task, model, episodes=cfg.episodes, seed=30_000 + cfg.train.seed, program=program,
        normalizer=normalizer, video_dir=out, video_episodes=cfg.train.video_episodes,
        video_size=cfg.train.video_size,
    )  # fmt: skip
    summary = summarize(results)
    write_json(out / "summary.json", summary)
    _print(f"{task.name}: success rate {summary['success_rate']:.2f} over {summary['episodes']} episodes "
           f"(mean progress {summary['mean_progress']:.2f}, mean env return {summary['mean_env_return']:.1f})")
    _print(f"results: {out / 'summary.json'}")
    for r in results:
        if r.video:
            _print(f"  video: {r.video}")
    return 0


HYDRA_COMMANDS = {"train": cmd_train, "generate": cmd_generate, "check": cmd_check, "evaluate": cmd_evaluate}
QUIET = ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]


def _hydra_overrides(command: str, args: list[str]) -> list[str]:
    """Per-command Hydra settings placed before the user's overrides."""
    run = next((a.split("=", 1)[1] for a in args if a.startswith("run=")), None)
    if command in ("check",):
        return [*QUIET, "hydra.run.dir=."]
    if command == "evaluate" or (command == "train" and run):
        return [*QUIET, f"hydra.run.dir={run or '.'}"]
    return []


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rewardlab`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        _print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    if command == "tasks":
        return cmd_tasks(rest)
    if command not in HYDRA_COMMANDS:
        _print(f"unknown command {command!r}\n\n{USAGE}")
        return 2

    import hydra

    from rewardlab.config import register_configs
    from rewardlab.paths import data_dir

    register_configs()
    status: list[int] = []

    @hydra.main(version_base="1.3", config_path=str(data_dir("conf")), config_name="config")
    def _entry(cfg: Any) -> None:
        status.append(HYDRA_COMMANDS[command](cfg))

    saved_argv = sys.argv
    sys.argv = [f"rewardlab {command}", *_hydra_overrides(command, rest), *rest]
    try:
        _entry()
    finally:
        sys.argv = saved_argv
    return max(status) if status else 0


def console() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console()
