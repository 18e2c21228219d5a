"""Batched reward evaluation: one sandboxed program call for all worlds, or per world.

:class:`BatchedReward` decides once, on the first states it sees, how to run a program:

``batched``
    the program's own source over batched proxies (``(N,)`` leaves; ``action`` and ``obs``
    as ``(dim, N)``, batch axis last so ``action[0]`` is every world's first component);
``lifted``
    the :func:`~rewardlab.rollout.lift.lift_source` rewrite of it (``min``/``max``,
    conditional expressions, ``math.*``, ``float``, ``np.dot`` made elementwise);
``per_world``
    the original program once per world with scalar proxies -- exactly what
    :class:`rewardlab.wrappers.ProgramReward` does.

A batched mode is used only if its output has the batch shape and equals the per-world
output of the original program on every world of the probe batch (``rtol=1e-6``); otherwise
the reason is recorded (the exception with its line, e.g. ``ValueError: The truth value of an
array ... is ambiguous`` for an ``if`` on a value, or "differs from per-world evaluation" for a
program that reduces over the batch). Every ``verify_every`` batched calls one random world
is re-checked against a per-world call; a mismatch switches to per-world for good. A batched
call that raises falls back to per-world evaluation for that step, so failures are
attributed to worlds exactly as in the per-world wrapper.

Per world, an output that is not finite, exceeds ``max_abs`` or has a non-finite component is
a failed call: reward 0, no components, ``error`` set, as :class:`ProgramReward` does.

Example:
    >>> import numpy as np
    >>> from types import SimpleNamespace as NS
    >>> from rewardlab.reward import RewardProgram
    >>> prog = RewardProgram.compile('''
    ... import math
    ... def compute_dense_reward(self, action):
    ...     return min(math.cos(self.r.a), 0.5), {"a": self.r.a}
    ... ''')
    >>> batch = NS(r=NS(a=np.array([0.0, 3.0])))
    >>> worlds = [NS(r=NS(a=0.0)), NS(r=NS(a=3.0))]
    >>> ev = BatchedReward(prog)
    >>> out = ev(batch, worlds, np.zeros((2, 1)), None)
    >>> ev.mode, np.round(out.reward, 3).tolist()
    ('lifted', [0.5, -0.99])
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rewardlab.reward.program import (
    RewardProgram,
    RewardProgramError,
    RewardRuntimeError,
    _traceback_line,
)
from rewardlab.reward.sandbox import BudgetExceeded, Finding
from rewardlab.rollout.lift import lift_source

MODES = ("auto", "batched", "lifted", "per_world")


@dataclass
class RewardBatch:
    """One evaluation over all worlds."""

    reward: np.ndarray
    """``(N,)`` float64; 0 where the call failed."""
    components: dict[str, np.ndarray]
    """``name -> (N,)``; 0 where the call failed."""
    error: np.ndarray
    """``(N,)`` bool: the program failed on this world this step."""
    findings: dict[int, Finding] = field(default_factory=dict)
    """World index -> what went wrong (only failed worlds)."""


@dataclass
class BatchReport:
    """How a program is evaluated, and why."""

    mode: str = "undecided"
    reasons: dict[str, str] = field(default_factory=dict)
    """Mode that was tried and rejected -> why."""
    lift_changes: list[str] = field(default_factory=list)
    lifted_source: str | None = None
    fallback_steps: int = 0
    """Steps on which a batched call raised and the step was evaluated per world."""
    verifications: int = 0
    seconds: float = 0.0
    """Wall time spent in reward evaluation."""
    calls: int = 0

    def summary(self) -> str:
        why = "; ".join(f"{m}: {r}" for m, r in self.reasons.items())
        lift = f" (lift: {', '.join(self.lift_changes)})" if self.mode == "lifted" else ""
        return f"reward evaluation: {self.mode}{lift}" + (f" [rejected {why}]" if why else "")


def _raw_call(program: RewardProgram, me: Any, action: Any, obs: Any) -> Any:
    """Call the compiled entry point with a fresh budget; errors become RewardRuntimeError."""
    program.budget.reset()
    fn = program._fn
    try:
        return fn(me, action, obs) if program.takes_obs else fn(me, action)
    except BudgetExceeded as exc:
        raise RewardRuntimeError(Finding("timeout", str(exc), program.budget.line)) from None
    except Exception as exc:
        raise RewardRuntimeError(
            Finding("runtime", f"{type(exc).__name__}: {exc}", _traceback_line(exc))
        ) from None


class NotBatchable(Exception):
    """A batched output does not have the batch shape or the expected structure."""


def _as_batch(value: Any, n: int, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise NotBatchable(f"{what} is not numeric ({type(value).__name__}): {exc}") from None
    if arr.shape == (n,):
        return arr
    if arr.shape == () or arr.shape == (1,):
        return np.full(n, float(arr.reshape(())))
    raise NotBatchable(f"{what} has shape {arr.shape}, expected ({n},) or a scalar")


def split_output(out: Any, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(reward (N,), {name: (N,)})`` from a batched program output (float or tuple)."""
    if isinstance(out, tuple):
        if len(out) != 2 or not isinstance(out[1], dict):
            raise NotBatchable("a tuple return must be (reward, {name: value})")
        comps = {}
        for name, value in out[1].items():
            if not isinstance(name, str):
                raise NotBatchable(f"component names must be strings, got {name!r}")
            comps[name] = _as_batch(value, n, f"component {name!r}")
        return _as_batch(out[0], n, "reward"), comps
    return _as_batch(out, n, "reward"), {}


class BatchedReward:
    """Evaluate a compiled :class:`RewardProgram` over N worlds (see the module docstring).

    Args:
        program: the compiled program (``rewardlab.wrappers.compile_for_task``).
        mode: ``auto`` (decide on the first call), or force ``batched``/``lifted``/``per_world``.
        compile_lifted: compiles lifted source with the task's checks (defaults to
            :meth:`RewardProgram.compile` with the program's budget).
        verify_every: re-check one random world against a per-world call every this many
            batched calls (0 = never).
    """

    def __init__(
        self,
        program: RewardProgram,
        *,
        mode: str = "auto",
        compile_lifted: Any = None,
        verify_every: int = 1000,
        seed: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"reward mode must be one of {MODES}, got {mode!r}")
        self.program = program
        self.requested = mode
        self.report = BatchReport()
        self.verify_every = verify_every
        self._compile = compile_lifted or (
            lambda src: RewardProgram.compile(
                src,
                ticks=program.budget.limit,
                seconds=program.budget.seconds,
                max_abs=program.max_abs,
            )
        )
        self._lifted: RewardProgram | None = None
        self._active: RewardProgram | None = None
        self._since_verify = 0
        self._rng = np.random.default_rng(seed)
        self.error_counts: Counter[str] = Counter()
        self.errors: dict[str, Finding] = {}

    @property
    def mode(self) -> str:
        return self.report.mode

    # ------------------------------------------------------------------ evaluation paths

    def per_world(
        self, worlds: Sequence[Any], action: np.ndarray, obs: np.ndarray | None
    ) -> RewardBatch:
        """The original program once per world (scalar proxies), as ``ProgramReward``."""
        n = len(worlds)
        reward = np.zeros(n)
        error = np.zeros(n, dtype=bool)
        comps: dict[str, np.ndarray] = {}
        findings: dict[int, Finding] = {}
        for i, me in enumerate(worlds):
            try:
                r, c = self.program(me, action[i], None if obs is None else obs[i])
            except RewardRuntimeError as exc:
                error[i], findings[i] = True, exc.finding
                continue
            reward[i] = r
            for name, value in c.items():
                if name not in comps:
                    comps[name] = np.zeros(n)
                comps[name][i] = value
        return RewardBatch(reward, comps, error, findings)

    def _batched(
        self, program: RewardProgram, me: Any, action: np.ndarray, obs: np.ndarray | None
    ) -> RewardBatch:
        n = action.shape[0]
        with np.errstate(all="ignore"):
            out = _raw_call(
                program,
                me,
                np.ascontiguousarray(action.T),
                None if obs is None else np.ascontiguousarray(obs.T),
            )
            reward, comps = split_output(out, n)
        bad = ~np.isfinite(reward) | (np.abs(reward) > program.max_abs)
        for value in comps.values():
            bad |= ~np.isfinite(value)
        findings: dict[int, Finding] = {}
        if bad.any():
            for i in np.flatnonzero(bad).tolist():
                findings[i] = self._finding_for(
                    float(reward[i]), {k: float(v[i]) for k, v in comps.items()}, program.max_abs
                )
            reward = np.where(bad, 0.0, reward)
            comps = {k: np.where(bad, 0.0, v) for k, v in comps.items()}
        return RewardBatch(reward, comps, bad, findings)

    @staticmethod
    def _finding_for(reward: float, comps: dict[str, float], max_abs: float) -> Finding:
        if not np.isfinite(reward):
            return Finding("output", f"reward is not finite ({reward})")
        if abs(reward) > max_abs:
            return Finding("output", f"reward magnitude {reward:.3g} exceeds {max_abs:g} per step")
        name = next(k for k, v in comps.items() if not np.isfinite(v))
        return Finding("output", f"component {name!r} is not finite ({comps[name]})")

    # ------------------------------------------------------------------ deciding

    def _agrees(self, got: RewardBatch, want: RewardBatch, rows: np.ndarray) -> str | None:
        ok = rows & ~want.error
        if (got.error & ok).any():
            return "batched output is not finite where the per-world output is"
        if not np.allclose(got.reward[ok], want.reward[ok], rtol=1e-6, atol=1e-8):
            worst = int(np.flatnonzero(ok)[np.argmax(np.abs(got.reward[ok] - want.reward[ok]))])
            return (
                f"batched reward differs from per-world evaluation (world {worst}: "
                f"{got.reward[worst]:.6g} vs {want.reward[worst]:.6g}); a reduction over the batch?"
            )
        if set(got.components) != set(want.components) and ok.any():
            return f"component names differ: {sorted(got.components)} vs {sorted(want.components)}"
        for name, value in want.components.items():
            if not np.allclose(got.components[name][ok], value[ok], rtol=1e-6, atol=1e-8):
                return f"component {name!r} differs from per-world evaluation"
        return None

    def _try(
        self,
        mode: str,
        program: RewardProgram,
        me: Any,
        want: RewardBatch,
        action: np.ndarray,
        obs: np.ndarray | None,
    ) -> RewardBatch | None:
        try:
            got = self._batched(program, me, action, obs)
        except RewardRuntimeError as exc:
            self.report.reasons[mode] = str(exc.finding)
            return None
        except NotBatchable as exc:
            self.report.reasons[mode] = str(exc)
            return None
        problem = self._agrees(got, want, np.ones(len(got.reward), dtype=bool))
        if problem:
            self.report.reasons[mode] = problem
            return None
        return got

    def _lifted_program(self) -> RewardProgram | None:
        if self._lifted is None:
            try:
                source, changes = lift_source(self.program.source)
            except SyntaxError as exc:
                self.report.reasons["lifted"] = f"cannot parse: {exc}"
                return None
            if not changes:
                self.report.reasons.setdefault("lifted", "nothing to lift")
                return None
            try:
                self._lifted = self._compile(source)
            except RewardProgramError as exc:
                self.report.reasons["lifted"] = f"lifted source rejected: {exc.findings[0]}"
                return None
            self.report.lift_changes, self.report.lifted_source = changes, source
        return self._lifted

    def _decide(
        self, me: Any, worlds: Sequence[Any], action: np.ndarray, obs: np.ndarray | None
    ) -> RewardBatch:
        want = self.per_world(worlds, action, obs)
        if want.error.all():  # nothing to compare against yet: decide on a later step
            return want
        order = ["batched", "lifted"] if self.requested == "auto" else [self.requested]
        for mode in order:
            if mode == "per_world":
                break
            program = self.program if mode == "batched" else self._lifted_program()
            if program is None:
                continue
            if self._try(mode, program, me, want, action, obs) is not None:
                self.report.mode, self._active = mode, program
                return want
        if self.requested not in ("auto", "per_world"):
            raise ValueError(
                f"reward program cannot run in mode {self.requested!r}: {self.report.reasons}"
            )
        self.report.mode = "per_world"
        return want

    # ------------------------------------------------------------------ call

    def __call__(
        self, me: Any, worlds: Sequence[Any], action: np.ndarray, obs: np.ndarray | None
    ) -> RewardBatch:
        """Evaluate on the current state of every world. ``action (N, A)``, ``obs (N, D)``."""
        started = time.perf_counter()
        try:
            out = self._evaluate(me, worlds, action, obs)
        finally:
            self.report.seconds += time.perf_counter() - started
            self.report.calls += 1
        for finding in out.findings.values():
            key = str(finding)
            self.errors.setdefault(key, finding)
            self.error_counts[key] += 1
        return out

    def _evaluate(
        self, me: Any, worlds: Sequence[Any], action: np.ndarray, obs: np.ndarray | None
    ) -> RewardBatch:
        if self.report.mode == "undecided":
            return self._decide(me, worlds, action, obs)
        program = self._active
        if program is None:
            return self.per_world(worlds, action, obs)
        try:
            out = self._batched(program, me, action, obs)
        except (RewardRuntimeError, NotBatchable):
            self.report.fallback_steps += 1
            return self.per_world(worlds, action, obs)
        self._since_verify += 1
        if self.verify_every and self._since_verify >= self.verify_every:
            self._since_verify = 0
            self._verify(out, worlds, action, obs)
        return out

    def _verify(
        self, out: RewardBatch, worlds: Sequence[Any], action: np.ndarray, obs: np.ndarray | None
    ) -> None:
        self.report.verifications += 1
        i = int(self._rng.integers(len(worlds)))
        rows = np.zeros(len(worlds), dtype=bool)
        rows[i] = True
        want = RewardBatch(np.zeros(len(worlds)), {}, np.ones(len(worlds), dtype=bool))
        try:
            r, c = self.program(worlds[i], action[i], None if obs is None else obs[i])
        except RewardRuntimeError:
            return
        want.error[i] = False
        want.reward[i] = r
        want.components = {k: np.full(len(worlds), v) for k, v in c.items()}
        problem = self._agrees(out, want, rows)
        if problem:
            self.report.reasons[self.report.mode] = f"re-check failed: {problem}"
            self.report.mode, self._active = "per_world", None
