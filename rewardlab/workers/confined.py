"""Running generated reward code from a trusted process: every call happens in a confined
worker (:mod:`rewardlab.workers.worker`, behind the OS wall of :mod:`rewardlab.reward.confine`);
this process only sends actions and reads back plain numbers.

* :class:`ConfinedVecEnv` -- training on gymnasium envs (``train.backend=dummy``): the
  ``n_envs`` copies of the environment with their programs are shared out over
  ``train.env_workers`` workers (by default one per CPU core) that step them in parallel, one
  message each way per worker and vectorised step (auto-resets included). It is a ``DummyVecEnv``
  over stand-in envs here, so ``Monitor`` and the shaping wrappers
  (:mod:`rewardlab.shaping.continuous`) wrap each copy as before and keep their state in this
  process.
* :class:`ConfinedCoreVecEnv` -- training on the batched rollout core (``native``/``mjx``):
  the core, built by its own factory, lives in one worker.
* :class:`ConfinedReward` -- evaluation, exploration, demonstrations: a gymnasium wrapper over
  a *trusted* environment (this process renders it and scores the task's success on it); a
  worker's copy of the same environment replays the same resets and actions and returns the
  program's reward and components. Its observations are compared with the trusted ones every
  step: a copy that diverges (tampered with, or a non-deterministic simulator) is a counted
  failure and is replaced and replayed.

**Watchdog.** Every request has a wall-clock limit (``call_timeout_s``); a worker that exceeds
it (a program stuck inside one C call: ``sum(map(sum, [range(10**6)] * 10**6))``, a loop of
``eigvals`` on 700x700), crashes, or sends anything malformed is killed and replaced, and the
step counts as a program failure of every environment it held (reward 0,
``info["reward/error"] = 1``, episodes cut short). After :data:`MAX_REPLACEMENTS` replacements
within :data:`REPLACEMENT_WINDOW` steps training stops with :class:`RewardFailure` saying why.
Nothing waits for ever.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from rewardlab.reward import wire
from rewardlab.reward.findings import Finding
from rewardlab.reward.program import RewardProgram, RewardProgramError
from rewardlab.tasks.registry import TASK_PATH_ENV, TaskSpec
from rewardlab.workers.infos import InfoTable, MalformedInfos
from rewardlab.workers.zygote import Zygote
from rewardlab.wrappers import RewardFailure, RewardWrapper, make_env

CALL_TIMEOUT_S = 60.0
"""Default wall-clock limit of one request (a vectorised step of all copies): about a
thousand times a normal step, so machine load cannot reach it, while a stuck program is
stopped within a minute."""
STARTUP_TIMEOUT_S = 900.0
"""Limit for building a worker's environments (ManiSkill's first build can take minutes on a
loaded machine)."""
WORKER_MEMORY_MB = 8192
"""Address-space limit of a worker."""
MAX_REPLACEMENTS = 3
REPLACEMENT_WINDOW = 1000
"""Training stops when more than :data:`MAX_REPLACEMENTS` workers had to be replaced within
this many steps."""


class WorkerFailure(RuntimeError):
    """A worker timed out, died or broke the protocol; ``finding`` says which."""

    def __init__(self, finding: Finding) -> None:
        self.finding = finding
        super().__init__(str(finding))


def _describe_status(status: int | None) -> str:
    if status is None:
        return "it exited"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name}" + (
            " (the seccomp filter: a forbidden system call)" if sig == signal.SIGSYS else ""
        )
    return f"exited with code {os.WEXITSTATUS(status)}"


class Worker:
    """One confined worker process (parent side): spawn, request/reply with a deadline, kill."""

    def __init__(
        self, init: dict[str, Any], *, startup_timeout_s: float = STARTUP_TIMEOUT_S
    ) -> None:
        self.zygote = Zygote.get()
        to_r, self._to = os.pipe()
        self._from, from_w = os.pipe()
        err_r, err_w = os.pipe()
        self._trace, trace_w = os.pipe()
        try:
            self.pid = self.zygote.spawn([to_r, from_w, err_w, trace_w])
        finally:
            for fd in (to_r, from_w, err_w, trace_w):
                os.close(fd)
        self._reader = wire.Reader(self._from)
        self.stderr = bytearray()
        self.infos = InfoTable()
        """The info schemas this worker defined (:mod:`rewardlab.workers.infos`)."""
        self._err_thread = threading.Thread(target=self._drain, args=(err_r,), daemon=True)
        self._err_thread.start()
        self.alive = True
        # the task path and import path of this process (custom tasks, cards and metrics), as
        # the fork server, started earlier, may not have them; never the current folder
        here = os.getcwd()
        imports = [p for p in sys.path if p and os.path.isabs(p) and os.path.realpath(p) != here]
        self.send({**init, "task_path": os.environ.get(TASK_PATH_ENV, ""), "sys_path": imports})
        try:
            ready, _ = self.receive(startup_timeout_s, what="start")
        except WorkerFailure as exc:
            raise RuntimeError(
                f"the reward worker could not start: {exc.finding.message}"
            ) from None
        if not ready.get("ok"):
            self.kill()
            if ready.get("findings"):
                raise RewardProgramError([_finding(f) for f in ready["findings"]])
            raise RuntimeError(
                f"the reward worker could not start: {str(ready.get('error'))[-2000:]}"
            )
        self.ready = ready

    def _drain(self, fd: int) -> None:
        with os.fdopen(fd, "rb", buffering=0) as fh:
            while chunk := fh.read(4096):
                self.stderr += chunk
                del self.stderr[:-8192]

    def send(self, header: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> None:
        try:
            wire.send(self._to, header, arrays)
        except OSError as exc:
            self.kill()
            raise WorkerFailure(
                Finding("runtime", f"the reward worker died ({exc.strerror})")
            ) from None

    def receive(
        self, timeout_s: float, what: str = "step"
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        try:
            header, arrays = self._reader.read(time.monotonic() + timeout_s)
            if "schemas" in header:
                self.infos.define(header.pop("schemas"))
            return header, arrays
        except MalformedInfos as exc:
            self.kill()
            raise WorkerFailure(
                Finding("runtime", f"the reward worker sent malformed infos ({exc}); it was killed")
            ) from None
        except wire.WireTimeout:
            line = self._stuck_line()
            self.kill()
            raise WorkerFailure(Finding(
                "timeout", f"the reward program did not return within {timeout_s:g} s of wall-clock "
                "time (stuck inside one call?); its worker was killed and replaced", line,
            )) from None  # fmt: skip
        except wire.WireClosed:
            status = self.kill()
            tail = self.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise WorkerFailure(Finding(
                "runtime", f"the reward worker died during {what}: {_describe_status(status)}"
                + (f" ({tail[0][:300]})" if tail else ""),
            )) from None  # fmt: skip
        except wire.WireError as exc:
            self.kill()
            raise WorkerFailure(
                Finding("runtime", f"the reward worker broke the protocol ({exc}); it was killed")
            ) from None

    def _stuck_line(self) -> int | None:
        """The program line a stuck worker is executing (its stack, dumped on SIGUSR1)."""
        try:
            os.kill(self.pid, signal.SIGUSR1)
        except ProcessLookupError:
            return None
        text, deadline = b"", time.monotonic() + 2.0
        poller = select.poll()
        poller.register(self._trace, select.POLLIN)
        while time.monotonic() < deadline and b"\n\n" not in text and len(text) < 65536:
            if not poller.poll(100):
                if text:
                    break
                continue
            chunk = os.read(self._trace, 65536)
            if not chunk:
                break
            text += chunk
        lines = re.findall(rb'File "<reward>", line (\d+)', text)
        return int(lines[0]) if lines else None  # most recent call first

    def request(
        self, header: dict[str, Any], arrays: Sequence[np.ndarray], timeout_s: float
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        self.send(header, arrays)
        return self.receive(timeout_s)

    def kill(self) -> int | None:
        """Kill the worker (if alive) and return how it ended, as far as the fork server saw."""
        if self.alive:
            self.alive = False
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            for fd in (self._to, self._from, self._trace):
                with contextlib.suppress(OSError):
                    os.close(fd)
        for _ in range(50):
            status = self.zygote.exit_status(self.pid)
            if status is not None:
                return status
            time.sleep(0.02)
        return None

    def close(self) -> None:
        if self.alive:
            with contextlib.suppress(OSError):
                wire.send(self._to, {"op": "close"})
            self.kill()


def _reply(header: dict[str, Any]) -> dict[str, Any]:
    """``header`` of a successful reply; :class:`RewardFailure` when the program failed too
    often, :class:`RuntimeError` when the environment itself failed in the worker."""
    if "failure" in header:
        raise RewardFailure(str(header["failure"])[:4000])
    if header.get("ok") is not True:
        raise RuntimeError(
            f"the environment failed in the reward worker: {str(header.get('error'))[-2000:]}"
        )
    return header


def _finding(raw: Any) -> Finding:
    if not isinstance(raw, dict):
        return Finding("runtime", "unreadable finding from the reward worker")
    line = raw.get("line")
    return Finding(str(raw.get("stage", "runtime"))[:20], str(raw.get("message", ""))[:600],
                   line if isinstance(line, int) else None)  # fmt: skip


def _space(raw: Any) -> gym.spaces.Box:
    try:
        dtype = np.dtype(raw["dtype"])
        if dtype.kind not in "biuf":
            raise ValueError(dtype)
        low, high = np.asarray(raw["low"], dtype=dtype), np.asarray(raw["high"], dtype=dtype)
        return gym.spaces.Box(low=low, high=high, dtype=dtype)
    except (KeyError, TypeError, ValueError) as exc:
        raise WorkerFailure(
            Finding("runtime", f"the reward worker sent a bad space ({exc})")
        ) from None


def _infos(
    worker: Worker,
    header: dict[str, Any],
    arrays: Sequence[np.ndarray],
    n: int,
    *,
    optional: bool = False,
) -> list[Any]:
    """The ``n`` info dicts packed in a reply (:mod:`rewardlab.workers.infos`: ``arrays`` are
    its schema ids and values), validated (``None`` entries allowed if ``optional``)."""
    if len(arrays) != 2 or arrays[0].shape != (n,):
        raise WorkerFailure(Finding("runtime", "the reward worker sent malformed infos"))
    try:
        return worker.infos.unpack(header, arrays[0], arrays[1], optional=optional)
    except MalformedInfos as exc:
        raise WorkerFailure(
            Finding("runtime", f"the reward worker sent malformed infos ({exc})")
        ) from None


def _step_infos(
    worker: Worker, header: dict[str, Any], arrays: list[np.ndarray], n: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any] | None]]:
    """The infos of an ``envs`` worker's ``step`` reply (``arrays``: observations, flags, then
    the packed infos), then those of its auto-resets (``None``: that copy did not reset)."""
    packed = _infos(worker, header, arrays[2:], 2 * n, optional=True)
    infos = packed[:n]
    if any(info is None for info in infos):
        raise WorkerFailure(Finding("runtime", "the reward worker sent malformed infos"))
    return infos, packed[n:]


def _check_arrays(
    arrays: list[np.ndarray], shapes: Sequence[tuple[int, ...]], *, infos: bool = False
) -> list[np.ndarray]:
    """``arrays`` if they have ``shapes`` (followed by the two arrays of packed infos, checked
    by :func:`_infos`, if ``infos``)."""
    if len(arrays) != len(shapes) + 2 * infos or any(
        a.shape != s for a, s in zip(arrays, shapes, strict=False)
    ):
        raise WorkerFailure(Finding("runtime", "the reward worker sent arrays of the wrong shape"))
    return arrays


def _check_flags(flags: np.ndarray) -> np.ndarray:
    """A reply's rows of rewards and done flags (``float64``), if every one is finite (the
    worker validated its rewards already: one that is not was tampered with)."""
    if flags.dtype != np.float64 or not np.isfinite(flags).all():
        raise WorkerFailure(Finding("runtime", "the reward worker sent non-finite rewards"))
    return flags


class _Replacements:
    """Counts worker replacements; too many within a window of steps stops training."""

    def __init__(self) -> None:
        self.steps = 0
        self.at: deque[int] = deque()

    def record(self, finding: Finding) -> None:
        self.at.append(self.steps)
        while self.at and self.steps - self.at[0] >= REPLACEMENT_WINDOW:
            self.at.popleft()
        if len(self.at) > MAX_REPLACEMENTS:
            raise RewardFailure(
                f"the reward worker had to be replaced {len(self.at)} times within {REPLACEMENT_WINDOW} steps:\n  {finding}"
            )


class _Slot(gym.Env):
    """Stand-in for one environment copy held by a worker: returns what the worker computed."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.render_mode = None
        self.pending_step: tuple[Any, ...] | None = None
        self.pending_reset: tuple[Any, dict[str, Any]] | None = None
        self.last_obs: np.ndarray | None = None

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self.pending_step is None:
            raise RuntimeError("a confined environment copy was stepped outside its VecEnv")
        out, self.pending_step = self.pending_step, None
        return out

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if self.pending_reset is None:
            raise RuntimeError("a confined environment copy was reset outside its VecEnv")
        out, self.pending_reset = self.pending_reset, None
        return out


def _maker(
    slot: _Slot, i: int, wrap: Callable[[gym.Env, int], gym.Env] | None
) -> Callable[[], gym.Env]:
    return lambda: wrap(slot, i) if wrap is not None else slot


def default_workers(n_envs: int) -> int:
    """Workers for ``n_envs`` copies when none is configured: one per CPU core this process may
    use, at most one per copy (the copies step in parallel; the trainer waits meanwhile)."""
    return max(1, min(n_envs, len(os.sched_getaffinity(0))))


class ConfinedVecEnv(DummyVecEnv):
    """``n_envs`` copies of ``task``'s environment with ``program``'s reward, shared out in
    contiguous blocks over ``workers`` confined workers (0: :func:`default_workers`) that step
    their copies in parallel (see the module docstring); ``wrap(env, i)`` wraps each copy here
    (``Monitor``, shaping). Every copy has its own environment, program copy and seed, so the
    steps do not depend on how many workers hold them."""

    def __init__(
        self,
        task: TaskSpec,
        program: RewardProgram,
        *,
        n_envs: int,
        workers: int = 0,
        max_error_rate: float = 0.05,
        wrap: Callable[[gym.Env, int], gym.Env] | None = None,
        call_timeout_s: float | None = None,
        memory_mb: int = WORKER_MEMORY_MB,
    ) -> None:
        self.init = {"kind": "envs", "task": task.to_dict(), "program": program.to_message(),
                     "max_error_rate": max_error_rate, "memory_mb": memory_mb}  # fmt: skip
        self.call_timeout_s = CALL_TIMEOUT_S if call_timeout_s is None else call_timeout_s
        count = default_workers(n_envs) if workers <= 0 else min(workers, n_envs)
        bounds = np.linspace(0, n_envs, count + 1).round().astype(int).tolist()
        self.spans: list[range] = [
            range(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        """The copies each worker holds, in order."""
        self.workers: list[Worker] = []
        try:
            for span in self.spans:
                self.workers.append(self._start(span))
        except BaseException:
            for worker in self.workers:
                worker.kill()
            raise
        self.warnings = program.warnings
        self.wall = self.workers[0].ready.get("wall", {})
        obs_space, act_space = (
            _space(self.workers[0].ready["observation_space"]),
            _space(self.workers[0].ready["action_space"]),
        )
        self.slots = [_Slot(obs_space, act_space) for _ in range(n_envs)]
        self.replacements = _Replacements()
        self._lost_counts: Counter[str] = Counter()
        self._obs_shape = obs_space.shape
        self._failed: list[WorkerFailure | None] = [None] * len(self.spans)
        super().__init__([_maker(slot, i, wrap) for i, slot in enumerate(self.slots)])

    def _start(self, span: range) -> Worker:
        return Worker({**self.init, "n": len(span)})

    # ------------------------------------------------------------------ requests

    def _reset_workers(self, seeds: Sequence[int | None], which: Sequence[int]) -> None:
        """Reset the copies of workers ``which`` with ``seeds`` (one per copy of the env) and
        put the results in their slots; every request is sent before any reply is read."""
        for k in which:
            span = self.spans[k]
            self.workers[k].send({"op": "reset", "seeds": [seeds[i] for i in span]})
        for k in which:
            span, worker = self.spans[k], self.workers[k]
            header, arrays = worker.receive(self.call_timeout_s)
            _reply(header)
            obs = _check_arrays(arrays, [(len(span), *self._obs_shape)], infos=True)[0]
            infos = _infos(worker, header, arrays[1:], len(span))
            for j, i in enumerate(span):
                self.slots[i].pending_reset = (obs[j], infos[j])

    def reset(self) -> VecEnvObs:
        seeds = [None if s is None else int(s) for s in self._seeds]
        self._reset_workers(seeds, range(len(self.workers)))
        for slot in self.slots:
            assert slot.pending_reset is not None
            slot.last_obs = slot.pending_reset[0]
        return super().reset()

    def step_async(self, actions: np.ndarray) -> None:
        super().step_async(actions)
        actions = np.asarray(actions)
        for k, (span, worker) in enumerate(zip(self.spans, self.workers, strict=True)):
            try:
                worker.send({"op": "step", "auto_reset": True}, [actions[span.start : span.stop]])
            except WorkerFailure as exc:
                self._failed[k] = exc
            else:
                self._failed[k] = None

    def step_wait(self) -> VecEnvStepReturn:
        self.replacements.steps += 1
        failed: list[tuple[int, Finding]] = []
        for k, span in enumerate(self.spans):
            try:
                self._receive_step(k, span)
            except WorkerFailure as exc:
                failed.append((k, exc.finding))
        if failed:  # one replacement event per step, however many workers it took
            self.replacements.record(failed[0][1])
            for k, finding in failed:
                self._replace(k, finding)
        return self._collect()

    def _collect(self) -> VecEnvStepReturn:
        """``DummyVecEnv.step_wait`` over the slots (through their wrappers), less its deep copy
        of the infos: every info here is a dict built from this step's message, shared with
        nothing, and the copy was a quarter of this process's cost per step (``cProfile``)."""
        for i, env in enumerate(self.envs):
            obs, self.buf_rews[i], terminated, truncated, info = env.step(self.actions[i])
            self.buf_dones[i] = terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            if self.buf_dones[i]:
                info["terminal_observation"] = obs
                obs, self.reset_infos[i] = env.reset()
            self.buf_infos[i] = info
            self._save_obs(i, obs)
        return (
            self._obs_from_buf(),
            self.buf_rews.copy(),
            self.buf_dones.copy(),
            list(self.buf_infos),
        )

    def _receive_step(self, k: int, span: range) -> None:
        if (failed := self._failed[k]) is not None:
            raise failed
        worker = self.workers[k]
        header = _reply((reply := worker.receive(self.call_timeout_s))[0])
        arrays = reply[1]
        n, shape = len(span), self._obs_shape
        (obs, after), flags = _check_arrays(arrays, [(2, n, *shape), (3, n)], infos=True)[:2]
        rewards, terminated, truncated = _check_flags(flags)
        infos, reset_infos = _step_infos(worker, header, arrays, n)
        rewards_, terminated_, truncated_ = (
            rewards.tolist(), (terminated != 0).tolist(), (truncated != 0).tolist()
        )  # fmt: skip
        for j, i in enumerate(span):
            slot = self.slots[i]
            slot.pending_step = (obs[j], rewards_[j], terminated_[j], truncated_[j], infos[j])
            if (reset_info := reset_infos[j]) is not None:
                slot.pending_reset = (after[j], reset_info)
            slot.last_obs = after[j]

    def _replace(self, k: int, finding: Finding) -> None:
        """Replace failed worker ``k``; this step ends every episode of its copies with a
        failed reward call (the other workers' copies step on)."""
        span = self.spans[k]
        self.workers[k].kill()
        self._lost_counts[str(finding)] += len(span)
        self.workers[k] = self._start(span)
        seed = 7919 * len(self.replacements.at) + self.replacements.steps
        self._reset_workers([seed + i for i in range(self.num_envs)], [k])
        for i in span:
            slot = self.slots[i]
            assert slot.pending_reset is not None
            reset_obs = slot.pending_reset[0]
            terminal = slot.last_obs if slot.last_obs is not None else reset_obs
            slot.pending_step = (
                terminal,
                0.0,
                False,
                True,
                {"reward/error": 1.0, "is_success": False},
            )
            slot.last_obs = reset_obs

    def _error_counts_of(self, worker: Worker) -> dict[str, int]:
        if not worker.alive:
            return {}
        header, _ = worker.request({"op": "errors"}, [], self.call_timeout_s)
        counts = header.get("counts", {})
        return (
            {str(k)[:600]: int(v) for k, v in counts.items() if isinstance(v, int)}
            if isinstance(counts, dict)
            else {}
        )

    @property
    def error_counts(self) -> dict[str, int]:
        """Failed reward calls by finding, over every worker this env had."""
        counts = Counter(self._lost_counts)
        for worker in self.workers:
            with contextlib.suppress(WorkerFailure):
                counts.update(self._error_counts_of(worker))
        return dict(counts)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "error_counts":  # counted once (on the first copy), as CoreVecEnv does
            counts = self.error_counts
            return [counts if i == 0 else {} for i in self._get_indices(indices)]
        return super().get_attr(attr_name, indices)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        super().close()


class ConfinedCoreVecEnv(VecEnv):
    """The batched rollout core (``backend`` ``native`` or ``mjx``) with ``program``'s reward,
    built by its factory inside one confined worker (see the module docstring)."""

    def __init__(
        self,
        task: TaskSpec,
        program: RewardProgram,
        config: dict[str, Any],
        *,
        call_timeout_s: float | None = None,
        memory_mb: int = 0,
    ) -> None:
        self.init = {
            "kind": "core",
            "task": task.to_dict(),
            "program": program.to_message(),
            "config": config,
            "memory_mb": memory_mb,
        }
        self.call_timeout_s = CALL_TIMEOUT_S if call_timeout_s is None else call_timeout_s
        self.worker = Worker(self.init)
        self.wall = self.worker.ready.get("wall", {})
        obs_space, act_space = (
            _space(self.worker.ready["observation_space"]),
            _space(self.worker.ready["action_space"]),
        )
        self.replacements = _Replacements()
        self._lost_counts: Counter[str] = Counter()
        self._actions: np.ndarray | None = None
        self._last_obs: np.ndarray | None = None
        self.render_mode = None
        self._obs_shape = obs_space.shape
        super().__init__(int(config["num_worlds"]), obs_space, act_space)

    def reset(self) -> VecEnvObs:
        seeds = [None if s is None else int(s) for s in self._seeds]
        header, arrays = self.worker.request(
            {"op": "reset", "seeds": seeds}, [], self.call_timeout_s
        )
        _reply(header)
        (obs,) = _check_arrays(arrays, [(self.num_envs, *self._obs_shape)])
        self._reset_seeds()
        self._last_obs = obs
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        assert self._actions is not None
        self.replacements.steps += 1
        n, shape = self.num_envs, self._obs_shape
        try:
            header, arrays = self.worker.request(
                {"op": "step"}, [self._actions], self.call_timeout_s
            )
            _reply(header)
            (obs, terminal), flags = _check_arrays(arrays, [(2, n, *shape), (2, n)], infos=True)[:2]
            rewards, dones = _check_flags(flags)
            done = dones != 0
            infos = _infos(self.worker, header, arrays[2:], n)
        except WorkerFailure as exc:
            return self._replace(exc.finding)
        for i in np.flatnonzero(done).tolist():
            infos[i]["terminal_observation"] = terminal[i]
        self._last_obs = obs
        return obs, rewards.astype(np.float32), done, infos

    def _replace(self, finding: Finding) -> VecEnvStepReturn:
        self.worker.kill()
        self._lost_counts[str(finding)] += self.num_envs
        self.replacements.record(finding)
        self.worker = Worker(self.init)
        seed = 7919 * len(self.replacements.at) + self.replacements.steps
        self.seed(seed)
        terminal = self._last_obs
        obs = np.asarray(self.reset())
        infos: list[dict[str, Any]] = [
            {"reward/error": 1.0, "TimeLimit.truncated": True, "is_success": False,
             "terminal_observation": terminal[i] if terminal is not None else obs[i]}
            for i in range(self.num_envs)
        ]  # fmt: skip
        return (
            obs,
            np.zeros(self.num_envs, dtype=np.float32),
            np.ones(self.num_envs, dtype=bool),
            infos,
        )

    @property
    def error_counts(self) -> dict[str, int]:
        counts = Counter(self._lost_counts)
        try:
            header, _ = self.worker.request({"op": "errors"}, [], self.call_timeout_s)
            raw = header.get("counts", {})
            if isinstance(raw, dict):
                counts.update({str(k)[:600]: int(v) for k, v in raw.items() if isinstance(v, int)})
        except WorkerFailure:
            pass
        return dict(counts)

    def close(self) -> None:
        self.worker.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        idx = list(self._get_indices(indices))
        if attr_name == "error_counts":
            counts = self.error_counts
            return [counts if i == 0 else {} for i in idx]
        if attr_name == "render_mode":
            return [None for _ in idx]
        if attr_name == "rollout_report":  # what the core ran, as the worker reports it
            header, _ = self.worker.request({"op": "report"}, [], self.call_timeout_s)
            report = _reply(header).get("report")
            if not isinstance(report, dict):
                raise WorkerFailure(
                    Finding("runtime", "the reward worker sent a malformed rollout report")
                )
            return [{**report, "confined": True} for _ in idx]
        raise AttributeError(f"{attr_name!r} is not available from a confined rollout core")

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError("a confined rollout core has no settable attributes")

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        raise AttributeError(f"{method_name!r} cannot be called on a confined rollout core")

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


class ConfinedReward(RewardWrapper):
    """``program``'s reward for a trusted ``env``, computed in a confined worker whose copy of
    the environment replays this one's resets and actions (see the module docstring).

    ``errors``/``error_counts`` and ``info["reward/<name>"]``/``info["reward/error"]`` are as
    :class:`~rewardlab.wrappers.ProgramReward` gives them; ``info["reward/env"]`` is the
    trusted environment's own reward.
    """

    def __init__(
        self,
        env: gym.Env,
        task: TaskSpec,
        program: RewardProgram,
        *,
        max_error_rate: float = 0.05,
        call_timeout_s: float | None = None,
        memory_mb: int = WORKER_MEMORY_MB,
    ) -> None:
        super().__init__(env)
        self.init = {"kind": "envs", "task": task.to_dict(), "program": program.to_message(),
                     "n": 1, "max_error_rate": max_error_rate, "memory_mb": memory_mb}  # fmt: skip
        self.call_timeout_s = CALL_TIMEOUT_S if call_timeout_s is None else call_timeout_s
        self.worker: Worker | None = Worker(self.init)
        self.warnings = program.warnings
        self._seeder = np.random.default_rng()
        self._episode: tuple[int, Any] | None = None
        self._actions: list[np.ndarray] = []

    # ------------------------------------------------------------------ worker

    def _worker(self) -> Worker:
        if self.worker is None or not self.worker.alive:
            self.worker = Worker(self.init)
            if self._episode is not None:  # bring the new copy to where the trusted env is
                seed, options = self._episode
                self.worker.request({"op": "reset", "seeds": [seed]}, [], self.call_timeout_s)
                for action in self._actions:
                    self.worker.request(
                        {"op": "step", "auto_reset": False}, [action[None]], self.call_timeout_s
                    )
        return self.worker

    def _fail(self, finding: Finding) -> None:
        """A failed call that was not the program's doing alone: count it, replace the worker."""
        key = str(finding)
        self.errors.setdefault(key, finding)
        self.error_counts[key] += 1
        if self.worker is not None:
            self.worker.kill()
            self.worker = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is None:  # both copies must start from the same state: always pass a seed
            seed = int(self._seeder.integers(2**31 - 1))
        obs, info = self.env.reset(seed=seed, options=options)
        self._episode, self._actions = (seed, options), []
        try:
            header, arrays = self._worker().request(
                {"op": "reset", "seeds": [seed]}, [], self.call_timeout_s
            )
            _reply(header)
            if len(arrays) != 3 or not np.array_equal(arrays[0][0], np.asarray(obs)):
                self._fail(
                    Finding(
                        "runtime",
                        "the reward worker's copy of the environment reset to another state",
                    )
                )
        except WorkerFailure as exc:
            self._fail(exc.finding)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        action = np.asarray(action)
        try:
            worker = self._worker()
            worker.send({"op": "step", "auto_reset": False}, [action[None]])
        except WorkerFailure as exc:
            self._fail(exc.finding)
            worker = None
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        self._actions.append(action.copy())
        info["reward/env"] = float(env_reward)
        reward, failed = 0.0, True
        if worker is not None:
            try:
                header, arrays = worker.receive(self.call_timeout_s)
                _reply(header)
                w_obs, w_reward = arrays[0][0][0], float(_check_flags(arrays[1])[0][0])
                (w_info,), _ = _step_infos(worker, header, arrays, 1)
            except WorkerFailure as exc:
                self._fail(exc.finding)
            except (IndexError, ValueError):
                self._fail(Finding("runtime", "the reward worker sent a malformed reply"))
            else:
                if not np.array_equal(w_obs, np.asarray(obs)):
                    self._fail(Finding("runtime", "the reward worker's copy of the environment diverged from "
                                       "the trusted one (tampered with, or a non-deterministic simulator)"))  # fmt: skip
                elif w_info.get("reward/error"):
                    self._count(header.get("errors"), header.get("findings"))
                else:
                    reward, failed = w_reward, False
                    for key, value in w_info.items():
                        if (
                            key.startswith("reward/")
                            and key not in ("reward/env", "reward/error")
                            and isinstance(value, (int, float))
                        ):
                            info[key] = float(value)
        if failed:
            info["reward/error"] = 1.0
        return obs, reward, terminated, truncated, info

    def _count(self, keys: Any, findings: Any) -> None:
        """Record the worker's finding for this step (as ProgramReward records its own)."""
        key = (
            keys[0]
            if isinstance(keys, list) and keys and isinstance(keys[0], str)
            else "reward program failed"
        )
        raw = findings.get(key) if isinstance(findings, dict) else None
        key = key[:600]
        self.errors.setdefault(key, _finding(raw) if raw is not None else Finding("runtime", key))
        self.error_counts[key] += 1

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None
        super().close()


def program_env(
    task: TaskSpec,
    program: RewardProgram | None,
    *,
    render_mode: str | None = None,
    max_error_rate: float = 0.05,
    **make_kwargs: Any,
) -> gym.Env:
    """``task``'s environment (success metric, rendering: all in this process) with the reward
    of ``program`` (vetted and compiled here, run only in a confined worker:
    :class:`ConfinedReward`); ``None`` keeps the benchmark's own reward."""
    env = make_env(task, render_mode=render_mode, **make_kwargs)
    if program is None:
        return env
    return ConfinedReward(env, task, program, max_error_rate=max_error_rate)
