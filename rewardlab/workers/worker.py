"""What runs inside a confined worker: build the simulator, put up the OS wall, then load
and run the reward program on request (the parent side is :mod:`rewardlab.workers.confined`).

A worker is forked by the fork server (:mod:`rewardlab.workers.zygote`) and served over two
pipes with :mod:`rewardlab.reward.wire` messages. Its first message (``init``) says what to
build:

``envs``
    ``n`` copies of the task's environment (:func:`rewardlab.wrappers.make_env`), each with
    its own loaded copy of the program (:class:`rewardlab.wrappers.ProgramReward`). ``step`` steps all
    of them with one action each and, where ``auto_reset`` is set and an episode ended, resets
    that copy in the same round trip (a training step costs one message each way); ``reset``
    resets with the given seeds; ``errors`` returns the failure counts.
``core``
    the batched rollout core (:class:`rewardlab.rollout.core.RolloutCore` behind its SB3
    adapter), built by its own factory with the configured back-end, warmed up, then given the
    program: ``reset``, ``step``, ``errors`` as above for all worlds at once.

Order inside the worker: environment(s) built (files, assets, JIT) -> stdout/stderr pointed at
``/dev/null`` -> :func:`rewardlab.reward.confine.apply_wall` -> the program, vetted and
compiled once by the trusted process and sent as ``init["program"]``
(:meth:`~rewardlab.reward.program.RewardProgram.to_message`), loaded with
:meth:`~rewardlab.reward.program.RewardProgram.fresh` for each copy (its module-level code
runs only now) -> ``ready`` with the spaces and the wall report. Module-level code that fails
ends the worker with its findings. A program made by
:func:`~rewardlab.reward.program.unvetted_program` (tests only; no configuration can ask for
it) runs as plain Python with real builtins: what the OS wall alone stops.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import traceback
from collections import Counter
from dataclasses import asdict
from typing import Any

import gymnasium as gym
import numpy as np

from rewardlab.reward import wire
from rewardlab.reward.confine import apply_wall
from rewardlab.reward.program import RewardProgram, RewardProgramError
from rewardlab.tasks.registry import TASK_PATH_ENV, TaskSpec
from rewardlab.workers.infos import InfoPacker
from rewardlab.wrappers import ProgramReward, RewardFailure, make_env


class EnvsSession:
    """``n`` environment copies with a program each (the ``envs`` kind)."""

    def __init__(self, init: dict[str, Any]) -> None:
        self.task = TaskSpec.from_dict(init["task"])
        self.n = int(init.get("n", 1))
        self.max_error_rate = float(init.get("max_error_rate", 0.05))
        self.envs: list[gym.Env] = [make_env(self.task) for _ in range(self.n)]
        self.packer = InfoPacker()

    def info(self) -> dict[str, Any]:
        obs, act = self.envs[0].observation_space, self.envs[0].action_space
        return {"observation_space": _box(obs), "action_space": _box(act)}

    def load(self, program: RewardProgram) -> None:
        for i, env in enumerate(self.envs):
            self.envs[i] = ProgramReward(
                env, self.task, program.fresh(), max_error_rate=self.max_error_rate
            )

    def reset(
        self, msg: dict[str, Any], arrays: list[np.ndarray]
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        seeds = msg.get("seeds") or [None] * self.n
        obs, infos = [], []
        for env, seed in zip(self.envs, seeds, strict=True):
            o, info = env.reset(seed=seed)
            obs.append(np.asarray(o))
            infos.append(info)
        header, packed = self.packer.pack(infos)
        return header, [np.stack(obs), *packed]

    def step(
        self, msg: dict[str, Any], arrays: list[np.ndarray]
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        """Step every copy; the reply's arrays are the observations of the step and those
        after auto-resets (``(2, n, ...)``), the rewards and the terminated and truncated flags
        (``(3, n)`` floats), and the packed infos of the step followed by those of the resets
        (:mod:`rewardlab.workers.infos`)."""
        (actions,) = arrays
        auto_reset = bool(msg.get("auto_reset", True))
        n = self.n
        obs: list[Any] = [None] * n
        after: list[Any] = [None] * n
        flags = np.zeros((3, n))  # rewards, terminated, truncated
        infos: list[dict[str, Any] | None] = [None] * (2 * n)
        errors: list[str | None] = [None] * n
        for i, env in enumerate(self.envs):
            o, r, te, tr, info = env.step(actions[i])
            obs[i] = after[i] = o
            flags[:, i] = r, te, tr
            infos[i] = info
            errors[i] = env.last_error if isinstance(env, ProgramReward) else None
            if auto_reset and (te or tr):
                after[i], infos[n + i] = env.reset()
        header, packed = self.packer.pack(infos)
        if any(errors):
            header["errors"] = errors
            header["findings"] = {
                key: asdict(env.errors[key])
                for env, key in zip(self.envs, errors, strict=True)
                if key is not None and isinstance(env, ProgramReward)
            }
        return header, [np.stack([np.stack(obs), np.stack(after)]), flags, *packed]

    def errors(
        self, msg: dict[str, Any], arrays: list[np.ndarray]
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        counts: Counter[str] = Counter()
        first: dict[str, dict[str, Any]] = {}
        for env in self.envs:
            assert isinstance(env, ProgramReward)
            counts.update(env.error_counts)
            for key, finding in env.errors.items():
                first.setdefault(key, asdict(finding))
        return {"counts": dict(counts), "findings": first}, []


class CoreSession:
    """The batched rollout core (the ``core`` kind)."""

    def __init__(self, init: dict[str, Any]) -> None:
        from rewardlab.rollout.core import CoreConfig, RolloutCore
        from rewardlab.rollout.sb3 import CoreVecEnv

        self.task = TaskSpec.from_dict(init["task"])
        self.core = RolloutCore(self.task, CoreConfig(**init["config"]))
        self.venv = CoreVecEnv(self.core, infos=self.core.config.infos)
        self.n = self.venv.num_envs
        self.packer = InfoPacker()
        if self.core.config.backend == "mjx":  # JIT compilation happens now, before the wall
            from rewardlab.rollout.core import Timings

            self.venv.reset()
            self.venv.step(
                np.zeros((self.n, *(self.venv.action_space.shape or ())), dtype=np.float32)
            )
            self.core.timings = Timings()  # the warm-up step is not part of the run

    def info(self) -> dict[str, Any]:
        return {
            "observation_space": _box(self.venv.observation_space),
            "action_space": _box(self.venv.action_space),
        }

    def load(self, program: RewardProgram) -> None:
        self.core.attach_program(program.fresh())

    def reset(
        self, msg: dict[str, Any], arrays: list[np.ndarray]
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        seeds = msg.get("seeds")
        if seeds is not None:
            self.core.seed([None if s is None else int(s) for s in seeds])
        return {}, [np.asarray(self.venv.reset())]

    def step(
        self, msg: dict[str, Any], arrays: list[np.ndarray]
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        """Step all worlds; the reply's arrays are the observations and terminal observations
        (``(2, n, ...)``), the rewards and done flags (``(2, n)`` floats) and the packed infos
        (:mod:`rewardlab.workers.infos`)."""
        (actions,) = arrays
        out, rewards, dones, infos = self.venv.step(actions)
        obs = np.asarray(out)
        pair = np.zeros((2, *obs.shape), dtype=obs.dtype)
        pair[0] = obs
        for i, info in enumerate(infos):
            if "terminal_observation" in info:
                pair[1, i] = info["terminal_observation"]
        header, packed = self.packer.pack(infos)
        return header, [pair, np.stack([rewards, dones]).astype(np.float64), *packed]

    def errors(
        self, msg: dict[str, Any], arrays: list[np.ndarray]
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        return {"counts": dict(self.core.error_counts), "findings": {}}, []

    def report(
        self, msg: dict[str, Any], arrays: list[np.ndarray]
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        return {"report": self.core.rollout_report()}, []


def _box(space: gym.Space) -> dict[str, Any]:
    if not isinstance(space, gym.spaces.Box):
        raise TypeError(f"confined workers support Box spaces only, not {type(space).__name__}")
    return {"low": space.low.tolist(), "high": space.high.tolist(), "dtype": space.dtype.str}


SESSIONS: dict[str, type[EnvsSession] | type[CoreSession]] = {
    "envs": EnvsSession,
    "core": CoreSession,
}


def _quiet() -> None:
    """Point stdout and stderr at /dev/null (and close the error pipe to the parent)."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)


def _adopt_paths(init: dict[str, Any]) -> None:
    """Take the trusted parent's task path and import path (custom tasks' cards and metrics)
    before anything is built; the wall later makes them read-only."""
    if init.get("task_path"):
        os.environ[TASK_PATH_ENV] = str(init["task_path"])
    missing = [str(p) for p in init.get("sys_path", []) if str(p) not in sys.path]
    sys.path[:0] = missing


def serve(inp: int, out: int, err: int, trace: int) -> None:
    """Serve one worker over ``inp``/``out`` (see the module docstring); ``err`` receives
    stderr until the wall goes up; ``trace`` receives the Python stack on ``SIGUSR1`` (the
    parent's watchdog asks for it before it kills a stuck worker, to name the line)."""
    os.dup2(err, 2)
    os.close(err)
    faulthandler.register(signal.SIGUSR1, file=trace, all_threads=False)
    reader = wire.Reader(inp)
    init, _ = reader.read()
    _adopt_paths(init)
    session: EnvsSession | CoreSession
    try:
        session = SESSIONS[init["kind"]](init)
        ready = session.info()
    except Exception:
        wire.send(out, {"ok": False, "error": traceback.format_exc(limit=8)[-4000:]})
        return
    _quiet()
    report = apply_wall(
        memory_mb=int(init.get("memory_mb", 0)),
        cpu_s=init.get("cpu_s"),
        threads=init["kind"] == "core",
    )
    try:
        session.load(RewardProgram.from_message(init["program"]))
    except RewardProgramError as exc:
        wire.send(out, {"ok": False, "findings": [asdict(f) for f in exc.findings]})
        return
    except Exception as exc:  # unvetted test mode: the program's module code raised
        wire.send(out, {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
        return
    wire.send(out, {"ok": True, **ready, "wall": report.to_dict()})
    handlers = {"reset": session.reset, "step": session.step, "errors": session.errors}
    if isinstance(session, CoreSession):
        handlers["report"] = session.report
    while True:
        msg, arrays = reader.read()
        op = str(msg.get("op"))
        if op == "close":
            return
        try:
            header, replies = handlers[op](msg, arrays)
        except RewardFailure as exc:
            wire.send(out, {"failure": str(exc)})
            continue
        except Exception:  # the environment itself failed: say so, then stop
            wire.send(out, {"ok": False, "error": traceback.format_exc(limit=8)[-4000:]})
            return
        wire.send(out, {"ok": True, **header}, replies)
