"""Train a stable-baselines3 agent on a task with a reward program; resumable.

Read top to bottom: :func:`train` builds the vectorised env with the program's reward and the
task's success metric, sets up PPO/SAC (or restores the latest checkpoint), and learns with
callbacks that log ``reward/<name>`` components, evaluate the task's *own* success metric
(never the generated reward) into ``metrics.csv``, checkpoint, and optionally stop early.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import (
    CSVOutputFormat,
    KVWriter,
    Logger,
    TensorBoardOutputFormat,
)
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from rewardlab.checkpoints import (
    CheckpointInfo,
    algo_class,
    checkpoint_info,
    describe_start,
    latest_checkpoint,
    load_model,
    load_normalizer,
    load_policy,
    remove_checkpoint,
    save_checkpoint,
    save_model,
)
from rewardlab.config import (
    AlgoConfig,
    MoEConfig,
    PolicyName,
    RolloutConfig,
    ShapingConfig,
    TrainConfig,
)
from rewardlab.evaluation import run_episodes, summarize
from rewardlab.interrupts import deferred
from rewardlab.moe.policies import (
    MoEStatistics,
    describe_parameters,
    inherit,
    moe_layers,
    parameter_counts,
    policy_class,
    warm_start_kwargs,
)
from rewardlab.multitask import (
    MultiTaskNormalize,
    MultiTaskVecEnv,
    Reward,
    envs_per_member,
    evaluate_members,
    member_programs,
    member_tasks,
    multitask_vec_env,
    success_columns,
)
from rewardlab.reward.program import RewardProgram
from rewardlab.rundir import append_csv, read_csv, trim_csv, write_json
from rewardlab.tasks.registry import TaskSpec
from rewardlab.trust import read_trusted
from rewardlab.wrappers import RewardFailure, compile_for_task, make_env

if TYPE_CHECKING:
    from rewardlab.shaping.continuous import Shaper

log = logging.getLogger(__name__)

STEPS_KEY = "time/total_timesteps"
ITERATIONS_KEY = "time/iterations"


def _float(value: str | None) -> float:
    try:
        return float(value or 0.0)
    except ValueError:
        return 0.0


class ContinuedCSV(CSVOutputFormat):
    """SB3's ``progress.csv`` writer that continues an existing file instead of truncating it.

    SB3 opens the file with mode ``w+``, so a resumed training used to lose every row logged
    before the resume. Here the rows already in the file whose ``time/total_timesteps`` is at
    most ``keep_until`` (the step count of the checkpoint training resumes from) are written
    back first and their columns become the writer's; rows logged after that checkpoint (by a
    run killed before its next checkpoint) describe training that was thrown away and are
    dropped, as is a last line cut short by a kill. With ``keep_iterations`` (the SB3
    iterations the checkpoint had completed), a row of a later iteration is dropped too: a
    checkpoint taken on the last step of a rollout precedes that rollout's update. New columns
    are then added by SB3 as usual (it rewrites the file with the wider header).
    """

    def __init__(self, filename: str, keep_until: int, keep_iterations: int | None = None) -> None:
        path = Path(filename)
        text = path.read_text() if keep_until > 0 and path.exists() else ""
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]  # a row cut short by a kill
        reader = csv.reader(io.StringIO(text))
        header = next(reader, [])
        kept = []
        for row in reader:
            values = dict(zip(header, row, strict=False))
            steps, iteration = _float(values.get(STEPS_KEY)), _float(values.get(ITERATIONS_KEY))
            later = keep_iterations is not None and iteration > keep_iterations
            if len(row) == len(header) and steps <= keep_until and not later:
                kept.append(row)
        super().__init__(filename)  # truncates
        if header and kept:
            writer = csv.writer(self.file, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(kept)
            self.file.flush()
            self.keys = list(header)


@dataclass
class Clock:
    """Training wall time and SB3 iterations, continued across resumes (restored from the
    checkpoint's :class:`~rewardlab.checkpoints.CheckpointInfo`)."""

    wall_offset: float = 0.0
    iterations: int = 0
    started: float = field(default_factory=time.monotonic)

    def wall_s(self) -> float:
        return self.wall_offset + time.monotonic() - self.started


class ContinuedLogger(Logger):
    """SB3's logger whose ``time/iterations`` and ``time/time_elapsed`` continue from the
    checkpoint a training resumed from (SB3 restarts both at every ``learn`` call)."""

    def __init__(self, folder: str, formats: list[KVWriter], offset: CheckpointInfo) -> None:
        super().__init__(folder, formats)
        self.offset = offset

    def record(self, key: str, value: Any, exclude: str | tuple[str, ...] | None = None) -> None:
        if key == ITERATIONS_KEY:
            value = value + (self.offset.iterations or 0)
        elif key == "time/time_elapsed":
            value = value + int(self.offset.wall_s)
        super().record(key, value, exclude)


def training_logger(folder: Path, resumed: CheckpointInfo) -> Logger:
    """TensorBoard + ``progress.csv`` logger for a training in ``folder`` (``<run>/tb``).

    ``resumed`` is the checkpoint training starts from (step 0 for a fresh start): above 0
    the CSV keeps its earlier rows up to that step (:class:`ContinuedCSV`) and the iteration
    and time counters continue (:class:`ContinuedLogger`); TensorBoard starts a new events
    file next to the old ones, which TensorBoard reads together.
    """
    folder.mkdir(parents=True, exist_ok=True)
    formats: list[KVWriter] = [
        TensorBoardOutputFormat(str(folder)),
        ContinuedCSV(str(folder / "progress.csv"), resumed.steps, resumed.iterations),
    ]  # fmt: skip
    return ContinuedLogger(str(folder), formats, resumed)


def make_vec_env(
    task: TaskSpec,
    reward: Reward,
    train: TrainConfig,
    shaper: Shaper | None = None,
    rollout: RolloutConfig | None = None,
) -> VecEnv:
    """``n_envs`` copies of the task env with the reward ``reward`` (a program compiled once, or
    its source, compiled here; ``None``: the benchmark's reward), each under a ``Monitor``;
    ``shaper`` (:mod:`rewardlab.shaping.continuous`) wraps each copy under the Monitor.

    The program never runs in this process: it is shipped compiled to confined workers
    (``train.env_workers``, by default one per CPU core) that hold the copies, each with its own
    :meth:`~RewardProgram.fresh` copy of it and step them in parallel
    (:class:`rewardlab.workers.confined.ConfinedVecEnv`, one round trip per worker and vectorised step);
    the trainer only sends actions and reads observations, rewards and infos back. A worker
    stuck past the per-call limit is replaced, the step counted as failed.

    ``train.backend`` other than ``dummy`` steps all copies together on the batched rollout
    core (:mod:`rewardlab.rollout`): ``native`` (MuJoCo's C engine) or ``mjx`` (JAX), set up
    by ``rollout`` (the ``rollout`` config node) and built by its factory inside one confined
    worker (:class:`rewardlab.workers.confined.ConfinedCoreVecEnv`).

    A multi-task set (``task.members``, :mod:`rewardlab.multitask`) gets one such vectorised
    env per member, built here with the member's reward (``reward``: a mapping by member name,
    or ``None`` for the benchmark's everywhere) and ``n_envs`` shared out, joined with the task
    id in the observation; the members step together, so ``train.env_workers`` are shared out
    over them (at least one each).
    """
    if task.members:
        if shaper is not None:
            raise ValueError("shaping is not available for multi-task sets")
        from rewardlab.workers.confined import default_workers

        # the members step together, so the workers are shared out over them (one at least)
        workers = train.env_workers or default_workers(train.n_envs)
        per_member = replace(
            train,
            n_envs=envs_per_member(task, train.n_envs),
            env_workers=max(1, workers // len(task.members)),
        )
        return multitask_vec_env(
            task, reward, lambda m, program: make_vec_env(m, program, per_member, None, rollout)
        )
    program = single_program(task, reward)
    if train.backend != "dummy":
        from dataclasses import asdict

        from stable_baselines3.common.vec_env import VecMonitor

        from rewardlab.rollout.core import CoreConfig
        from rewardlab.rollout.sb3 import make_core_vec_env
        from rewardlab.rollout.support import supports
        from rewardlab.workers.confined import ConfinedCoreVecEnv

        problem = supports(task, str(train.backend))
        if problem or shaper is not None:
            raise ValueError(
                problem
                or f"shaping wraps each env and needs train.backend=dummy, not {train.backend}"
            )
        config = CoreConfig(**asdict(rollout or RolloutConfig()), backend=str(train.backend))
        if program is None:  # the benchmark's own reward: no generated code to confine
            return make_core_vec_env(
                task, None, n_envs=train.n_envs, seed=train.seed,
                max_error_rate=train.max_reward_error_rate, config=config,
            )  # fmt: skip
        config = replace(
            config,
            num_worlds=train.n_envs,
            seed=train.seed,
            max_error_rate=train.max_reward_error_rate,
        )
        core = ConfinedCoreVecEnv(task, program, asdict(config))
        core.seed(train.seed)
        return VecMonitor(core, info_keywords=("is_success",))

    def wrap(env: Any, rank: int) -> Any:
        if shaper is not None:
            env = shaper.wrap(env, from_program=program is not None)
        return Monitor(env, info_keywords=("is_success",))

    def factory(rank: int) -> Callable[[], Any]:
        return lambda: wrap(make_env(task), rank)

    venv: VecEnv
    if program is None:
        venv = DummyVecEnv([factory(i) for i in range(train.n_envs)])
    else:
        from rewardlab.workers.confined import ConfinedVecEnv

        venv = ConfinedVecEnv(
            task,
            program,
            n_envs=train.n_envs,
            workers=train.env_workers,
            max_error_rate=train.max_reward_error_rate,
            wrap=wrap,
        )
    venv.seed(train.seed)
    return venv


class RewardComponents(BaseCallback):
    """Log the mean of every ``info["reward/<name>"]`` per rollout as ``reward/<name>``."""

    def __init__(self) -> None:
        super().__init__()
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            for key, value in info.items():
                if key.startswith("reward/") or key == "task/progress":
                    self.sums[key] += float(value)
                    self.counts[key] += 1
        return True

    def _on_rollout_end(self) -> None:
        for key, total in self.sums.items():
            self.logger.record_mean(key, total / max(self.counts[key], 1))
        self.sums.clear()
        self.counts.clear()


class SuccessEval(BaseCallback):
    """Every ``eval_freq`` env steps: run deterministic episodes and score the task's metric.

    Appends ``metrics.csv`` (timesteps, success_rate, mean returns, wall time), logs
    ``eval/*`` to TensorBoard, saves ``best_model.zip`` on a new best success rate, and stops
    training once ``stop_at_success`` is reached (when > 0).
    """

    def __init__(
        self, task: TaskSpec, reward: Reward, train: TrainConfig, run_dir: Path, clock: Clock
    ) -> None:
        super().__init__()
        self.task, self.cfg, self.run_dir, self.clock = task, train, run_dir, clock
        self.members = member_programs(task, reward) if task.members else None
        self.program = None if task.members else single_program(task, reward)
        rows = read_csv(run_dir / "metrics.csv")
        self.best = max((float(r["success_rate"]) for r in rows), default=-1.0)
        self.last_eval = int(rows[-1]["timesteps"]) if rows else 0
        self.last_success = float(rows[-1]["success_rate"]) if rows else 0.0

    def evaluate(self) -> dict[str, Any]:
        normalizer = self.model.get_vec_normalize_env()
        if self.task.members:  # every member, success per member (rewardlab.multitask)
            return evaluate_members(self.task, self.model, self.members, episodes=self.cfg.eval_episodes,
                                    seed=10_000 + self.cfg.seed, normalizer=normalizer)  # fmt: skip
        results = run_episodes(
            self.task, self.model, episodes=self.cfg.eval_episodes, seed=10_000 + self.cfg.seed,
            program=self.program, normalizer=normalizer,
        )  # fmt: skip
        return summarize(results)

    def _on_step(self) -> bool:
        if self.num_timesteps - self.last_eval < self.cfg.eval_freq:
            return True
        self.last_eval = self.num_timesteps
        return self._record(self.evaluate())

    def _record(self, summary: dict[str, Any]) -> bool:
        row = {
            "timesteps": self.model.num_timesteps,
            "success_rate": summary["success_rate"],
            "mean_progress": round(summary["mean_progress"], 4),
            "mean_reward_return": round(summary["mean_reward_return"], 3),
            "mean_env_return": round(summary["mean_env_return"], 3),
            "mean_length": summary["mean_length"],
            "wall_s": round(self.clock.wall_s(), 1),
            **success_columns(summary),  # multi-task sets: success/<member>
        }
        append_csv(self.run_dir / "metrics.csv", row)
        for key in (
            "success_rate",
            "mean_progress",
            "mean_reward_return",
            "mean_env_return",
            *success_columns(summary),
        ):
            self.logger.record(f"eval/{key}", row[key])
        self.last_success = summary["success_rate"]
        if summary["success_rate"] > self.best:
            self.best = summary["success_rate"]
            save_model(self.model, self.run_dir / "best_model.zip")
        stop = self.cfg.stop_at_success
        return not (stop > 0 and summary["success_rate"] >= stop)


class Checkpoints(BaseCallback):
    """Save a checkpoint every ``train.checkpoint_freq`` steps and at least every
    ``train.checkpoint_minutes`` of training; only the newest time-driven one is kept."""

    def __init__(self, run_dir: Path, train: TrainConfig, clock: Clock) -> None:
        super().__init__()
        self.run_dir, self.clock = run_dir, clock
        self.every_steps, self.every_s = train.checkpoint_freq, 60.0 * train.checkpoint_minutes
        self.next_steps = 0
        self.last_saved = time.monotonic()
        self.timed: int | None = None
        """Step count of the newest time-driven checkpoint (deleted when superseded)."""

    def _on_training_start(self) -> None:
        self.next_steps = (self.num_timesteps // self.every_steps + 1) * self.every_steps

    def _on_rollout_end(self) -> None:
        self.clock.iterations += 1

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_steps:
            self.save("steps")
            self.next_steps = (self.num_timesteps // self.every_steps + 1) * self.every_steps
        elif self.every_s > 0 and time.monotonic() - self.last_saved >= self.every_s:
            self.save("time")
        return True

    def save(self, reason: str) -> int:
        with deferred():  # a signal now would leave a half-written checkpoint
            steps = save_checkpoint(self.model, self.run_dir, wall_s=self.clock.wall_s(),
                                    iterations=self.clock.iterations, reason=reason)  # fmt: skip
            if self.timed is not None and self.timed != steps:
                remove_checkpoint(self.run_dir, self.timed)
            self.timed = steps if reason == "time" else None
        self.last_saved = time.monotonic()
        return steps


def algo_kwargs(algo: AlgoConfig, n_envs: int) -> dict[str, Any]:
    """The SB3 constructor's keyword arguments: ``algo.kwargs``, and for PPO ``n_steps`` from
    ``algo.steps_per_update`` (``ceil(steps_per_update / n_envs)``, so the rollout per update
    keeps the preset's size with any number of envs) unless ``kwargs.n_steps`` is set (not
    ``None``).

    Example:
        >>> algo = AlgoConfig(steps_per_update=4096)
        >>> algo_kwargs(algo, 4)["n_steps"], algo_kwargs(algo, 64)["n_steps"], algo_kwargs(algo, 5000)["n_steps"]
        (1024, 64, 1)
        >>> algo_kwargs(AlgoConfig(steps_per_update=4096, kwargs={"n_steps": 256}), 64)["n_steps"]
        256
    """
    kwargs = dict(algo.kwargs)
    if kwargs.get("n_steps") is None:  # the preset's ``n_steps: null``: follow n_envs
        kwargs.pop("n_steps", None)
    if str(algo.name) == "ppo" and "n_steps" not in kwargs and algo.steps_per_update:
        kwargs["n_steps"] = max(-(-int(algo.steps_per_update) // max(n_envs, 1)), 1)
    return kwargs


def normalized(venv: VecEnv, algo: AlgoConfig) -> VecEnv:
    """``venv`` under ``VecNormalize`` as ``algo`` asks (rewards: PPO only); a multi-task env
    always under :class:`~rewardlab.multitask.MultiTaskNormalize` (rewards per task: by the
    return's scale for PPO, the step reward's for SAC)."""
    if isinstance(venv, MultiTaskVecEnv):
        ppo = algo.name == "ppo"
        return MultiTaskNormalize(venv, norm_obs=algo.normalize_obs, task_scale="return" if ppo else "step",
                                  gamma=float(algo.kwargs.get("gamma", 0.99)))  # fmt: skip
    norm_reward = algo.normalize_reward and algo.name == "ppo"
    if algo.normalize_obs or norm_reward:
        return VecNormalize(venv, norm_obs=algo.normalize_obs, norm_reward=norm_reward)
    return venv


def build_model(
    algo: AlgoConfig, train: TrainConfig, venv: VecEnv, run_dir: Path, *, moe: MoEConfig | None = None,
    parent: Path | None = None,
) -> tuple[BaseAlgorithm, CheckpointInfo]:  # fmt: skip
    """Create the algorithm, or restore it (with normalisation and replay buffer) from the
    newest complete checkpoint in ``run_dir``; with the checkpoint's info (step 0: fresh).

    ``algo.policy=moe`` builds :mod:`rewardlab.moe.policies`' MoE actor/critic from ``moe``.
    A fresh training with ``parent`` (a trained version's folder) starts from that policy and
    its normalisation statistics, adapted as ``train.adapt`` says (``moe``: the adapters'
    rank, router and experts)."""
    cls = algo_class(algo.name)
    ckpt = latest_checkpoint(run_dir)
    moe = moe or MoEConfig()
    if ckpt is not None:
        path, steps = ckpt
        stats = run_dir / "checkpoints" / f"model_vecnormalize_{steps}_steps.pkl"
        if stats.exists():
            norm = load_normalizer(stats)
            norm.set_venv(venv)
            venv = norm
        model = load_model(cls, path, env=venv, device=train.device)
        buffer = run_dir / "checkpoints" / f"model_replay_buffer_{steps}_steps.pkl"
        if buffer.exists() and hasattr(model, "load_replay_buffer"):
            model.load_replay_buffer(io.BytesIO(read_trusted(buffer)))
        return model, checkpoint_info(run_dir, steps)
    venv = normalized(venv, algo)
    kwargs = algo_kwargs(algo, venv.num_envs)
    policy: Any = str(algo.policy)
    if parent is not None:
        before, parent_norm = load_policy(parent, algo.name)
        policy, kwargs["policy_kwargs"] = warm_start_kwargs(before, train.adapt, moe)
        if isinstance(venv, VecNormalize) and parent_norm is not None:
            for name in ("obs_rms", "ret_rms", "task_rms"):  # the inputs the parent learned on
                if hasattr(parent_norm, name) and hasattr(venv, name):
                    setattr(venv, name, copy.deepcopy(getattr(parent_norm, name)))
    elif algo.policy == PolicyName.moe:
        policy = policy_class(algo.name)
        kwargs["policy_kwargs"] = {**kwargs.get("policy_kwargs", {}), "moe": moe.to_dict(),
                                   "task_count": getattr(venv, "task_count", 0)}  # fmt: skip
    model = cls(policy, venv, seed=train.seed, device=train.device, verbose=0, **kwargs)
    if parent is not None:
        inherit(model, before)
    return model, CheckpointInfo(steps=0)


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    timesteps: int
    last_success_rate: float
    best_success_rate: float
    wall_s: float
    """Training wall time, summed over resumes."""
    stopped_early: bool
    reward_errors: dict[str, int]
    rollout: dict[str, Any] = field(default_factory=dict)
    """What stepped the envs and evaluated the reward (``rollout.json``)."""
    moe: dict[str, Any] = field(default_factory=dict)
    """``algo.policy=moe``: ``parameters`` (:func:`~rewardlab.moe.policies.parameter_counts`)
    and ``routers``, the newest ``moe/<layer>/<statistic>`` record (the whole curve is
    ``moe.csv``); empty for a dense policy."""


def train(
    task: TaskSpec, reward: Reward, algo: AlgoConfig, train: TrainConfig, run_dir: Path,
    *, shaping: ShapingConfig | None = None, rollout: RolloutConfig | None = None,
    moe: MoEConfig | None = None, parent: Path | None = None,
) -> TrainResult:  # fmt: skip
    """Train (or resume) in ``run_dir``; the reward is ``reward``: a program compiled once
    (:func:`rewardlab.reward.program.compile_for_task`; its source is compiled here if given as
    text) that every env and the evaluator run only in confined workers
    (:mod:`rewardlab.workers`), or ``None`` for the env reward; for a multi-task set
    (``task.members``, :mod:`rewardlab.multitask`) a mapping of such rewards by member name.
    Shaped during training by ``shaping`` (:mod:`rewardlab.shaping.continuous`) if given, on
    ``train.backend`` (set up by ``rollout`` for the rollout core), with ``moe`` for
    ``algo.policy=moe`` and a warm start from ``parent`` (see :func:`build_model`). What
    stepped the envs and evaluated the reward is written to ``run_dir/rollout.json`` (also when
    a failing reward stops training)."""
    from rewardlab.rollout.support import supports

    shaping_kind = str(shaping.kind) if shaping is not None else "none"
    problem = next(
        filter(
            None,
            (supports(t, str(train.backend), shaping=shaping_kind) for t in member_tasks(task)),
        ),
        None,
    )
    if problem:
        raise ValueError(problem)
    program: Reward = (
        member_programs(task, reward) if task.members else single_program(task, reward)
    )  # vetted once
    source = reward_source(program)
    torch.set_num_threads(train.torch_threads)
    shaper = None
    if shaping is not None and shaping.kind != "none":
        from rewardlab.shaping.continuous import make_shaper

        shaper = make_shaper(shaping, algo, train, run_dir, task)
    log.info(f"{run_dir.name}: {describe_start(run_dir, train.total_timesteps)}")
    venv = make_vec_env(task, program, train, shaper, rollout)
    model, resumed = build_model(algo, train, venv, run_dir, moe=moe, parent=parent)
    log.info(f"{run_dir.name}: {describe_parameters(model.policy)}")
    clock = Clock(wall_offset=resumed.wall_s, iterations=resumed.iterations or 0)
    for name in ("metrics.csv", "moe.csv"):  # rows of training thrown away
        trim_csv(run_dir / name, "timesteps", resumed.steps)
    model.set_logger(training_logger(run_dir / "tb", resumed))
    remaining = train.total_timesteps - model.num_timesteps
    _say_rounding(model, train, remaining)
    evaluator = SuccessEval(task, program, train, run_dir, clock)
    checkpoints = Checkpoints(run_dir, train, clock)
    checkpoints.timed = resumed.steps if resumed.reason == "time" else None
    routers = MoEStatistics(csv_path=run_dir / "moe.csv")
    callbacks = CallbackList([
        RewardComponents(), routers, evaluator, checkpoints, *(shaper.callbacks() if shaper is not None else []),
    ])  # fmt: skip
    stopped_early = False
    if remaining > 0:
        try:
            model.learn(
                total_timesteps=remaining, callback=callbacks, progress_bar=train.progress_bar,
                reset_num_timesteps=False,
            )  # fmt: skip
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep everything for `train run=<dir>`
            steps = checkpoints.save("stopped")
            log.info(f"stopped at step {steps:,}: checkpoint saved in {run_dir / 'checkpoints'}")
            record_rollout(venv, train, source, run_dir)
            raise
        except RewardFailure:
            record_rollout(venv, train, source, run_dir)
            raise
        stopped_early = model.num_timesteps < train.total_timesteps
    if evaluator.last_eval != model.num_timesteps:  # final evaluation at the last step
        if (
            remaining <= 0
        ):  # resumed at its budget (killed before the final evaluation): no learn() set it up
            callbacks.init_callback(model)
        evaluator.last_eval = model.num_timesteps
        evaluator._record(evaluator.evaluate())
    if remaining > 0:  # a continuation starts exactly here (a checkpoint saved on the last
        checkpoints.save("end")  # step of a rollout precedes that rollout's update)
    save_model(model, run_dir / "model.zip", run_dir / "vecnormalize.pkl")
    errors: Counter[str] = Counter()
    vec_env = model.get_env()
    assert vec_env is not None
    rollout_record = record_rollout(vec_env, train, source, run_dir)
    moe_record: dict[str, Any] = {}
    if moe_layers(model.policy):
        if remaining > 0:
            routers.flush()
        latest = routers.latest or {
            k: float(v)
            for k, v in (read_csv(run_dir / "moe.csv") or [{}])[-1].items()
            if k != "timesteps"
        }
        moe_record = {"parameters": parameter_counts(model.policy), "routers": latest}
    if has_program(source):
        for counts in vec_env.get_attr("error_counts"):
            errors.update(counts)
    vec_env.close()
    return TrainResult(
        timesteps=int(model.num_timesteps),
        last_success_rate=float(evaluator.last_success),
        best_success_rate=float(max(evaluator.best, 0.0)),
        wall_s=clock.wall_s(),
        stopped_early=stopped_early,
        reward_errors=dict(errors),
        rollout=rollout_record,
        moe=moe_record,
    )


def _say_rounding(model: BaseAlgorithm, train: TrainConfig, remaining: int) -> None:
    """SB3 trains in whole rollouts (PPO: ``n_steps`` per env; SAC: one step per env): say so
    when the budget is not a whole number of them, instead of overshooting silently."""
    n_steps = int(getattr(model, "n_steps", 1))
    rollout = n_steps * train.n_envs
    if remaining <= 0 or remaining % rollout == 0:
        return
    end = model.num_timesteps + -(-remaining // rollout) * rollout
    what = (
        f"n_steps {n_steps} x {train.n_envs} envs"
        if n_steps > 1
        else f"{train.n_envs} envs per step"
    )
    log.info(f"train.total_timesteps={train.total_timesteps:,} is not a whole number of rollouts "
             f"({what} = {rollout:,} steps): training runs to step {end:,}")  # fmt: skip


def reward_source(reward: Reward) -> str | dict[str, str | None] | None:
    """The source of ``reward`` (a multi-task set's: by member name)."""
    if isinstance(reward, Mapping):
        return {name: reward_source(r) for name, r in reward.items()}  # type: ignore[misc]
    return reward.source if isinstance(reward, RewardProgram) else reward


def has_program(source: Any) -> bool:
    """Whether a reward program runs: ``source`` is one, or (a multi-task set's mapping)
    holds one."""
    if isinstance(source, Mapping):
        return any(v is not None for v in source.values())
    return source is not None


def single_program(task: TaskSpec, reward: Reward) -> RewardProgram | None:
    """One task's reward as a compiled program (``None``: the benchmark's own reward)."""
    if isinstance(reward, Mapping):
        raise TypeError(
            f"{task.name} is a single task: its reward is one program, not one per member"
        )
    return compile_for_task(reward, task) if isinstance(reward, str) else reward


def record_rollout(venv: VecEnv, train: TrainConfig, source: Any, run_dir: Path) -> dict[str, Any]:
    """Write ``run_dir/rollout.json``: what stepped the envs and how the reward program was
    evaluated (the rollout core's :meth:`~rewardlab.rollout.core.RolloutCore.rollout_report`;
    for ``dummy``, gymnasium envs calling the program once per env and step)."""
    if str(train.backend) == "dummy":
        members = getattr(venv.unwrapped, "venvs", [venv])  # a multi-task set: one per member
        workers = sum(len(getattr(m.unwrapped, "spans", ())) for m in members)
        record: dict[str, Any] = {
            "backend": "dummy", "num_worlds": venv.num_envs, "workers": workers,
            "reward": {"mode": "per_world" if has_program(source) else "env",
                       "summary": "gymnasium envs in SB3's DummyVecEnv" + (f", held with the program by {workers} confined worker(s) stepping in parallel, the program called once per env and step" if has_program(source) else ", the benchmark's own reward")},
        }  # fmt: skip
    else:
        record = venv.get_attr("rollout_report", indices=[0])[0]
    write_json(run_dir / "rollout.json", record)
    return record


@dataclass
class SweepRun:
    """One finished run of an experiment sweep (what :func:`train_once` returns)."""

    curve: list[dict[str, float]]
    """Evaluations in order: ``steps``, ``success`` (rate) and ``progress`` (mean, 0..1)."""
    wall_s: float
    """Wall time of the training that produced the run."""


def train_once(
    task: TaskSpec,
    source: str | None,
    algo: AlgoConfig,
    train_cfg: TrainConfig,
    run_dir: Path,
    *,
    shaping: ShapingConfig | None = None,
    moe: MoEConfig | None = None,
) -> SweepRun:
    """:func:`train` in ``run_dir`` unless an earlier call finished there (``done.json``), then
    read its evaluation curve: how experiment sweeps train, so an interrupted sweep resumes
    where it stopped and a finished one is re-aggregated without training."""
    done = run_dir / "done.json"
    if not done.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "reward.py").write_text(
            source or "# the benchmark's own reward (reward_file=env)\n"
        )
        result = train(task, source, algo, train_cfg, run_dir, shaping=shaping, moe=moe)
        done.write_text(json.dumps({"wall_s": result.wall_s, "timesteps": result.timesteps}))
    curve = [
        {"steps": int(r["timesteps"]), "success": float(r["success_rate"]), "progress": float(r["mean_progress"])}
        for r in read_csv(run_dir / "metrics.csv")
    ]  # fmt: skip
    return SweepRun(curve, float(json.loads(done.read_text())["wall_s"]))
