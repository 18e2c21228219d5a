"""The ``rewardlab`` command: ``rewardlab <command> [-v] [hydra overrides ...]``.

Commands::

    rewardlab tasks                                  list tasks, instructions, success metrics
    rewardlab train task=mujoco/hopper_backflip      generate a reward, train, evaluate, record
    rewardlab train run=<run dir>                    resume an interrupted run
    rewardlab train task=multi/mt10 algo=sac algo.policy=moe moe.router=sigmoid   one policy, several tasks
    rewardlab generate task=... instruction="..."    write and check a reward program
    rewardlab check task=... file=my_reward.py       pre-flight gate on a reward file (exit 1 if rejected)
    rewardlab refine run=<run dir> feedback="..."    new reward version from feedback, trained
    rewardlab refine run=<run dir> interactive=true  feedback after each round (prints videos)
    rewardlab refine run=<run dir> feedback=auto     E2CL: explore, find errors, correct, verify
    rewardlab refine run=<multi-task run> task_member=push feedback="..."   refine one member's reward
    rewardlab evaluate run=<run dir> episodes=10     success rate + videos of a trained policy
    rewardlab review [runs_dir=runs] [review.port=8765]   browse runs, watch videos, give feedback
    rewardlab search task=... search.candidates=K search.iterations=N   Eureka-style reward search
    rewardlab trust <run dir>                        accept a run folder from elsewhere (its pickles, config)

``-v`` also shows the libraries' INFO messages (HTTP requests, Hydra ...).

Everything after the command is a Hydra override (``key=value``, ``-m`` for sweeps,
``--cfg job`` to print the config); the schema is :mod:`rewardlab.config`. The whole command
line is checked before anything is written: a bad key, value, choice, task, file or run is
one line on stdout and exit code 2.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("MUJOCO_GL", "egl")

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from rewardlab.config import RewardLabConfig
    from rewardlab.rundir import RunDir, Status

USAGE = __doc__.split("Everything after")[0].strip() if __doc__ else ""
log = logging.getLogger("rewardlab")


class UsageError(Exception):
    """A command line that cannot run; the message is one line (printed as ``error: ...``,
    exit code 2, nothing written)."""


# --------------------------------------------------------------------------- output


QUIET_LOGGERS = (
    "matplotlib",
    "PIL",
    "httpx",
    "httpcore",
    "openai",
    "urllib3",
    "hydra",
    "jax",
    "absl",
    "OpenGL",
)
"""Libraries whose INFO messages (and matplotlib's font-cache warning) only ``-v`` shows."""


def configure_logging(verbose: bool) -> None:
    """rewardlab's own messages (logger ``rewardlab``) go to stdout as plain lines; other
    libraries' messages to stderr, warnings and above only unless ``verbose``."""
    ours = logging.getLogger("rewardlab")
    ours.handlers = [_stream(sys.stdout, "%(message)s")]
    ours.setLevel(logging.DEBUG if verbose else logging.INFO)
    root = logging.getLogger()
    others = _stream(sys.stderr, "[%(name)s][%(levelname)s] %(message)s")
    others.addFilter(lambda record: not record.name.startswith("rewardlab"))  # already on stdout
    root.handlers = [others]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.ERROR)
    for logger in logging.root.manager.loggerDict.values():  # Hydra's job setup disables them
        if isinstance(logger, logging.Logger):
            logger.disabled = False


def _stream(stream: Any, fmt: str) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(fmt))
    return handler


def _log_to_file(run_dir: Path) -> None:
    """Also keep this command's messages in ``<run>/rewardlab.log``."""
    handler = logging.FileHandler(run_dir / "rewardlab.log")
    handler.setFormatter(logging.Formatter("%(asctime)s [%(name)s][%(levelname)s] %(message)s"))
    logging.getLogger().addHandler(handler)  # rewardlab's messages propagate to the root


# --------------------------------------------------------------------------- commands


def cmd_tasks(argv: list[str]) -> int:
    from rewardlab.tasks import list_tasks

    try:
        apply_task_path(argv)
    except UsageError as exc:
        log.info(f"error: {exc}")
        return 2
    tasks = list_tasks()
    width = max(len(t.name) for t in tasks)
    env_width = max(len(t.resolved_env_id()) for t in tasks)
    log.info(f"{'task':<{width}}  {'env':<{env_width}} {'success metric':<17} instruction")
    for t in tasks:
        log.info(
            f"{t.name:<{width}}  {t.resolved_env_id():<{env_width}} {t.success.metric:<17} {t.instruction}"
        )
    log.info(f"\n{len(tasks)} tasks. Train one: rewardlab train task=<task>")
    return 0


def cmd_trust(argv: list[str]) -> int:
    """Sign the code-bearing files of run folders from elsewhere (model zips, pickles,
    ``config.yaml``) so that rewardlab loads them: only after reading what they hold."""
    from rewardlab.trust import key_file, trust_folder

    if not argv or any(a.startswith("-") or "=" in a for a in argv):
        log.info("error: give the folders to trust: rewardlab trust <run dir> [<run dir> ...]")
        return 2
    missing = [a for a in argv if not Path(a).is_dir()]
    if missing:
        log.info(f"error: {missing[0]} is not a folder")
        return 2
    for folder in argv:
        signed, links = trust_folder(Path(folder))
        names = ", ".join(str(p.relative_to(folder)) for p in signed[:4])
        more = f" and {len(signed) - 4} more" if len(signed) > 4 else ""
        log.info(f"{folder}: signed {len(signed)} files ({names}{more}) with {key_file()}")
        for link in links:
            log.info(f"  not signed: {link} is a symbolic link (replace it by the file it names)")
    return 0


def cmd_check(cfg: RewardLabConfig, run_dir: Path | None) -> int:
    from rewardlab.gate import gate

    assert cfg.file is not None
    path = Path(cfg.file)
    cfg.gate.cache_dir = None  # a check writes nothing: reference rollouts go to a temporary folder
    verdict = gate(cfg.task, path.read_text(), cfg)
    log.info(
        f"{path} for {cfg.task.name}: {'ACCEPTED' if verdict.ok else 'REJECTED'} by the pre-flight gate"
    )
    for line in verdict.feedback_lines():
        log.info(f"  {line}")
    return 0 if verdict.ok else 1


def cmd_generate(cfg: RewardLabConfig, run_dir: Path | None) -> int:
    from rewardlab.pipeline import generate, success_lines
    from rewardlab.rundir import RunDir, write_json

    assert run_dir is not None
    out = RunDir(run_dir).version_dir(0)
    for line in success_lines(cfg.task):
        log.info(f"# {line}")
    result = generate(cfg, cfg.task, out)
    if not result.ok or result.source is None:
        log.info(f"no acceptable reward program after {len(result.attempts)} attempt(s):")
        log.info(result.failure_summary())
        log.info(f"prompts and replies: {out / 'llm'}")
        return 1
    (out / "reward.py").write_text(result.source)
    if result.report is not None:
        write_json(out / "check.json", result.report.to_dict())
    if cfg.file:
        Path(cfg.file).write_text(result.source)
    log.info(result.source)
    for line in result.notes():
        log.info(f"# {line}")
    log.info(f"# accepted after {len(result.attempts)} attempt(s); written to {out / 'reward.py'}")
    return 0


def _limit_memory(cfg: RewardLabConfig) -> None:
    from rewardlab.reward.sandbox import limit_process_memory

    gb = cfg.train.memory_limit_gb
    if gb >= 0:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        limit_process_memory(int(gb * 2**30) if gb > 0 else int(0.8 * total))


def _recorder(cfg: RewardLabConfig, run_dir: Path) -> Callable[[Status, str], object]:
    """``record(status, message)`` for :meth:`RunDir.running`: the run's summary and report."""
    from rewardlab.pipeline import record_run

    return lambda status, message: record_run(run_dir, cfg, cfg.task, status, message)


def _train_and_record(cfg: RewardLabConfig, run_dir: Path, version: int, source: Any) -> int:
    """Train one version and record the run; the exit code (Ctrl-C, SIGTERM and crashes
    propagate, recorded by the caller's :meth:`RunDir.running` block)."""
    from rewardlab.pipeline import record_run, train_version
    from rewardlab.wrappers import RewardFailure

    try:
        train_version(cfg, cfg.task, run_dir, version, source)
    except RewardFailure as exc:
        record_run(
            run_dir, cfg, cfg.task, "failed", f"reward program failed during training: {exc}"
        )
        log.info(f"training stopped: {exc}")
        return 1
    record_run(run_dir, cfg, cfg.task, "done")
    log.info(f"run directory: {run_dir}\n  report: {run_dir / 'report.md'}")
    return 0


def cmd_train(cfg: RewardLabConfig, run_dir: Path | None) -> int:

    from rewardlab.pipeline import initial_reward, record_run
    from rewardlab.rundir import RunDir

    assert run_dir is not None
    run = RunDir(run_dir)
    source: Any = None
    if cfg.run is not None:  # resume the current reward version (checked by `problems`)
        from rewardlab.multirun import read_sources

        version = run.current_version()
        assert version is not None
        source = (
            read_sources(run.version_dir(version), cfg.task)
            if cfg.task.members
            else run.source(version)
        )
        log.info(f"resuming {run_dir} (reward v{version}, current version)")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        version = 0
    run.save_config(cfg)
    _log_to_file(run_dir)
    _limit_memory(cfg)
    with run.running(_recorder(cfg, run_dir)):
        if cfg.run is None:
            from rewardlab.multirun import initial_rewards

            first = initial_rewards if cfg.task.members else initial_reward
            source, failure = first(cfg, cfg.task, run_dir)
            if failure:
                record_run(run_dir, cfg, cfg.task, "failed", failure)
                log.info(failure)
                log.info(f"run directory: {run_dir}")
                return 1
        return _train_and_record(cfg, run_dir, version, source)


def _feedback_lines(cfg: RewardLabConfig) -> list[str]:
    lines = [str(t).replace("_", " ") for t in (cfg.tags or [])]
    if cfg.feedback:
        lines.append(str(cfg.feedback))
    return lines


def _refine_once(cfg: RewardLabConfig, run_dir: Path, feedback: list[str]) -> int:
    from rewardlab.pipeline import record_run, refined_reward
    from rewardlab.rundir import RunDir

    run = RunDir(run_dir)
    parent = run.resolve_version(cfg.version)
    reason = _unrefinable(run, parent, cfg)
    if reason or parent is None:
        log.info(f"error: {reason}")
        return 2
    source: Any
    if cfg.task.members:  # one member's reward of a multi-task run (rewardlab.multirun)
        from rewardlab.multirun import refined_member_reward

        assert cfg.task_member is not None
        version, source, failure = refined_member_reward(
            cfg, cfg.task, run_dir, parent, cfg.task_member, feedback
        )
    else:
        version, source, failure = refined_reward(cfg, cfg.task, run_dir, parent, feedback)
    if failure or source is None:
        record_run(run_dir, cfg, cfg.task, "failed", failure)
        log.info(failure)
        return 1
    diff = (run.version_dir(version) / "diff.patch").read_text()
    log.info(diff or f"(v{version} is identical to v{parent})")
    return _train_and_record(cfg, run_dir, version, source)


def _unrefinable(run: RunDir, version: int | None, cfg: RewardLabConfig) -> str:
    """Why ``version`` of ``run`` cannot be refined (``""``: it can)."""
    if version is None:
        return f"{run.path} has no trained reward version to refine"
    if not run.trained(version):
        return f"reward v{version} of {run.path} has no finished training to refine"
    if cfg.task.members:
        from rewardlab.multirun import refinable

        if _auto_feedback(cfg):
            return "feedback=auto (E2CL) explores single tasks; on a multi-task run give feedback=... task_member=<name>"
        return refinable(run, cfg.task, version, cfg.task_member)
    if cfg.task_member is not None:
        return f"task_member={cfg.task_member}: {run.path} is not a multi-task run"
    if run.source(version) is None:
        return f"v{version} of {run.path} was trained on the benchmark's reward: there is no program to refine"
    return ""


def cmd_refine(cfg: RewardLabConfig, run_dir: Path | None) -> int:
    from rewardlab.report import evaluation_line
    from rewardlab.rundir import RunDir

    assert run_dir is not None
    run = RunDir(run_dir)
    _log_to_file(run_dir)
    _limit_memory(cfg)
    with run.running(_recorder(cfg, run_dir), "refining", resume=False):
        if _auto_feedback(cfg):  # E2CL: exploration finds the errors
            from rewardlab.e2cl.loop import run_e2cl

            return run_e2cl(
                cfg, cfg.task, run_dir, extra=[str(t).replace("_", " ") for t in (cfg.tags or [])]
            )
        if not cfg.interactive:
            return _refine_once(cfg, run_dir, _feedback_lines(cfg))
        status = 0
        while True:
            version = run.current_version()
            vs = run.version_summary(version) if version is not None else None
            if vs is not None and vs.get("status") == "done":
                log.info(
                    f"\nv{version} after {vs['timesteps']:,} steps: {evaluation_line(vs['final_eval'])}"
                )
                for video in vs["videos"]:
                    log.info(f"  watch: {video}")
            try:
                line = input("feedback on this version (empty line to stop)> ").strip()
            except EOFError:
                line = ""
            if not line:
                return status
            cfg.version = None
            status = _refine_once(cfg, run_dir, [line])


def _auto_feedback(cfg: RewardLabConfig) -> bool:
    return str(cfg.feedback or "").strip().lower() == "auto"


def cmd_evaluate(cfg: RewardLabConfig, run_dir: Path | None) -> int:
    from rewardlab.checkpoints import load_policy
    from rewardlab.evaluation import run_episodes, summarize
    from rewardlab.report import evaluation_line
    from rewardlab.rundir import RunDir, write_summary
    from rewardlab.wrappers import compile_for_task

    assert run_dir is not None
    run = RunDir(run_dir)
    version = run.resolve_version(cfg.version)
    assert version is not None
    vdir = run.version_dir(version)
    model, normalizer = load_policy(vdir, cfg.algo.name)
    out = vdir / "eval" / time.strftime("%Y-%m-%d_%H-%M-%S")
    if cfg.task.members:  # every member (rewardlab.multitask)
        from rewardlab.multirun import read_sources
        from rewardlab.multitask import evaluate_members

        summary = evaluate_members(
            cfg.task, model, read_sources(vdir, cfg.task), episodes=cfg.episodes, seed=30_000 + cfg.train.seed,
            normalizer=normalizer, video_dir=out, video_episodes=cfg.train.video_episodes, video_size=cfg.train.video_size,
        )  # fmt: skip
        log.info(f"{cfg.task.name} v{version}: {evaluation_line(summary)}")
        log.info(f"results: {write_summary(out, summary)}")
        return 0
    source = run.source(version)
    program = compile_for_task(source, cfg.task) if source is not None else None
    results = run_episodes(
        cfg.task, model, episodes=cfg.episodes, seed=30_000 + cfg.train.seed, program=program,
        normalizer=normalizer, video_dir=out, video_episodes=cfg.train.video_episodes,
        video_size=cfg.train.video_size,
    )  # fmt: skip
    summary = summarize(results)
    path = write_summary(out, summary)
    log.info(f"{cfg.task.name} v{version}: {evaluation_line(summary)}")
    log.info(f"results: {path}")
    for r in results:
        if r.video:
            log.info(f"  video: {r.video}")
    return 0


def cmd_review(cfg: RewardLabConfig, run_dir: Path | None) -> int:
    from rewardlab.review.app import serve

    runs = Path(cfg.runs_dir).resolve()
    log.info(f"reviewing runs under {runs} (Ctrl-C to stop)")
    serve(runs, host=cfg.review.host, port=cfg.review.port, allow_remote=cfg.review.allow_remote,
          allowed_hosts=list(cfg.review.allowed_hosts), token=_review_token(cfg))  # fmt: skip
    return 0


def _review_token(cfg: RewardLabConfig) -> str | None:
    return os.environ.get(cfg.review.token_env) if cfg.review.token_env else None


def review_problem(cfg: RewardLabConfig) -> str:
    """An unsafe or broken exposure of the review page, refused before anything starts."""
    from rewardlab.review.app import RemoteRefused, remote_settings

    token = _review_token(cfg)
    if cfg.review.token_env and not token:
        return (
            f"review.token_env={cfg.review.token_env} names an empty or unset environment variable"
        )
    try:
        remote_settings(
            cfg.review.host, cfg.review.allow_remote, list(cfg.review.allowed_hosts), token
        )
    except RemoteRefused as exc:
        return str(exc)
    return ""


def cmd_search(cfg: RewardLabConfig, run_dir: Path | None) -> int:
    """K candidates per iteration, gated, trained with successive halving, reflected on."""

    from rewardlab.pipeline import describe_generator
    from rewardlab.rundir import RunDir, read_json
    from rewardlab.search.runner import run_search

    assert run_dir is not None
    run = RunDir(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    run.save_config(cfg)
    _log_to_file(run_dir)
    _limit_memory(cfg)
    task = cfg.task
    info = {
        "task": task.name,
        "instruction": task.instruction,
        "algo": str(cfg.algo.name),
        "generator": describe_generator(cfg),
    }

    def record(status: Status, message: str) -> None:  # the search writes its own report.md
        run.record(status=status, message=message, **info)

    with run.running(record, resume=False):
        code = run_search(cfg, task, run.path, log.info)
        if code == 130:  # the search caught Ctrl-C/SIGTERM itself and kept what it had
            record("stopped", "interrupted")
        elif code != 0:
            try:
                message = str(read_json(run.path / "search.json").get("message") or "")
            except (OSError, ValueError, AttributeError):
                message = ""
            record("failed", message or f"search ended with exit code {code}")
        return code


Command = Callable[["RewardLabConfig", "Path | None"], int]
COMMANDS: dict[str, Command] = {
    "train": cmd_train, "refine": cmd_refine, "generate": cmd_generate, "check": cmd_check,
    "evaluate": cmd_evaluate, "review": cmd_review, "search": cmd_search,
}  # fmt: skip
HYDRA_RUNS = ("train", "generate", "search")
"""Commands that create a new run directory through Hydra (``hydra.run.dir``, ``-m`` sweeps);
``train run=<dir>`` and the others work in an existing folder or none."""
RUN_COMMANDS = ("train", "refine", "evaluate")
"""Commands that take ``run=<dir>`` (``train`` optionally)."""


# --------------------------------------------------------------------------- the command line


FREE_TEXT_KEYS = ("feedback", "instruction", "task.success")
FLAGS_WITH_VALUE = ("--cfg", "-c", "--package", "-p", "--info", "-i", "--config-path", "-cp", "--config-name", "-cn",
                    "--config-dir", "-cd", "--experimental-rerun")  # fmt: skip


def _quote_free_text(args: list[str]) -> list[str]:
    """Quote plain-language values for Hydra's override grammar, so that
    ``feedback="falls after the flip; reward landing"`` works as typed in a shell, and escape
    ``${`` so the text is never read as an interpolation (``${oc.env:HOME}`` stays literal)."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if (
            sep
            and key.lstrip("+") in FREE_TEXT_KEYS
            and not (value[:1] in "'\"" and value[-1:] == value[:1] and len(value) > 1)
        ):
            escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${")
            arg = f"{key}='{escaped}'"
        out.append(arg)
    return out


def split_args(args: list[str]) -> tuple[list[str], list[str], bool]:
    """``(Hydra flags, overrides, verbose)`` from the arguments after the command."""
    flags: list[str] = []
    overrides: list[str] = []
    verbose = False
    it = iter(args)
    for arg in it:
        if arg in ("-v", "--verbose"):
            verbose = True
        elif arg.startswith("-"):
            flags.append(arg)
            if arg in FLAGS_WITH_VALUE:
                flags.append(next(it, ""))
        else:
            overrides.append(arg)
    return flags, overrides, verbose


def _parse(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        return list(OverridesParser.create().parse_overrides(overrides))
    except OverrideParseException as exc:
        raise UsageError(str(exc).splitlines()[0]) from None


def _combinations(overrides: list[str]) -> list[list[str]]:
    """Concrete override lists that cover every value of every sweep (``train.seed=0,1``):
    each sweep's values in turn, the other sweeps at their first value."""
    parsed = _parse(overrides)
    sweeps = {i: [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for i, o in enumerate(parsed)
              if o.is_sweep_override()}  # fmt: skip
    base = [sweeps[i][0] if i in sweeps else o.input_line for i, o in enumerate(parsed)]
    combos = [base]
    for i, values in sweeps.items():
        combos += [[*base[:i], value, *base[i + 1 :]] for value in values[1:]]
    return combos


def _command_args(command: str, overrides: list[str]) -> list[str]:
    """Refuse arguments of other commands (``rewardlab train episodes=3`` would be ignored)."""
    from rewardlab.config import COMMAND_ARGS

    known = set().union(*COMMAND_ARGS.values())
    for o in _parse(overrides):
        key = o.key_or_group
        if key in known and key not in COMMAND_ARGS[command]:
            users = sorted(c for c, keys in COMMAND_ARGS.items() if key in keys)
            raise UsageError(
                f"{key}= is not an argument of `rewardlab {command}` (it is one of: {', '.join(users)})"
            )
    return overrides


def compose(overrides: list[str]) -> DictConfig:
    """The composed config for ``overrides`` (Hydra's compose API: the same defaults and
    checks as the job), or :class:`UsageError` with one line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    from rewardlab.config import register_configs
    from rewardlab.paths import data_dir

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(
            config_dir=str(data_dir("conf")), version_base="1.3", job_name="rewardlab"
        ):
            return hydra_compose(
                "config", overrides=[o for o in overrides if not o.lstrip("+~").startswith("hydra")]
            )
    except MissingConfigException as exc:
        raise UsageError(_missing_option(exc, overrides)) from None
    except (HydraException, OmegaConfBaseException) as exc:
        raise UsageError(_one_line(exc)) from None
    finally:
        GlobalHydra.instance().clear()


def _one_line(exc: BaseException) -> str:
    """The first informative line of a Hydra/OmegaConf error (the cause's, when it has one)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        head = str(cause).strip().splitlines()[0]
        key = getattr(cause, "full_key", None)
        if "Key '" in head and "not in struct" in head or "is not in struct" in head:
            return f"{key or head}: not a setting (see rewardlab/config.py); check the spelling"
        return f"{lines[0].rstrip('.')}: {head}" if lines else head
    if lines and "Could not append to config" in lines[0]:
        return lines[0] + " (drop the `+`: the key exists)"
    if lines and lines[0].startswith("Could not override") and len(lines) > 1:
        return f"{lines[0].rstrip('.')}: {lines[1]}"
    return lines[0] if lines else type(exc).__name__


def _missing_option(exc: Exception, overrides: list[str]) -> str:
    """``task=mujoco/nope`` / ``algo=nope`` / ``llm=nope``: the closest names and where to look."""
    import difflib

    from rewardlab.paths import data_dir
    from rewardlab.tasks.registry import list_tasks

    for o in _parse(overrides):
        group, value = o.key_or_group.lstrip("+~"), o.value()
        if group == "task":
            names = [t.name for t in list_tasks()]
            if value not in names:
                close = difflib.get_close_matches(str(value), names, n=3, cutoff=0.4)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                return f"unknown task {value!r}{hint} (`rewardlab tasks` lists them all)"
        folder = data_dir("conf") / group
        if "." not in group and folder.is_dir():
            options = sorted(p.stem for p in folder.glob("*.yaml"))
            if str(value) not in options:
                return (
                    f"unknown {group} {value!r}: choose one of {', '.join(options)} (conf/{group}/)"
                )
    return _one_line(exc)


def apply_task_path(overrides: list[str]) -> None:
    """Put ``task_path=<dir>`` / ``task_path=[<dir>,...]`` on the task path now: its tasks must
    be known before the config is composed (``task=<its task>``)."""
    from rewardlab.tasks.registry import add_task_path

    for o in _parse([a for a in overrides if a.lstrip("+").startswith("task_path=")]):
        value = o.value()
        folders = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        try:
            add_task_path(*folders)
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(f"task_path: {exc}") from None


def _as_list(override: str) -> str:
    """``task_path=<dir>`` as the list the schema holds (``task_path=[<dir>]``)."""
    key, _, value = override.partition("=")
    return override if value.startswith("[") else f"{key}=[{value}]"


def _load_run(command: str, composed: DictConfig, overrides: list[str]) -> dict[str, Any]:
    """The saved config of ``run=<dir>`` with this command's overrides applied (the keys the
    user set now take their values from ``composed``)."""
    from omegaconf import OmegaConf

    from rewardlab.config import RewardLabConfig
    from rewardlab.rundir import RunDir
    from rewardlab.trust import read_trusted, untrusted_files

    run = RunDir(Path(str(composed.run)).resolve())
    if not run.path.is_dir():
        raise UsageError(
            f"{run.path} does not exist (give a run directory: rewardlab {command} run=<dir>)"
        )
    if not run.exists():
        raise UsageError(f"{run.path} is not a rewardlab run directory (no config.yaml)")
    # A folder from elsewhere could name code to import or where the API key goes, and its
    # pickles run code when loaded: everything of that kind must carry this user's signature.
    untrusted = untrusted_files(run.path)
    if untrusted:
        more = f" and {len(untrusted) - 1} more" if len(untrusted) > 1 else ""
        raise UsageError(
            f"{untrusted[0]}{more}: not signed by rewardlab on this machine (written elsewhere, "
            "changed since, or a symbolic link), so it is not loaded (it could run code or send "
            f"your API key elsewhere); if you trust the folder's author, read it, then "
            f"`rewardlab trust {run.path}`"
        )
    saved = read_trusted(run.config_file).decode()
    # The saved config on today's schema, so runs recorded before a field existed still load.
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RewardLabConfig), OmegaConf.create(saved))
    except Exception as exc:
        raise UsageError(f"{run.config_file}: cannot be read ({_one_line(exc)})") from None
    saved_path = OmegaConf.select(merged, "task_path") or []
    if saved_path:  # the run's own task folders (its task may come from one)
        apply_task_path([f"task_path=[{','.join(map(str, saved_path))}]"])
    for o in _parse(overrides):
        key = o.key_or_group.lstrip("+~")
        if key != "run" and not key.startswith("hydra"):
            value = OmegaConf.select(composed, key)
            if isinstance(value, str):  # already resolved: keep it literal (no "${...}" lookups)
                value = value.replace("${", "\\${")
            OmegaConf.update(merged, key, value, merge=False, force_add=True)
    merged.run = str(run.path)
    container = OmegaConf.to_container(merged, resolve=False)
    assert isinstance(container, dict)
    return {str(k): v for k, v in container.items()}


def resolve(
    command: str, overrides: list[str], composed: DictConfig | None = None
) -> RewardLabConfig:
    """The typed config of ``rewardlab <command> <overrides>``, checked: keys, types, choices,
    budgets, files, runs, tasks and back-ends; :class:`UsageError` (one line) otherwise."""
    from rewardlab.config import ConfigError, to_schema

    _command_args(command, overrides)
    composed = compose(overrides) if composed is None else composed
    try:
        if command in RUN_COMMANDS and composed.run is not None:
            cfg = to_schema(_load_run(command, composed, overrides))
        else:
            cfg = to_schema(composed)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if cfg.instruction:
        cfg.task.instruction = cfg.instruction
    problem = problems(command, cfg)
    if problem:
        raise UsageError(problem)
    return cfg


def problems(command: str, cfg: RewardLabConfig) -> str:
    """What stops ``command`` from running with ``cfg`` (``""``: nothing), checked before
    anything is written."""
    from rewardlab.checkpoints import has_model
    from rewardlab.config import BENCHMARK_REWARD
    from rewardlab.rundir import RunDir

    run = RunDir(Path(cfg.run)) if cfg.run else None
    if command in ("refine", "evaluate") and run is None:
        return f"give the run: rewardlab {command} run=<run dir>"
    if cfg.task.members:
        reason = multitask_problem(command, cfg)
        if reason:
            return reason
    if (
        command == "train"
        and cfg.algo.policy == "moe"
        and cfg.moe.route_on == "task"
        and not cfg.task.members
    ):
        return "moe.route_on=task routes by the one-hot task id of a multi-task set: use task=multi/<set> or moe.route_on=obs"
    if command == "train" and run is None and cfg.train.warm_start == "parent":
        return "train.warm_start=parent starts a refined version from its parent's policy: use it with rewardlab refine"
    if command == "check":
        if not cfg.file:
            return "give the reward program to check: rewardlab check task=<task> file=<path>"
        if not Path(cfg.file).is_file():
            return f"{cfg.file} does not exist"
    own_file = (
        command == "train"
        and run is None
        and cfg.reward_file
        and cfg.reward_file not in BENCHMARK_REWARD
    )
    if own_file and not Path(str(cfg.reward_file)).is_file():
        return f"reward_file={cfg.reward_file} does not exist (a reward program, or `env` for the benchmark's reward)"
    if command == "train" and run is not None and run.current_version() is None:
        return f"{run.path} has no reward version whose training started: nothing to resume; start a new run"
    if command == "evaluate" and run is not None:
        version = run.resolve_version(cfg.version)
        if version is None or version not in run.versions():
            return f"{run.path} has no {'trained reward version' if version is None else f'reward v{version}'} to evaluate"
        if not has_model(run.version_dir(version)):
            return f"reward v{version} of {run.path} has no trained model yet (model.zip or a checkpoint); train it first"
    if command == "refine" and run is not None:
        if not _auto_feedback(cfg) and not cfg.interactive and not _feedback_lines(cfg):
            return (
                'say what is wrong: feedback="..." and/or tags=[too_slow,falls] (or feedback=auto)'
            )
        reason = _unrefinable(run, run.resolve_version(cfg.version), cfg)
        if reason:
            return reason
    if command == "review":
        reason = review_problem(cfg)
        if reason:
            return reason
    if command in ("train", "search"):
        reason = backend_problem(cfg)
        if reason:
            return reason
    if _writes_rewards(command, cfg):
        reason = llm_problem(cfg)
        if reason:
            return reason
    return ""


def multitask_problem(command: str, cfg: RewardLabConfig) -> str:
    """What a multi-task set (``task=multi/<set>``) cannot do with ``command`` (``""``:
    nothing)."""
    from rewardlab.config import BENCHMARK_REWARD
    from rewardlab.multitask import check_members

    if command in ("generate", "check", "search"):
        return (f"task={cfg.task.name} is a multi-task set: rewardlab {command} works on one task "
                f"(one of {', '.join(map(str, cfg.task.members))}); train the set with rewardlab train")  # fmt: skip
    try:
        check_members(cfg.task)
    except ValueError as exc:
        return str(exc)
    if (
        command == "train"
        and not cfg.run
        and cfg.reward_file
        and cfg.reward_file not in BENCHMARK_REWARD
    ):
        return "reward_file=<file> is one program; a multi-task set takes reward_file=env or a reward written per member"
    return ""


def _has_model(vdir: Path) -> bool:
    from rewardlab.checkpoints import latest_checkpoint

    return (vdir / "model.zip").is_file() or latest_checkpoint(vdir) is not None


def _writes_rewards(command: str, cfg: RewardLabConfig) -> bool:
    """Whether the command will ask the reward writer (``llm``) for a program."""
    if command == "train":
        return cfg.run is None and not cfg.reward_file
    if command == "refine":
        return not _auto_feedback(cfg) or cfg.llm.backend != "offline"
    return command in ("generate", "search")


def llm_problem(cfg: RewardLabConfig) -> str:
    """A setup error of the reward writer (no API key, ``llm=replay`` without ``replay_from``
    ...), saying what to set; ``""`` when it can be created."""
    from rewardlab.generators.base import GeneratorError
    from rewardlab.generators.loop import make_generator

    try:
        make_generator(cfg.llm)
    except GeneratorError as exc:
        return f"llm={cfg.llm.backend}: {exc}"
    return ""


def backend_problem(cfg: RewardLabConfig) -> str:
    """Why ``train.backend`` cannot train ``cfg.task`` with these settings (``""``: it can),
    as :func:`rewardlab.rollout.support.supports` decides."""
    from rewardlab.multitask import member_tasks
    from rewardlab.rollout.support import supports

    if cfg.task.members and cfg.shaping.kind != "none":
        return f"shaping={cfg.shaping.kind} is not available for multi-task sets"
    found = (
        supports(t, str(cfg.train.backend), shaping=str(cfg.shaping.kind))
        for t in member_tasks(cfg.task)
    )
    return next(filter(None, found), "")


def _run_dir(command: str, cfg: RewardLabConfig) -> Path | None:
    """Where a command without Hydra works (its ``run=`` folder), ``None`` for none."""
    return Path(cfg.run) if cfg.run and command in RUN_COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rewardlab`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, flush=True)
        return 0
    command, rest = args[0], args[1:]
    flags, overrides, verbose = split_args(rest)
    configure_logging(verbose)
    if command == "tasks":
        return cmd_tasks(rest)
    if command == "trust":
        return cmd_trust(rest)
    if command not in COMMANDS:
        log.info(f"unknown command {command!r}\n\n{USAGE}")
        return 2
    overrides = [
        _as_list(o) if o.lstrip("+").startswith("task_path=") else o
        for o in _quote_free_text(overrides)
    ]
    try:
        apply_task_path(overrides)
        checked = [resolve(command, combo) for combo in _combinations(overrides)]
    except UsageError as exc:
        log.info(f"error: {exc}")
        return 2
    from rewardlab.interrupts import Stopped
    from rewardlab.tasks.registry import BenchmarkUnavailable
    from rewardlab.trust import UntrustedFile

    try:
        if command in HYDRA_RUNS and not (command == "train" and checked[0].run) or flags:
            return _run_with_hydra(command, flags, overrides, verbose)
        return COMMANDS[command](checked[0], _run_dir(command, checked[0]))
    except (BenchmarkUnavailable, UntrustedFile) as exc:  # say how to get it / how to trust it
        log.info(f"error: {exc}")
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM; the run (if any) is recorded `stopped`
        log.info(f"\nstopped ({exc or 'interrupted'})")
        return 143 if isinstance(exc, Stopped) else 130


def _hydra_overrides(command: str, cfg_run: str | None) -> list[str]:
    """Per-command Hydra settings placed before the user's overrides."""
    quiet = ["hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    if command in HYDRA_RUNS and not (command == "train" and cfg_run):
        return quiet
    return [*quiet, "hydra.output_subdir=null", f"hydra.run.dir={cfg_run or '.'}"]


def _run_with_hydra(command: str, flags: list[str], overrides: list[str], verbose: bool) -> int:
    """Run the command as a Hydra job (new run directories, ``-m`` sweeps, ``--cfg``)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from rewardlab.interrupts import Stopped
    from rewardlab.paths import data_dir

    status: list[int] = []

    @hydra.main(version_base="1.3", config_path=str(data_dir("conf")), config_name="config")
    def _entry(composed: DictConfig) -> None:
        from rewardlab.tasks.registry import BenchmarkUnavailable

        configure_logging(verbose)
        job_overrides = list(HydraConfig.get().overrides.task)
        cfg = resolve(command, job_overrides, composed)
        run_dir = _run_dir(command, cfg) or Path(HydraConfig.get().runtime.output_dir)
        try:
            status.append(COMMANDS[command](cfg, run_dir))
        except BenchmarkUnavailable as exc:
            log.info(f"error: {exc}")
            status.append(2)
        except KeyboardInterrupt as exc:
            log.info(f"\nstopped ({exc or 'interrupted'})")
            status.append(143 if isinstance(exc, Stopped) else 130)

    run = next((o.split("=", 1)[1] for o in overrides if o.startswith("run=")), None)
    saved_argv = sys.argv
    sys.argv = [f"rewardlab {command}", *flags, *_hydra_overrides(command, run), *overrides]
    try:
        _entry()
    finally:
        sys.argv = saved_argv
        configure_logging(verbose)
    return max(status) if status else 0


def console() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console()
