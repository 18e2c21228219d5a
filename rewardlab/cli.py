"""The ``rewardlab`` command: ``rewardlab <command> [hydra overrides ...]``.

Commands::

    rewardlab tasks                                  list tasks, instructions, success metrics
    rewardlab train task=mujoco/hopper_backflip      generate a reward, train, evaluate, record
    rewardlab train run=<run dir>                    resume an interrupted run
    rewardlab generate task=... instruction="..."    write and check a reward program
    rewardlab check task=... file=my_reward.py       pre-flight gate on a reward file (exit 1 if rejected)
    rewardlab refine run=<run dir> feedback="..."    new reward version from feedback, trained
    rewardlab refine run=<run dir> interactive=true  feedback after each round (prints videos)
    rewardlab refine run=<run dir> feedback=auto     E2CL: explore, find errors, correct, verify
    rewardlab evaluate run=<run dir> episodes=10     success rate + videos of a trained policy
    rewardlab review [runs_dir=runs] [review.port=8765]   browse runs, watch videos, give feedback
    rewardlab search task=... search.candidates=K search.iterations=N   Eureka-style reward search

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
    env_width = max(len(t.resolved_env_id()) for t in tasks)
    _print(f"{'task':<{width}}  {'env':<{env_width}} {'success metric':<17} instruction")
    for t in tasks:
        _print(f"{t.name:<{width}}  {t.resolved_env_id():<{env_width}} {t.success.metric:<17} {t.instruction}")
    _print(f"\n{len(tasks)} tasks. Train one: rewardlab train task=<task>")
    return 0


def _task(cfg: Any) -> Any:
    from omegaconf import OmegaConf

    from rewardlab.tasks.registry import TaskSpec

    task = TaskSpec.from_dict(OmegaConf.to_container(cfg.task, resolve=True))
    if isinstance(cfg.task.success, str):  # task.success=<name or expression>: record what it became
        cfg.task.success = {"metric": task.success.metric, "params": dict(task.success.params)}
    if cfg.instruction:
        task.instruction = str(cfg.instruction)
    return task


def cmd_check(cfg: Any) -> int:
    from rewardlab.search.gate import gate

    if not cfg.file:
        _print("error: give the reward program to check: rewardlab check task=<task> file=<path>")
        return 2
    path = Path(cfg.file)
    if not path.is_file():
        _print(f"error: {path} does not exist")
        return 2
    task = _task(cfg)
    cfg.gate.cache_dir = None  # a check writes nothing: reference rollouts go to a temporary folder
    verdict = gate(task, path.read_text(), cfg)
    _print(f"{path} for {task.name}: {'ACCEPTED' if verdict.ok else 'REJECTED'} by the pre-flight gate")
    for line in verdict.feedback_lines():
        _print(f"  {line}")
    return 0 if verdict.ok else 1


def cmd_generate(cfg: Any) -> int:
    from hydra.core.hydra_config import HydraConfig

    from rewardlab.pipeline import generate, success_lines
    from rewardlab.rundir import reward_dir, write_json

    task = _task(cfg)
    out = reward_dir(Path(HydraConfig.get().runtime.output_dir), 0)
    for line in success_lines(task):
        _print(f"# {line}")
    result = generate(cfg, task, out)
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
    for line in result.notes():
        _print(f"# {line}")
    _print(f"# accepted after {len(result.attempts)} attempt(s); written to {out / 'reward.py'}")
    return 0


def _load_run(cfg: Any) -> tuple[Any, Path] | None:
    """The saved config of ``run=<dir>`` with this command's other overrides applied."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from rewardlab.config import RewardLabConfig

    run_dir = Path(cfg.run)
    if not (run_dir / "config.yaml").exists():
        _print(f"error: {run_dir} is not a rewardlab run directory (no config.yaml)")
        return None
    # The saved config on today's schema, so runs recorded before a field existed still load.
    merged = OmegaConf.merge(OmegaConf.structured(RewardLabConfig), OmegaConf.load(run_dir / "config.yaml"))
    # Every key the user overrode now (``llm=openai``, ``train.total_timesteps=...``) takes its
    # value from this command's composed config, which Hydra parsed; the rest is the run's.
    for override in HydraConfig.get().overrides.task:
        key = override.split("=", 1)[0].lstrip("+~")
        if key != "run" and not key.startswith("hydra"):
            value = OmegaConf.select(cfg, key)
            if isinstance(value, str):  # already resolved: keep it literal (no "${...}" lookups)
                value = value.replace("${", "\\${")
            OmegaConf.update(merged, key, value, merge=False, force_add=True)
    merged.run = str(run_dir)
    return merged, run_dir


def _limit_memory(cfg: Any) -> None:
    from rewardlab.reward.sandbox import limit_process_memory

    gb = cfg.train.memory_limit_gb
    if gb >= 0:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        limit_process_memory(int(gb * 2**30) if gb > 0 else int(0.8 * total))


def _train_and_record(cfg: Any, task: Any, run_dir: Path, version: int, source: str | None) -> int:
    """Train one version and record the run; the exit code."""
    from rewardlab.pipeline import record_run, train_version
    from rewardlab.wrappers import RewardFailure

    record_run(run_dir, cfg, task, "training")
    try:
        train_version(cfg, task, run_dir, version, source, _print)
    except RewardFailure as exc:
        record_run(run_dir, cfg, task, "reward_failed", str(exc))
        _print(f"training stopped: {exc}")
        return 1
    except KeyboardInterrupt:
        record_run(run_dir, cfg, task, "interrupted", f"resume with: rewardlab train run={run_dir}")
        _print(f"\ninterrupted; resume with: rewardlab train run={run_dir}")
        return 130
    record_run(run_dir, cfg, task, "done")
    _print(f"run directory: {run_dir}\n  report: {run_dir / 'report.md'}")
    return 0


def cmd_train(cfg: Any) -> int:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from rewardlab.pipeline import initial_reward, record_run
    from rewardlab.rundir import latest_reward_version, reward_dir

    if cfg.run is not None:  # resume the latest reward version of an existing run
        loaded = _load_run(cfg)
        if loaded is None:
            return 2
        cfg, run_dir = loaded
        version = latest_reward_version(run_dir) or 0
        source_path = reward_dir(run_dir, version) / "reward.py"
        source = source_path.read_text() if source_path.exists() else None
        _print(f"resuming {run_dir} (reward v{version}) from its latest checkpoint")
    else:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        version, source = 0, None
    task = _task(cfg)  # before anything is written: a bad task.success is an error here
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    _limit_memory(cfg)
    if cfg.run is None:
        source, failure = initial_reward(cfg, task, run_dir, _print)
        if failure:
            record_run(run_dir, cfg, task, "reward_rejected", failure)
            _print(failure)
            _print(f"run directory: {run_dir}")
            return 1
    return _train_and_record(cfg, task, run_dir, version, source)


def _feedback_lines(cfg: Any) -> list[str]:
    lines = [str(t).replace("_", " ") for t in (cfg.tags or [])]
    if cfg.feedback:
        lines.append(str(cfg.feedback))
    return lines


def _refine_once(cfg: Any, task: Any, run_dir: Path, feedback: list[str]) -> int:
    from rewardlab.e2cl.loop import current_version
    from rewardlab.pipeline import record_run, refined_reward

    parent = cfg.version if cfg.version is not None else current_version(run_dir)
    if parent is None or not (run_dir / "rewards" / f"v{parent}" / "summary.json").exists():
        _print(f"error: reward v{parent} of {run_dir} has no finished training to refine")
        return 2
    version, source, failure = refined_reward(cfg, task, run_dir, parent, feedback, _print)
    if failure or source is None:
        record_run(run_dir, cfg, task, "reward_rejected", failure)
        _print(failure)
        return 1
    diff = (run_dir / "rewards" / f"v{version}" / "diff.patch").read_text()
    _print(diff or f"(v{version} is identical to v{parent})")
    return _train_and_record(cfg, task, run_dir, version, source)


def cmd_refine(cfg: Any) -> int:
    from rewardlab.report import evaluation_line
    from rewardlab.rundir import latest_reward_version, read_json, reward_dir

    if not cfg.run:
        _print('error: give the run to refine: rewardlab refine run=<run dir> feedback="..."')
        return 2
    loaded = _load_run(cfg)
    if loaded is None:
        return 2
    cfg, run_dir = loaded
    _limit_memory(cfg)
    task = _task(cfg)
    if str(cfg.feedback or "").strip().lower() == "auto":  # E2CL: exploration finds the errors
        from rewardlab.e2cl.loop import run_e2cl

        return run_e2cl(cfg, task, run_dir, _print, extra=[str(t).replace("_", " ") for t in (cfg.tags or [])])
    if not cfg.interactive:
        feedback = _feedback_lines(cfg)
        if not feedback:
            _print('error: say what is wrong: feedback="..." and/or tags=[too_slow,falls]')
            return 2
        return _refine_once(cfg, task, run_dir, feedback)
    status = 0
    while True:
        version = latest_reward_version(run_dir)
        vdir = reward_dir(run_dir, version or 0)
        if (vdir / "summary.json").exists():
            vs = read_json(vdir / "summary.json")
            _print(f"\nv{version} after {vs['timesteps']:,} steps: {evaluation_line(vs['final_eval'])}")
            for video in vs["videos"]:
                _print(f"  watch: {video}")
        try:
            line = input("feedback on this version (empty line to stop)> ").strip()
        except EOFError:
            line = ""
        if not line:
            return status
        cfg.version = None
        status = _refine_once(cfg, task, run_dir, [line])


def cmd_evaluate(cfg: Any) -> int:
    from omegaconf import OmegaConf

    from rewardlab.evaluation import run_episodes, summarize
    from rewardlab.report import evaluation_line
    from rewardlab.rundir import latest_reward_version, reward_dir, write_json
    from rewardlab.training import load_policy
    from rewardlab.wrappers import compile_for_task

    if not cfg.run or not (Path(cfg.run) / "config.yaml").exists():
        _print("error: give a run directory: rewardlab evaluate run=<run dir> (it must hold config.yaml)")
        return 2
    run_dir = Path(cfg.run)
    saved = OmegaConf.load(run_dir / "config.yaml")
    task = _task(saved)
    version = cfg.version if cfg.version is not None else latest_reward_version(run_dir) or 0
    vdir = reward_dir(run_dir, version)
    model, normalizer = load_policy(vdir, saved.algo.name)
    source_path = vdir / "reward.py"
    program = compile_for_task(source_path.read_text(), task) if source_path.exists() else None
    out = vdir / "eval" / time.strftime("%Y-%m-%d_%H-%M-%S")
    results = run_episodes(
        task, model, episodes=cfg.episodes, seed=30_000 + cfg.train.seed, program=program,
        normalizer=normalizer, video_dir=out, video_episodes=cfg.train.video_episodes,
        video_size=cfg.train.video_size,
    )  # fmt: skip
    summary = summarize(results)
    write_json(out / "summary.json", summary)
    _print(f"{task.name} v{version}: {evaluation_line(summary)}")
    _print(f"results: {out / 'summary.json'}")
    for r in results:
        if r.video:
            _print(f"  video: {r.video}")
    return 0


def cmd_review(cfg: Any) -> int:
    from rewardlab.review.app import RemoteRefused, remote_settings, serve

    runs = Path(cfg.runs_dir).resolve()
    token = os.environ.get(cfg.review.token_env) if cfg.review.token_env else None
    if cfg.review.token_env and not token:
        _print(f"error: review.token_env={cfg.review.token_env} names an empty or unset environment variable")
        return 2
    try:  # refuse an unsafe exposure before anything starts
        remote_settings(cfg.review.host, cfg.review.allow_remote, list(cfg.review.allowed_hosts), token)
    except RemoteRefused as exc:
        _print(f"error: {exc}")
        return 2
    _print(f"reviewing runs under {runs} (Ctrl-C to stop)")
    serve(runs, host=cfg.review.host, port=cfg.review.port, allow_remote=cfg.review.allow_remote,
          allowed_hosts=list(cfg.review.allowed_hosts), token=token)  # fmt: skip
    return 0


def cmd_search(cfg: Any) -> int:
    """K candidates per iteration, gated, trained with successive halving, reflected on."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from rewardlab.search.runner import run_search

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    _limit_memory(cfg)
    return run_search(cfg, _task(cfg), run_dir, _print)


HYDRA_COMMANDS = {
    "train": cmd_train, "refine": cmd_refine, "generate": cmd_generate, "check": cmd_check,
    "evaluate": cmd_evaluate, "review": cmd_review,
}  # fmt: skip
HYDRA_COMMANDS["search"] = cmd_search
QUIET = ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]


def _hydra_overrides(command: str, args: list[str]) -> list[str]:
    """Per-command Hydra settings placed before the user's overrides."""
    run = next((a.split("=", 1)[1] for a in args if a.startswith("run=")), None)
    if command in ("check", "review"):
        return [*QUIET, "hydra.run.dir=."]
    if command in ("evaluate", "refine") or (command == "train" and run):
        return [*QUIET, f"hydra.run.dir={run or '.'}"]
    return []


FREE_TEXT_KEYS = ("feedback=", "instruction=", "+feedback=", "+instruction=", "task.success=")


def _quote_free_text(args: list[str]) -> list[str]:
    """Quote plain-language values for Hydra's override grammar, so that
    ``feedback="falls after the flip; reward landing"`` works as typed in a shell, and escape
    ``${`` so the text is never read as an interpolation (``${oc.env:HOME}`` stays literal)."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and f"{key}=" in FREE_TEXT_KEYS and not (value[:1] in "'\"" and value[-1:] == value[:1] and len(value) > 1):
            escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${")
            arg = f"{key}='{escaped}'"
        out.append(arg)
    return out


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
        from rewardlab.tasks.registry import BenchmarkUnavailable
        from rewardlab.tasks.success import SuccessChoiceError

        try:
            status.append(HYDRA_COMMANDS[command](cfg))
        except (BenchmarkUnavailable, SuccessChoiceError) as exc:  # say what to install / choose
            _print(f"error: {exc}")
            status.append(2)

    saved_argv = sys.argv
    rest = _quote_free_text(rest)
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
