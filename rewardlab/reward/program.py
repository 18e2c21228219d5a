"""Reward programs: untrusted source text turned into a safe, callable reward.

A reward program defines ``compute_dense_reward(self, action)`` (Text2Reward) or
``compute_dense_reward(self, action, obs)`` (its MetaWorld variant) and returns either a float
or ``(reward, {component_name: value})`` (Eureka style).

Example:
    >>> program = RewardProgram.compile('''
    ... import numpy as np
    ... def compute_dense_reward(self, action):
    ...     speed = self.robot.v
    ...     return speed - 0.1 * float(np.sum(np.square(action))), {"speed": speed}
    ... ''')
    >>> from types import SimpleNamespace
    >>> me = SimpleNamespace(robot=SimpleNamespace(v=2.0))
    >>> program(me, [1.0, 1.0], None)
    (1.8, {'speed': 2.0})
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from rewardlab.reward.sandbox import (
    DEFAULT_SECONDS,
    DEFAULT_TICKS,
    Budget,
    BudgetExceeded,
    Finding,
    instrument,
    sandbox_globals,
    vet,
)

if TYPE_CHECKING:
    from rewardlab.tasks.registry import TaskSpec

ENTRY = "compute_dense_reward"
MAX_ABS_REWARD = 1e4
"""Largest per-step reward magnitude accepted as sane."""


class RewardProgramError(Exception):
    """A reward program was rejected; ``findings`` says what was wrong and where."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__("reward program rejected:\n" + "\n".join(f"  {f}" for f in findings))


class RewardRuntimeError(Exception):
    """A reward program failed on one call; carries the :class:`Finding`."""

    def __init__(self, finding: Finding) -> None:
        self.finding = finding
        super().__init__(str(finding))


def _scalar(value: Any, what: str) -> float:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1:
        return float(value.reshape(()))
    raise TypeError(f"{what} must be a number, got {type(value).__name__}")


def _traceback_line(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<reward>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@dataclass
class RewardProgram:
    """A vetted, instrumented, compiled reward program. Call it as ``program(me, action, obs)``.

    Attributes:
        source: the program text, unchanged.
        takes_obs: whether the entry function takes ``obs`` as its third argument.
        max_abs: per-step magnitude above which an output is rejected as insane.
    """

    source: str
    takes_obs: bool
    budget: Budget
    max_abs: float = MAX_ABS_REWARD
    warnings: list[Finding] = field(default_factory=list)
    """What the vetting noted without rejecting the program (unused imports)."""
    _fn: Any = field(default=None, repr=False)
    _code: Any = field(default=None, repr=False)
    """The vetted, instrumented code object (what :meth:`fresh` runs again)."""

    @classmethod
    def compile(
        cls,
        source: str,
        *,
        self_paths: set[str] | None = None,
        self_leaves: set[str] | None = None,
        ticks: int = DEFAULT_TICKS,
        seconds: float = DEFAULT_SECONDS,
        max_abs: float = MAX_ABS_REWARD,
    ) -> RewardProgram:
        """Vet, instrument and compile ``source``; raise :class:`RewardProgramError` if rejected.

        ``self_paths``/``self_leaves`` (from an environment card) enable the check that every
        ``self.`` attribute the program reads exists; ``ticks`` and ``seconds`` are the per-call
        budget.
        """
        vetting = vet(source, entry=ENTRY, self_paths=self_paths, self_leaves=self_leaves)
        tree = vetting.tree
        if vetting.findings or tree is None:
            raise RewardProgramError(vetting.findings)
        budget = Budget(ticks, seconds)
        namespace = sandbox_globals(budget)
        try:
            code = compile(instrument(tree), "<reward>", "exec")
        except SyntaxError as exc:  # found by the compiler only, e.g. 'return' outside function
            raise RewardProgramError([Finding("syntax", str(exc.msg), exc.lineno)]) from None
        try:
            exec(code, namespace)  # noqa: S102 - vetted, instrumented, restricted globals
        except BudgetExceeded as exc:
            raise RewardProgramError([Finding("timeout", str(exc), budget.line)]) from None
        except Exception as exc:  # module-level code failed (e.g. bad constant expression)
            raise RewardProgramError(
                [Finding("compile", f"{type(exc).__name__}: {exc}", _traceback_line(exc))]
            ) from None
        fn = namespace[ENTRY]
        takes_obs = fn.__code__.co_argcount == 3
        return cls(
            source=source, takes_obs=takes_obs, budget=budget, max_abs=max_abs,
            warnings=vetting.warnings, _fn=fn, _code=code,
        )  # fmt: skip

    def fresh(self) -> RewardProgram:
        """The same program with its own module state and budget: the code vetted and
        instrumented once by :meth:`compile` runs again in fresh sandbox globals (nothing is
        parsed or vetted again). One per environment copy, so a program that keeps values at
        module level never shares them between environments.

        Example:
            >>> p = RewardProgram.compile("def compute_dense_reward(self, action):\\n    return 1.0\\n")
            >>> q = p.fresh()
            >>> q is not p and q.source == p.source and q(None, None) == (1.0, {})
            True
        """
        budget = Budget(self.budget.limit, self.budget.seconds)
        namespace = sandbox_globals(budget)
        exec(self._code, namespace)  # noqa: S102 - vetted and instrumented by compile()
        return replace(self, budget=budget, _fn=namespace[ENTRY])

    @property
    def digest(self) -> str:
        """Short content hash of the source (names reward versions)."""
        return hashlib.sha256(self.source.encode()).hexdigest()[:12]

    def __call__(self, me: Any, action: Any, obs: Any = None) -> tuple[float, dict[str, float]]:
        """Evaluate on one state; return ``(reward, components)``.

        Raises:
            RewardRuntimeError: the program raised, ran over budget, or returned something
                that is not a finite, sane number (the finding says which and where).
        """
        # The program gets private copies: writing into obs must not change what the agent sees.
        if self.takes_obs and isinstance(obs, np.ndarray):
            obs = obs.copy()
        if isinstance(action, np.ndarray):
            action = action.copy()
        self.budget.reset()
        try:
            out = self._fn(me, action, obs) if self.takes_obs else self._fn(me, action)
        except BudgetExceeded as exc:
            raise RewardRuntimeError(Finding("timeout", str(exc), self.budget.line)) from None
        except MemoryError as exc:
            raise RewardRuntimeError(
                Finding("runtime", "MemoryError: the program allocated too much memory", _traceback_line(exc))
            ) from None
        except RecursionError as exc:
            raise RewardRuntimeError(Finding("runtime", f"RecursionError: {exc}", _traceback_line(exc))) from None
        except Exception as exc:
            raise RewardRuntimeError(
                Finding("runtime", f"{type(exc).__name__}: {exc}", _traceback_line(exc))
            ) from None
        return self._validate(out)

    def _validate(self, out: Any) -> tuple[float, dict[str, float]]:
        # Fast path first: plain floats (the common case) need no conversion.
        try:
            if type(out) is tuple:
                if len(out) != 2 or not isinstance(out[1], dict):
                    raise TypeError("a tuple return must be (reward, {name: value})")
                reward = out[0] if type(out[0]) is float else _scalar(out[0], "reward")
                components = out[1]
                if not all(type(v) is float and type(k) is str for k, v in components.items()):
                    components = {_name(k): _scalar(v, f"component {k!r}") for k, v in components.items()}
            else:
                reward = out if type(out) is float else _scalar(out, "reward")
                components = {}
        except (TypeError, ValueError) as exc:
            raise RewardRuntimeError(Finding("output", str(exc))) from None
        if not (reward - reward == 0.0):  # NaN or +-inf
            raise RewardRuntimeError(Finding("output", f"reward is not finite ({reward})"))
        if abs(reward) > self.max_abs:
            raise RewardRuntimeError(
                Finding("output", f"reward magnitude {reward:.3g} exceeds {self.max_abs:g} per step")
            )
        for name, value in components.items():
            if not (value - value == 0.0):
                raise RewardRuntimeError(Finding("output", f"component {name!r} is not finite ({value})"))
        return reward, components


def _name(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"component names must be strings, got {key!r}")
    return key


def compile_for_task(source: str, task: TaskSpec, **kwargs: Any) -> RewardProgram:
    """Compile ``source`` with the attribute check against ``task``'s card."""
    from rewardlab.tasks.envs import card_paths

    paths, leaves = card_paths(task)
    return RewardProgram.compile(source, self_paths=paths, self_leaves=leaves, **kwargs)
