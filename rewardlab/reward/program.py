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

import ast
import base64
import builtins
import hashlib
import marshal
import math as math_module
import re
import types
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from rewardlab.reward.facades import Facade, Rotation
from rewardlab.reward.findings import BudgetExceeded, Finding
from rewardlab.reward.instrument import instrument
from rewardlab.reward.limits import DEFAULT_SECONDS, DEFAULT_TICKS, Budget
from rewardlab.reward.sandbox import sandbox_globals
from rewardlab.reward.vetting import vet

if TYPE_CHECKING:
    from rewardlab.tasks.registry import TaskSpec

ENTRY = "compute_dense_reward"
MAX_ABS_REWARD = 1e4
"""Largest per-step reward magnitude accepted as sane."""
RESERVED_COMPONENTS = frozenset({"env", "error"})
"""Component names that would overwrite what the wrappers put next to the components
(``info["reward/env"]``: the benchmark's own reward; ``info["reward/error"]``: a failed call)."""
MAX_COMPONENTS = 64
COMPONENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_ .\-]{0,63}")
"""Component names: letters, digits, ``_``, ``.``, ``-`` and spaces, at most 64 characters
(they become ``reward/<name>`` keys in logs, TensorBoard tags and CSV columns)."""
MAX_MESSAGE = 300
"""Longest message kept from an exception raised by reward code."""


class RewardProgramError(Exception):
    """A reward program was rejected; ``findings`` says what was wrong and where (``warnings``:
    what the vetting noted besides)."""

    def __init__(self, findings: list[Finding], warnings: list[Finding] | None = None) -> None:
        self.findings = findings
        self.warnings = warnings or []
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


def component_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a reward component (``None``: it can). The one check for
    every evaluation path (per call here, batched in :mod:`rewardlab.rollout.reward`)."""
    if type(name) is not str:
        return f"component names must be strings, got {type(name).__name__}"
    if name in RESERVED_COMPONENTS:
        return (
            f"component name {name!r} is reserved (reward/{name} is set by the environment wrapper)"
        )
    if not COMPONENT_NAME.fullmatch(name):
        return (f"component name {name[:40]!r} is not allowed: use letters, digits, '_', '.', '-' "
                "or spaces, at most 64 characters")  # fmt: skip
    return None


def _describe(exc: BaseException) -> str:
    """``"TypeName: message"`` of an exception raised by reward code, message cut short."""
    try:
        text = str(exc)
    except Exception:  # an argument whose str() fails
        text = "(no readable message)"
    text = text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ModuleStateError(Exception):
    """A module-level value that cannot be frozen (it would keep state between calls);
    ``name`` is the module-level name that holds it."""

    name = ""


_IMMUTABLE = (
    int,
    float,
    complex,
    bool,
    str,
    bytes,
    range,
    slice,
    type(None),
    np.generic,
    Facade,
    Rotation,
)


def _frozen(value: Any, where: str, depth: int = 0) -> Any:
    if depth > 32:
        raise ModuleStateError(f"{where} is nested too deeply")
    if isinstance(value, _IMMUTABLE):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v, where, depth + 1) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(_frozen(v, where, depth + 1) for v in value)
    if isinstance(value, (dict, types.MappingProxyType)):
        return types.MappingProxyType({k: _frozen(v, where, depth + 1) for k, v in value.items()})
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise ModuleStateError(f"{where} is an object array")
        frozen = value.copy()
        frozen.flags.writeable = False
        return frozen
    if isinstance(value, types.FunctionType):
        if value.__code__.co_filename == "<reward>":
            _freeze_function(value, where)
        return value
    if callable(value) and not isinstance(value, types.GeneratorType):
        return value  # a facade member (a vetted library function): holds no program state
    raise ModuleStateError(
        f"{where} holds a {type(value).__name__} object, which would keep state between calls"
    )


def _freeze_function(fn: types.FunctionType, where: str) -> None:
    if fn.__defaults__:
        fn.__defaults__ = tuple(
            _frozen(v, f"a default argument of {fn.__name__}") for v in fn.__defaults__
        )
    if fn.__kwdefaults__:
        fn.__kwdefaults__ = {
            k: _frozen(v, f"default {k!r} of {fn.__name__}") for k, v in fn.__kwdefaults__.items()
        }
    for cell in fn.__closure__ or ():
        cell.cell_contents = _frozen(cell.cell_contents, f"a variable {fn.__name__} closes over")


def freeze_module_state(namespace: dict[str, Any]) -> None:
    """Make the program's module-level state immutable, after its module code ran.

    The rule, the same wherever a program runs (gymnasium wrappers, the rollout core's
    batched, lifted and per-world evaluation, the checks): **a program keeps no state between
    calls**. Module-level lists become tuples, dicts read-only mappings, sets frozensets,
    arrays read-only copies; default arguments and closure variables of the program's
    functions are frozen the same way; module-level objects that cannot be frozen (generators,
    iterators such as ``map``/``zip``) are refused with :class:`ModuleStateError`. A call
    that then tries to mutate them (``HISTORY.append(x)``, ``W[0] = 1``) fails like any
    other runtime error, with its line. Variables inside the functions are fresh on every
    call, ``global``/``nonlocal`` and attribute assignment are refused by vetting, and the
    ``self`` proxy is read-only, so nothing carries over from one call (or world, or
    episode) to the next.
    """
    for name, value in list(namespace.items()):
        if name.startswith("__") or name == "__builtins__":
            continue
        try:
            namespace[name] = _frozen(value, f"module-level name {name!r}")
        except ModuleStateError as exc:
            exc.name = name
            raise


def _module_lines(tree: ast.Module) -> dict[str, int]:
    """Line of the top-level statement that binds each module-level name."""
    lines: dict[str, int] = {}
    for stmt in tree.body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                lines.setdefault(node.id, stmt.lineno)
        if isinstance(stmt, ast.FunctionDef):
            lines.setdefault(stmt.name, stmt.lineno)
    return lines


def _entry_arity(tree: ast.Module) -> int:
    """Positional parameters of the module's entry function (0 if it has none)."""
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == ENTRY:
            return len(stmt.args.posonlyargs) + len(stmt.args.args)
    return 0


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

    :meth:`compile` only vets and compiles: no line of the program runs then, so compiling
    in a trusted process is safe. The code runs in :meth:`fresh` (the one place that executes
    generated code; module-level code first), which rewardlab calls only inside confined
    workers (:mod:`rewardlab.workers`) and the check's limited child: the compiled program
    travels there as :meth:`to_message`. Calling a program that was not loaded yet loads it in
    place (tests and docstrings do that with trusted programs).

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
    vetted: bool = True
    """``False`` only for :func:`unvetted_program` (tests of the OS wall)."""
    _code: Any = field(default=None, repr=False)
    """The vetted, instrumented code object (what :meth:`fresh` runs)."""
    _fn: Any = field(default=None, repr=False)
    """The entry function, once loaded."""
    _names: set[str] = field(default_factory=set, repr=False)
    """Component names already found acceptable."""

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
        """Vet, instrument and compile ``source`` (nothing of it runs); raise
        :class:`RewardProgramError` if rejected.

        ``self_paths``/``self_leaves`` (from an environment card) enable the check that every
        ``self.`` attribute the program reads exists; ``ticks`` and ``seconds`` are the per-call
        budget.
        """
        vetting = vet(source, entry=ENTRY, self_paths=self_paths, self_leaves=self_leaves)
        tree = vetting.tree
        if vetting.findings or tree is None:
            raise RewardProgramError(vetting.findings, vetting.warnings)
        try:
            code = compile(instrument(tree), "<reward>", "exec")
        except SyntaxError as exc:  # found by the compiler only, e.g. 'return' outside function
            raise RewardProgramError([Finding("syntax", str(exc.msg), exc.lineno)]) from None
        return cls(
            source=source, takes_obs=_entry_arity(tree) == 3, budget=Budget(ticks, seconds),
            max_abs=max_abs, warnings=vetting.warnings, _code=code,
        )  # fmt: skip

    def fresh(self) -> RewardProgram:
        """The same program loaded with its own module state and budget: its module-level code
        runs now, in fresh sandbox globals (nothing is parsed or vetted again), and its
        module-level values are frozen (:func:`freeze_module_state`). One per environment copy.

        Raises:
            RewardProgramError: the module-level code failed, ran over budget or left state
                that cannot be frozen (with its line).

        Example:
            >>> p = RewardProgram.compile("def compute_dense_reward(self, action):\\n    return 1.0\\n")
            >>> q = p.fresh()
            >>> q is not p and q.source == p.source and q(None, None) == (1.0, {})
            True
        """
        program = replace(
            self, budget=Budget(self.budget.limit, self.budget.seconds), _fn=None, _names=set()
        )
        program._load()
        return program

    def _load(self) -> None:
        """Run the module code and keep the entry function: **the one place where rewardlab
        executes generated code** (see the class docstring for where that happens)."""
        if not self.vetted:  # the test-only "vetter off" mode: plain Python, real builtins
            namespace: dict[str, Any] = {"__builtins__": builtins, "np": np, "math": math_module}
            exec(self._code, namespace)  # noqa: S102 - deliberately unvetted (tests of the OS wall)
            self._fn = namespace[ENTRY]
            return
        namespace = sandbox_globals(self.budget)
        self.budget.reset()
        try:
            exec(self._code, namespace)  # noqa: S102 - vetted, instrumented, restricted globals
        except BudgetExceeded as exc:
            raise RewardProgramError([Finding("timeout", str(exc), self.budget.line)]) from None
        except Exception as exc:  # module-level code failed (e.g. bad constant expression)
            raise RewardProgramError(
                [Finding("compile", _describe(exc), _traceback_line(exc))]
            ) from None
        try:
            freeze_module_state(namespace)
        except ModuleStateError as exc:
            line = _module_lines(ast.parse(self.source)).get(exc.name)
            raise RewardProgramError([Finding("static", str(exc), line)]) from None
        self._fn = namespace[ENTRY]

    @property
    def entry(self) -> Any:
        """The loaded entry function (loads the program in place on first use)."""
        if self._fn is None:
            self._load()
        return self._fn

    def to_message(self) -> dict[str, Any]:
        """The compiled program as plain data, to ship to a confined worker or the check's child
        (:meth:`from_message`): the code object travels as marshal bytes, so the receiver
        neither parses nor vets again. Only ever sent from a trusted process to a worker."""
        return {
            "source": self.source, "takes_obs": self.takes_obs, "ticks": self.budget.limit,
            "seconds": self.budget.seconds, "vetted": self.vetted,
            "max_abs": self.max_abs if math_module.isfinite(self.max_abs) else None,
            "warnings": [asdict(w) for w in self.warnings],
            "code": base64.b64encode(marshal.dumps(self._code)).decode(),
        }  # fmt: skip

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> RewardProgram:
        """The program :meth:`to_message` described (not loaded yet)."""
        max_abs = message["max_abs"]
        return cls(
            source=str(message["source"]), takes_obs=bool(message["takes_obs"]),
            budget=Budget(int(message["ticks"]), float(message["seconds"])),
            max_abs=math_module.inf if max_abs is None else float(max_abs),
            warnings=[Finding(**w) for w in message["warnings"]], vetted=bool(message["vetted"]),
            _code=marshal.loads(base64.b64decode(message["code"])),
        )  # fmt: skip

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
            fn = self.entry
            out = fn(me, action, obs) if self.takes_obs else fn(me, action)
        except BudgetExceeded as exc:
            raise RewardRuntimeError(Finding("timeout", str(exc), self.budget.line)) from None
        except MemoryError as exc:
            raise RewardRuntimeError(
                Finding(
                    "runtime",
                    "MemoryError: the program allocated too much memory",
                    _traceback_line(exc),
                )
            ) from None
        except Exception as exc:  # any type (OverflowError, RecursionError ...): a counted failure
            raise RewardRuntimeError(
                Finding("runtime", _describe(exc), _traceback_line(exc))
            ) from None
        return self._validate(out)

    def _validate(self, out: Any) -> tuple[float, dict[str, float]]:
        # Fast path first: plain floats (the common case) need no conversion.
        try:
            if type(out) is tuple:
                if len(out) != 2 or type(out[1]) is not dict:
                    raise TypeError("a tuple return must be (reward, {name: value})")
                reward = out[0] if type(out[0]) is float else _scalar(out[0], "reward")
                components = out[1]
                if len(components) > MAX_COMPONENTS:
                    raise ValueError(
                        f"{len(components)} components; at most {MAX_COMPONENTS} are allowed"
                    )
                if not all(type(v) is float and k in self._names for k, v in components.items()):
                    components = {
                        self._name(k): _scalar(v, f"component {k!r}") for k, v in components.items()
                    }
            else:
                reward = out if type(out) is float else _scalar(out, "reward")
                components = {}
        except Exception as exc:  # OverflowError (float(10**400)) included
            raise RewardRuntimeError(Finding("output", _describe(exc).split(": ", 1)[-1])) from None
        if not (reward - reward == 0.0):  # NaN or +-inf
            raise RewardRuntimeError(Finding("output", f"reward is not finite ({reward})"))
        if abs(reward) > self.max_abs:
            raise RewardRuntimeError(
                Finding(
                    "output", f"reward magnitude {reward:.3g} exceeds {self.max_abs:g} per step"
                )
            )
        for name, value in components.items():
            if not (value - value == 0.0):
                raise RewardRuntimeError(
                    Finding("output", f"component {name!r} is not finite ({value})")
                )
        return reward, components

    def _name(self, key: Any) -> str:
        """``key`` if it is an acceptable component name (remembered), else a TypeError."""
        problem = component_name_problem(key)
        if problem:
            raise TypeError(problem)
        self._names.add(key)
        return str(key)


def compile_for_task(source: str, task: TaskSpec, **kwargs: Any) -> RewardProgram:
    """Compile ``source`` with the attribute check against ``task``'s card."""
    from rewardlab.tasks.envs import card_paths

    paths, leaves = card_paths(task)
    return RewardProgram.compile(source, self_paths=paths, self_leaves=leaves, **kwargs)


def unvetted_program(source: str) -> RewardProgram:
    """``source`` compiled as plain Python, to be executed with real builtins, without vetting or
    instrumentation: the test-only "vetter off" mode (no configuration can ask for it), which
    shows what the OS wall alone stops."""
    return RewardProgram(
        source=source, takes_obs=_entry_arity(ast.parse(source)) == 3, budget=Budget(10**12, 1e9),
        vetted=False, _code=compile(source, "<reward>", "exec"),
    )  # fmt: skip
