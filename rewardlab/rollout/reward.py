"""Batched reward evaluation: one sandboxed program call for all worlds, or per world.

:class:`BatchedReward` decides, on the first states it sees, how to run a program:

``batched``
    the program's own source over :class:`~rewardlab.rollout.batch.BatchValue` inputs
    (proxy leaves, ``action``, ``obs``), which apply every operation per world or refuse it;
``lifted``
    the :func:`~rewardlab.rollout.lift.lift_source` rewrite of it (``min``/``max``,
    conditional expressions, ``math.*``, ``float``, array literals made elementwise);
``per_world``
    the original program once per world with scalar proxies -- exactly what
    :class:`rewardlab.wrappers.ProgramReward` does.

Why a batched call computes what the program says, world by world:

* batch values never mix worlds: reductions, ``len``, iteration and indexing act on the
  per-world axes, and anything value-dependent (``if`` on a value, ``float``, ``math.*``)
  raises :class:`~rewardlab.rollout.batch.NotBatchable`;
* a program with ``try`` is never batched (its ``except`` clauses catch one world's error);
* the call runs with numpy's floating-point errors raising: where one world's value would
  raise per world (``math.sqrt`` of a negative number, a division by zero) the whole step
  is evaluated per world instead;
* rows whose output is not finite or too large are re-evaluated per world with the original
  program, so failures (and their findings) are exactly the per-world ones;
* a batched mode is adopted only if it equals the per-world output on every world of the
  first states, and every ``verify_every`` batched calls (default: every call) one random
  world is re-checked against a per-world call; a mismatch evaluates that step per world and
  switches to per-world for good;
* when more than half of the last 100 batched steps fell back to per world (a lifted
  conditional whose untaken branch keeps raising floating-point errors), batched evaluation
  is given up: per world is then cheaper. The reason is recorded.

Every decision is counted in :class:`BatchReport` (``to_dict`` is what the core writes to
``rollout.json``). Per world, an output that is not finite, exceeds ``max_abs`` or has a
non-finite component is a failed call: reward 0, no components, ``error`` set, as
:class:`ProgramReward` does.

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
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rewardlab.reward.program import (
    RewardProgram,
    RewardProgramError,
    RewardRuntimeError,
    _traceback_line,
    component_name_problem,
)
from rewardlab.reward.sandbox import BudgetExceeded, Finding
from rewardlab.rollout.batch import BatchValue, BatchView, NotBatchable
from rewardlab.rollout.lift import has_try, lift_source

MODES = ("auto", "batched", "lifted", "per_world")

TRY_REASON = "the program has try/except (it catches errors of single worlds): evaluated per world"

RTOL = 1e-6
ATOL = 1e-6
"""A batched reward equals the per-world one when within this (float32 resolution of an O(1)
reward; the learner sees rewards as float32)."""

DECIDE_TRIES = 20
"""Steps over which the decision is retried while the batched call meets floating-point
errors (which depend on the states, not on the program's structure)."""

FALLBACK_WINDOW = 100
"""Batched calls over which whole-step fallbacks are counted ..."""
FALLBACK_LIMIT = 0.5
"""... and the fraction above which batched evaluation is given up (per world is cheaper)."""


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
    """How a program is evaluated, why, and how often each safeguard acted."""

    mode: str = "undecided"
    reasons: dict[str, str] = field(default_factory=dict)
    """Mode that was tried and rejected (or given up) -> why."""
    lift_changes: list[str] = field(default_factory=list)
    lifted_source: str | None = None
    calls: int = 0
    """Evaluations (one per core step)."""
    batched_calls: int = 0
    """Steps on which the batched program was called (after the decision)."""
    fallback_steps: int = 0
    """Steps on which the batched call raised and every world was evaluated per world."""
    fallback_reasons: Counter[str] = field(default_factory=Counter)
    """Why those steps fell back (first line of the error) -> count."""
    rows_reevaluated: int = 0
    """World-steps whose batched output was not finite or too large, re-evaluated per world."""
    per_world_calls: int = 0
    """Calls of the original program on one world (fallbacks, re-evaluations, checks and
    per-world mode)."""
    verifications: int = 0
    """Random-world re-checks of a batched output against a per-world call."""
    seconds: float = 0.0
    """Wall time spent in reward evaluation."""

    def summary(self) -> str:
        why = "; ".join(f"{m}: {r}" for m, r in self.reasons.items())
        lift = f" (lift: {', '.join(self.lift_changes)})" if self.mode == "lifted" else ""
        counts = ""
        if self.batched_calls:
            counts = (
                f"; {self.fallback_steps} of {self.batched_calls} batched steps fell back to per world, "
                f"{self.rows_reevaluated} world-steps re-evaluated, {self.verifications} re-checks"
            )
        return (
            f"reward evaluation: {self.mode}{lift}" + (f" [rejected {why}]" if why else "") + counts
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (what ``rollout.json`` holds under ``reward``)."""
        return {
            "mode": self.mode, "reasons": dict(self.reasons), "lift_changes": list(self.lift_changes),
            "calls": self.calls, "batched_calls": self.batched_calls,
            "fallback_steps": self.fallback_steps, "fallback_reasons": dict(self.fallback_reasons),
            "rows_reevaluated": self.rows_reevaluated, "per_world_calls": self.per_world_calls,
            "verifications": self.verifications, "seconds": round(self.seconds, 3),
        }  # fmt: skip


def _raw_call(program: RewardProgram, me: Any, action: Any, obs: Any) -> Any:
    """Call the compiled entry point with a fresh budget; errors become RewardRuntimeError
    (:class:`NotBatchable` passes through)."""
    program.budget.reset()
    fn = program.entry
    try:
        return fn(me, action, obs) if program.takes_obs else fn(me, action)
    except BudgetExceeded as exc:
        raise RewardRuntimeError(Finding("timeout", str(exc), program.budget.line)) from None
    except NotBatchable as exc:
        line = _traceback_line(exc)
        raise NotBatchable(f"line {line}: {exc}" if line else str(exc)) from None
    except Exception as exc:
        raise RewardRuntimeError(
            Finding("runtime", f"{type(exc).__name__}: {exc}", _traceback_line(exc))
        ) from None


def _as_batch(value: Any, n: int, what: str) -> np.ndarray:
    """A per-world number of every world as ``(N,)`` float64, or :class:`NotBatchable`."""
    if isinstance(value, BatchValue):
        arr = value.values()
        if arr.shape[1:] not in ((), (1,)):
            raise NotBatchable(f"{what} has per-world shape {arr.shape[1:]}, not a number")
        return arr.reshape(n).astype(np.float64)
    try:  # float(10**400) raises OverflowError: per world, that is an output finding
        if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
            return np.full(n, float(value))
        if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "biuf":
            return np.full(n, float(value.reshape(())))
    except (OverflowError, TypeError, ValueError) as exc:
        raise NotBatchable(f"{what}: {type(exc).__name__}") from None
    raise NotBatchable(f"{what} is a {type(value).__name__}, not a number per world")


def split_output(out: Any, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(reward (N,), {name: (N,)})`` from a batched program output (number or tuple)."""
    if type(out) is tuple:
        if len(out) != 2 or not isinstance(out[1], dict):
            raise NotBatchable("a tuple return must be (reward, {name: value})")
        comps = {}
        for name, value in out[1].items():
            problem = component_name_problem(name)  # the per-world call then reports it
            if problem:
                raise NotBatchable(problem)
            comps[name] = _as_batch(value, n, f"component {name!r}")
        return _as_batch(out[0], n, "reward"), comps
    return _as_batch(out, n, "reward"), {}


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


class BatchedReward:
    """Evaluate a compiled :class:`RewardProgram` over N worlds (see the module docstring).

    Args:
        program: the compiled program (``rewardlab.wrappers.compile_for_task``).
        mode: ``auto`` (decide on the first call), or force ``batched``/``lifted``/``per_world``.
        compile_lifted: compiles lifted source with the task's checks (defaults to
            :meth:`RewardProgram.compile` with the program's budget).
        verify_every: re-check one random world against a per-world call every this many
            batched calls (0 = never).
        seed: seed of the choice of re-checked worlds.
    """

    def __init__(
        self,
        program: RewardProgram,
        *,
        mode: str = "auto",
        compile_lifted: Any = None,
        verify_every: int = 1,
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
        self._decide_tries = 0
        self._recent_fallbacks: deque[bool] = deque(maxlen=FALLBACK_WINDOW)
        self._rng = np.random.default_rng(seed)
        self.error_counts: Counter[str] = Counter()
        self.errors: dict[str, Finding] = {}

    @property
    def mode(self) -> str:
        return self.report.mode

    # ------------------------------------------------------------------ evaluation paths

    def per_world(
        self,
        worlds: Sequence[Any],
        action: np.ndarray,
        obs: np.ndarray | None,
        rows: Sequence[int] | None = None,
    ) -> RewardBatch:
        """The original program once per world (scalar proxies), as ``ProgramReward``; only
        on ``rows`` if given (the others are left as failed)."""
        n = len(worlds)
        reward = np.zeros(n)
        error = np.zeros(n, dtype=bool) if rows is None else np.ones(n, dtype=bool)
        comps: dict[str, np.ndarray] = {}
        findings: dict[int, Finding] = {}
        for i in range(n) if rows is None else rows:
            self.report.per_world_calls += 1
            try:
                r, c = self.program(worlds[i], action[i], None if obs is None else obs[i])
            except RewardRuntimeError as exc:
                error[i], findings[i] = True, exc.finding
                continue
            error[i] = False
            reward[i] = r
            for name, value in c.items():
                if name not in comps:
                    comps[name] = np.zeros(n)
                comps[name][i] = value
        return RewardBatch(reward, comps, error, findings)

    def _batched(
        self, program: RewardProgram, me: Any, action: np.ndarray, obs: np.ndarray | None
    ) -> RewardBatch:
        """One call of ``program`` over batch values; rows that are not finite or too large
        are marked failed (the caller re-evaluates them per world). Raises
        :class:`NotBatchable` or :class:`RewardRuntimeError` when the call itself fails."""
        n = action.shape[0]
        with np.errstate(divide="raise", over="raise", invalid="raise", under="ignore"):
            out = _raw_call(
                program,
                BatchView(me),
                BatchValue(np.array(action)),
                None if obs is None else BatchValue(np.array(obs)),
            )
        reward, comps = split_output(out, n)
        bad = ~np.isfinite(reward) | (np.abs(reward) > program.max_abs)
        for value in comps.values():
            bad |= ~np.isfinite(value)
        if bad.any():
            reward = np.where(bad, 0.0, reward)
            comps = {k: np.where(bad, 0.0, v) for k, v in comps.items()}
        return RewardBatch(reward, comps, bad)

    def _repair(
        self, out: RewardBatch, worlds: Sequence[Any], action: np.ndarray, obs: np.ndarray | None
    ) -> RewardBatch:
        """Re-evaluate the failed rows of a batched output per world with the original program."""
        rows = np.flatnonzero(out.error).tolist()
        if not rows:
            return out
        self.report.rows_reevaluated += len(rows)
        fix = self.per_world(worlds, action, obs, rows=rows)
        n = len(worlds)
        for name in fix.components.keys() | out.components.keys():
            column = out.components.get(name)
            if column is None:
                column = out.components[name] = np.zeros(n)
            column[rows] = fix.components[name][rows] if name in fix.components else 0.0
        out.reward[rows] = fix.reward[rows]
        out.error[rows] = fix.error[rows]
        out.findings.update(fix.findings)
        return out

    # ------------------------------------------------------------------ deciding

    @staticmethod
    def _agrees(got: RewardBatch, want: RewardBatch, rows: np.ndarray) -> str | None:
        ok = rows & ~want.error & ~got.error
        if not np.allclose(got.reward[ok], want.reward[ok], rtol=RTOL, atol=ATOL):
            worst = int(np.flatnonzero(ok)[np.argmax(np.abs(got.reward[ok] - want.reward[ok]))])
            return (
                f"batched reward differs from per-world evaluation (world {worst}: "
                f"{got.reward[worst]:.6g} vs {want.reward[worst]:.6g})"
            )
        if ok.any() and set(got.components) != set(want.components):
            return f"component names differ: {sorted(got.components)} vs {sorted(want.components)}"
        for name, value in want.components.items():
            if not np.allclose(got.components[name][ok], value[ok], rtol=RTOL, atol=ATOL):
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
    ) -> bool | None:
        """Whether ``mode`` computes the per-world output ``want``; ``None``: undecided (a
        floating-point error on these states)."""
        try:
            got = self._batched(program, me, action, obs)
        except RewardRuntimeError as exc:
            self.report.reasons[mode] = str(exc.finding)
            if "FloatingPointError" in exc.finding.message and self._decide_tries < DECIDE_TRIES:
                return None
            return False
        except NotBatchable as exc:
            self.report.reasons[mode] = str(exc)
            return False
        problem = self._agrees(got, want, np.ones(len(got.reward), dtype=bool))
        if problem:
            self.report.reasons[mode] = problem
            return False
        return True

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
        if self.requested != "per_world" and has_try(self.program.source):
            self.report.reasons.update(batched=TRY_REASON, lifted=TRY_REASON)
            if self.requested != "auto":
                raise ValueError(
                    f"reward program cannot run in mode {self.requested!r}: {TRY_REASON}"
                )
            self.report.mode = "per_world"
            return want
        if want.error.all():  # nothing to compare against yet: decide on a later step
            return want
        self._decide_tries += 1
        order = ["batched", "lifted"] if self.requested == "auto" else [self.requested]
        for mode in order:
            if mode == "per_world":
                break
            program = self.program if mode == "batched" else self._lifted_program()
            if program is None:
                continue
            verdict = self._try(mode, program, me, want, action, obs)
            if verdict is None:  # try again on the next states
                return want
            if verdict:
                self.report.reasons.pop(mode, None)
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
        self.report.batched_calls += 1
        try:
            out = self._batched(program, me, action, obs)
        except (RewardRuntimeError, NotBatchable) as exc:
            self._fell_back(str(exc.finding) if isinstance(exc, RewardRuntimeError) else str(exc))
            return self.per_world(worlds, action, obs)
        self._recent_fallbacks.append(False)
        out = self._repair(out, worlds, action, obs)
        self._since_verify += 1
        if self.verify_every and self._since_verify >= self.verify_every:
            self._since_verify = 0
            problem = self._verify(out, worlds, action, obs)
            if problem:
                self.report.reasons[self.report.mode] = f"re-check failed: {problem}"
                self.report.mode, self._active = "per_world", None
                return self.per_world(worlds, action, obs)
        return out

    def _fell_back(self, reason: str) -> None:
        self.report.fallback_steps += 1
        self.report.fallback_reasons[_first_line(reason)] += 1
        self._recent_fallbacks.append(True)
        recent = self._recent_fallbacks
        if len(recent) == recent.maxlen and sum(recent) > FALLBACK_LIMIT * len(recent):
            top = self.report.fallback_reasons.most_common(1)[0][0]
            self.report.reasons[self.report.mode] = (
                f"given up: {sum(recent)} of the last {len(recent)} batched steps fell back to "
                f"per world (mostly: {top})"
            )
            self.report.mode, self._active = "per_world", None

    def _verify(
        self, out: RewardBatch, worlds: Sequence[Any], action: np.ndarray, obs: np.ndarray | None
    ) -> str | None:
        """Compare one random world of ``out`` with a per-world call; the problem or None."""
        self.report.verifications += 1
        n = len(worlds)
        i = int(self._rng.integers(n))
        rows = np.zeros(n, dtype=bool)
        rows[i] = True
        want = self.per_world(worlds, action, obs, rows=[i])
        if want.error[i] != out.error[i]:
            return f"world {i} failed on one path only"
        return self._agrees(out, want, rows)
