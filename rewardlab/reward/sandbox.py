"""The sandbox for untrusted reward code.

Reward programs come from an LLM (or a person) and are treated as hostile. Defences, in order:

1. **Static vetting** (:func:`vet`): the source is parsed and walked. Imports outside
   :data:`ALLOWED_MODULES`, names such as ``eval``/``open``/``getattr``, any attribute that
   starts with ``_`` (dunder walking), attributes that reach frames or files (``gi_frame``,
   ``f_globals``, ``tofile``, ``format`` ...), classes, ``global``, ``with``, ``async`` and
   unknown names are rejected with their line numbers.
2. **Instrumentation** (:func:`instrument`): every loop iteration, function call and
   comprehension element ticks a per-call budget, so infinite loops and runaway recursion stop
   with :class:`BudgetExceeded`; ``*``, ``**`` and ``<<`` whose operands could build huge
   sequences or integers go through size-checked helpers.
3. **Restricted runtime**: the code is executed with a small builtins table, and ``import``
   yields read-only facades of allowed modules (a curated numpy with size caps on array
   creation, and ``math`` with capped factorial/comb/perm).
4. **Process limits** (applied by the caller): smoke runs happen in a subprocess with memory,
   CPU and wall-time limits; training processes may cap their data segment
   (:func:`limit_process_memory`) so no program can eat all memory.
"""

from __future__ import annotations

import ast
import builtins
import math
import resource
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_ELEMENTS = 1_000_000
"""Largest array or sequence (elements) that reward code may create in one operation."""

MAX_INT_BITS = 4096
"""Largest integer (bits) that ``**`` / ``<<`` may produce."""

DEFAULT_TICKS = 200_000
"""Default per-call budget: loop iterations + function calls + comprehension elements."""


@dataclass(frozen=True)
class Finding:
    """One problem found in a reward program."""

    stage: str  # "syntax" | "static" | "compile" | "runtime" | "output" | "smoke" | "timeout"
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"[{self.stage}] {where}{self.message}"


class BudgetExceeded(BaseException):
    """Raised inside reward code when it exceeds its per-call budget.

    A ``BaseException`` so ``except Exception`` in reward code cannot swallow it (bare
    ``except:`` is rejected statically).
    """


class SandboxViolation(Exception):
    """Raised at run time when reward code reaches for something it may not have."""


# --------------------------------------------------------------------------- facades


class Facade:
    """A read-only module stand-in exposing only allow-listed attributes."""

    __slots__ = ("_name", "_members")

    def __init__(self, name: str, members: dict[str, Any]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_members", members)

    def __getattr__(self, attr: str) -> Any:
        try:
            return self._members[attr]
        except KeyError:
            raise AttributeError(
                f"{self._name}.{attr} is not available to reward programs"
            ) from None

    def __setattr__(self, attr: str, value: Any) -> None:
        raise SandboxViolation(f"{self._name} is read-only")

    def __dir__(self) -> Iterable[str]:
        return sorted(self._members)

    def __repr__(self) -> str:
        return f"<sandboxed module {self._name}>"


def _check_count(n: float, what: str) -> None:
    if n > MAX_ELEMENTS:
        raise SandboxViolation(
            f"{what} would create {int(n):,} elements; reward code may create at most "
            f"{MAX_ELEMENTS:,} at once"
        )


def _shape_count(shape: Any) -> float:
    if isinstance(shape, (int, np.integer)):
        return float(shape)
    return float(np.prod([float(s) for s in shape])) if len(shape) else 1.0


def _capped_shape(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(shape: Any, *args: Any, **kwargs: Any) -> Any:
        _check_count(_shape_count(shape), f"numpy.{fn.__name__}")
        return fn(shape, *args, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _safe_arange(*args: Any, **kwargs: Any) -> Any:
    start, stop, step = 0.0, None, 1.0
    if len(args) == 1:
        stop = args[0]
    elif len(args) >= 2:
        start, stop = args[0], args[1]
        step = args[2] if len(args) > 2 else kwargs.get("step", 1.0)
    stop = kwargs.get("stop", stop)
    if stop is not None and step:
        _check_count(math.ceil(abs((float(stop) - float(start)) / float(step))), "numpy.arange")
    return np.arange(*args, **kwargs)


def _safe_linspace(start: Any, stop: Any, num: int = 50, *args: Any, **kwargs: Any) -> Any:
    _check_count(float(num), "numpy.linspace")
    return np.linspace(start, stop, num, *args, **kwargs)


def _safe_eye(n: int, m: int | None = None, *args: Any, **kwargs: Any) -> Any:
    _check_count(float(n) * float(m if m is not None else n), "numpy.eye")
    return np.eye(n, m, *args, **kwargs)


def _safe_identity(n: int, *args: Any, **kwargs: Any) -> Any:
    _check_count(float(n) ** 2, "numpy.identity")
    return np.identity(n, *args, **kwargs)


def _safe_tile(a: Any, reps: Any) -> Any:
    _check_count(np.size(a) * _shape_count(reps), "numpy.tile")
    return np.tile(a, reps)


def _safe_repeat(a: Any, repeats: Any, axis: Any = None) -> Any:
    _check_count(np.size(a) * float(np.max(repeats)), "numpy.repeat")
    return np.repeat(a, repeats, axis)


def _safe_outer(a: Any, b: Any, out: Any = None) -> Any:
    _check_count(float(np.size(a)) * float(np.size(b)), "numpy.outer")
    return np.outer(a, b, out)


def _safe_kron(a: Any, b: Any) -> Any:
    _check_count(float(np.size(a)) * float(np.size(b)), "numpy.kron")
    return np.kron(a, b)


def _safe_meshgrid(*xi: Any, **kwargs: Any) -> Any:
    _check_count(float(np.prod([float(np.size(x)) for x in xi])) * len(xi), "numpy.meshgrid")
    return np.meshgrid(*xi, **kwargs)


_NUMPY_NAMES = """
abs absolute add all allclose amax amin angle any append arccos arccosh arcsin arcsinh arctan
arctan2 arctanh argmax argmin argsort around array array_equal asarray atleast_1d atleast_2d
average bool_ cbrt ceil clip column_stack concatenate copysign cos cosh count_nonzero cross
cumprod cumsum deg2rad degrees diag diagonal diff divide dot e equal exp exp2 expand_dims expm1
fabs flip fliplr float16 float32 float64 floor floor_divide fmax fmin fmod full_like greater
greater_equal heaviside hstack hypot inf inner int8 int16 int32 int64 interp isclose isfinite
isinf isnan less less_equal log log10 log1p log2 logaddexp logical_and logical_not logical_or
logical_xor matmul max maximum mean median min minimum mod multiply nan nan_to_num nanmax
nanmean nanmin nansum ndarray negative newaxis nonzero not_equal ones_like percentile pi
positive power prod ptp rad2deg radians ravel reciprocal remainder reshape rint round sign
signbit sin sinc sinh sort sqrt square squeeze stack std subtract sum swapaxes take tan tanh
trace transpose trapezoid true_divide uint8 unwrap var vdot vstack where zeros_like empty_like
float_power cumulative_sum quantile
"""

_LINALG_NAMES = "norm det inv pinv solve eig eigh eigvals eigvalsh svd qr cholesky matrix_rank"


def _numpy_facade() -> Facade:
    members: dict[str, Any] = {n: getattr(np, n) for n in _NUMPY_NAMES.split() if hasattr(np, n)}
    members.update(
        zeros=_capped_shape(np.zeros),
        ones=_capped_shape(np.ones),
        empty=_capped_shape(np.zeros),  # never hand out uninitialised memory
        full=_capped_shape(np.full),
        arange=_safe_arange,
        linspace=_safe_linspace,
        eye=_safe_eye,
        identity=_safe_identity,
        tile=_safe_tile,
        repeat=_safe_repeat,
        outer=_safe_outer,
        kron=_safe_kron,
        meshgrid=_safe_meshgrid,
        linalg=Facade("numpy.linalg", {n: getattr(np.linalg, n) for n in _LINALG_NAMES.split()}),
    )
    return Facade("numpy", members)


def _capped_math(fn: Callable[..., Any], limit: int = 1000) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:
        if any(isinstance(a, int) and abs(a) > limit for a in args):
            raise SandboxViolation(f"math.{fn.__name__} arguments above {limit} are not allowed")
        return fn(*args)

    wrapper.__name__ = fn.__name__
    return wrapper


def _math_facade() -> Facade:
    members = {n: getattr(math, n) for n in dir(math) if not n.startswith("_")}
    for name in ("factorial", "comb", "perm"):
        members[name] = _capped_math(getattr(math, name))
    members["prod"] = lambda it, start=1: math.prod(_bounded(it, "math.prod"), start=start)
    return Facade("math", members)


ALLOWED_MODULES: dict[str, Callable[[], Facade]] = {
    "numpy": _numpy_facade,
    "math": _math_facade,
}
"""Modules reward code may import, each mapped to a factory of its sandboxed facade."""

_FACADES: dict[str, Facade] = {}


def facade(name: str) -> Facade:
    """The sandboxed facade of module ``name`` (``"numpy"``, ``"numpy.linalg"``, ``"math"``)."""
    root, _, sub = name.partition(".")
    if root not in ALLOWED_MODULES:
        raise SandboxViolation(f"import of {name!r} is not allowed")
    if root not in _FACADES:
        _FACADES[root] = ALLOWED_MODULES[root]()
    module: Any = _FACADES[root]
    for part in filter(None, sub.split(".")):
        module = getattr(module, part)
    return module


# --------------------------------------------------------------------------- builtins


def _bounded(iterable: Any, what: str) -> Any:
    if hasattr(iterable, "__len__"):
        _check_count(float(len(iterable)), what)
    return iterable


def _safe_range(*args: int) -> range:
    r = range(*args)
    _check_count(float(len(r)), "range")
    return r


def _safe_pow(base: Any, exp: Any, mod: Any = None) -> Any:
    if mod is not None:
        return pow(base, exp, mod)
    return guard_pow(base, exp)


def _safe_import(
    name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
) -> Any:
    if level != 0:
        raise SandboxViolation("relative imports are not allowed")
    return facade(name if fromlist else name.split(".")[0])


def _no_print(*args: Any, **kwargs: Any) -> None:
    """``print`` is accepted and ignored (reward code runs thousands of times per second)."""


_SAFE_BUILTIN_NAMES = """
abs all any bool dict divmod enumerate filter float frozenset int isinstance len list map max
min reversed round set slice sorted str sum tuple zip True False None
ArithmeticError AssertionError Exception IndexError KeyError LookupError OverflowError
RuntimeError TypeError ValueError ZeroDivisionError FloatingPointError NotImplementedError
"""

SAFE_BUILTINS: dict[str, Any] = {
    n: getattr(builtins, n) for n in _SAFE_BUILTIN_NAMES.split() if hasattr(builtins, n)
}
SAFE_BUILTINS.update(range=_safe_range, pow=_safe_pow, print=_no_print, __import__=_safe_import)

FORBIDDEN_NAMES = frozenset(
    """eval exec compile open input __import__ getattr setattr delattr globals locals vars dir
    breakpoint help memoryview type object super classmethod staticmethod property exit quit
    iter next callable id hash issubclass bytearray bytes __builtins__ __loader__ __spec__
    reload os sys subprocess importlib builtins""".split()
)

FORBIDDEN_ATTRIBUTES = frozenset(
    """format format_map mro tofile dump dumps load loads save savez savetxt fromfile memmap
    ctypes gi_frame gi_code gi_yieldfrom cr_frame cr_code cr_await ag_frame ag_code f_back
    f_globals f_locals f_builtins f_code tb_frame tb_next co_code func_globals func_code
    im_func im_self system popen""".split()
)


# --------------------------------------------------------------------------- guards


def guard_mul(a: Any, b: Any) -> Any:
    """``a * b`` that refuses to build huge strings, lists or tuples."""
    for seq, n in ((a, b), (b, a)):
        if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int):
            _check_count(float(len(seq)) * float(n), "sequence repetition")
    return a * b


def guard_pow(a: Any, b: Any) -> Any:
    """``a ** b`` that refuses integer results above :data:`MAX_INT_BITS` bits."""
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        if b * math.log2(abs(a)) > MAX_INT_BITS:
            raise SandboxViolation(f"integer power {a}**{b} is too large")
    return a**b


def guard_lshift(a: Any, b: Any) -> Any:
    """``a << b`` that refuses integer results above :data:`MAX_INT_BITS` bits."""
    if isinstance(a, int) and isinstance(b, int) and b > MAX_INT_BITS:
        raise SandboxViolation(f"integer shift by {b} bits is too large")
    return a << b


class Budget:
    """A per-call tick counter shared by one compiled program."""

    __slots__ = ("limit", "left", "line")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit
        self.line = 0

    def tick(self, line: int) -> None:
        self.left -= 1
        if self.left < 0:
            self.line = line
            raise BudgetExceeded(
                f"reward program exceeded its budget of {self.limit:,} loop iterations/calls "
                f"per step (line {line}): infinite or very long loop?"
            )

    def reset(self) -> None:
        self.left = self.limit


# --------------------------------------------------------------------------- static vetting


def _small_number(node: ast.AST, limit: float = 64) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
        and abs(node.value) <= limit
    )


def _float_constant(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, float)


def _defined_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def _attribute_chain(node: ast.Attribute) -> list[str] | None:
    parts: list[str] = []
    cur: ast.AST = node
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    if isinstance(cur, ast.Name):
        parts.append(cur.id)
        return parts[::-1]
    return None


def vet(
    source: str,
    *,
    entry: str = "compute_dense_reward",
    self_paths: set[str] | None = None,
    self_leaves: set[str] | None = None,
) -> tuple[ast.Module | None, list[Finding]]:
    """Parse and statically check ``source``; return the tree and every finding.

    Args:
        source: the reward program.
        entry: the function that must be defined.
        self_paths: every ``self.a.b`` path the environment card defines; reads of other
            paths rooted at the entry function's first parameter are reported by name.
        self_leaves: the paths whose values are plain data (floats, arrays): attribute
            access beyond them (``.copy()``, ``.shape``) is not checked against the card.
    """
    findings: list[Finding] = []
    if len(source) > 100_000:
        return None, [Finding("static", "program is longer than 100,000 characters")]
    try:
        tree = ast.parse(source, filename="<reward>")
    except SyntaxError as exc:
        return None, [Finding("syntax", f"{exc.msg}", exc.lineno)]

    def bad(node: ast.AST, message: str) -> None:
        findings.append(Finding("static", message, getattr(node, "lineno", None)))

    allowed_roots = set(ALLOWED_MODULES)
    defined = _defined_names(tree) | set(SAFE_BUILTINS)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in allowed_roots:
                    bad(node, f"import of {alias.name!r} is not allowed (allowed: {', '.join(sorted(allowed_roots))})")
        elif isinstance(node, ast.ImportFrom):
            if node.level or (node.module or "").split(".")[0] not in allowed_roots:
                bad(node, f"import from {node.module or '.'!r} is not allowed (allowed: {', '.join(sorted(allowed_roots))})")
            for alias in node.names:
                if alias.name == "*":
                    bad(node, "star imports are not allowed")
                elif alias.name.startswith("_"):
                    bad(node, f"importing private name {alias.name!r} is not allowed")
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                bad(node, f"access to private/dunder attribute {node.attr!r} is not allowed")
            elif node.attr in FORBIDDEN_ATTRIBUTES:
                bad(node, f"attribute {node.attr!r} is not allowed in reward code")
            elif isinstance(node.ctx, (ast.Store, ast.Del)):
                bad(node, f"assigning attribute {node.attr!r} is not allowed: the environment is read-only")
        elif isinstance(node, ast.Name):
            if node.id in FORBIDDEN_NAMES or node.id.startswith("__"):
                bad(node, f"use of {node.id!r} is not allowed in reward code")
            elif isinstance(node.ctx, ast.Load) and node.id not in defined:
                bad(node, f"name {node.id!r} is not defined (not a variable, import or allowed builtin)")
        elif isinstance(node, (ast.ClassDef, ast.AsyncFunctionDef, ast.AsyncFor, ast.AsyncWith, ast.Await)):
            bad(node, f"{type(node).__name__} is not allowed in reward code")
        elif isinstance(node, (ast.With, ast.Global, ast.Nonlocal)):
            bad(node, f"'{type(node).__name__.lower()}' statements are not allowed in reward code")
        elif isinstance(node, ast.ExceptHandler):
            if node.type is None or (isinstance(node.type, ast.Name) and node.type.id == "BaseException"):
                bad(node, "bare 'except:' / 'except BaseException' is not allowed; catch specific errors")
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, (ast.Mult, ast.Pow, ast.LShift)):
            if not isinstance(node.target, ast.Name) and not _small_number(node.value, 1e9):
                bad(node, "'*=', '**=' or '<<=' on an item or attribute needs a numeric constant; write x[i] = x[i] * y")
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)) and len(node.value) > 10_000:
            bad(node, "string constant longer than 10,000 characters")

    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    fn = functions.get(entry)
    if fn is None:
        findings.append(Finding("static", f"no top-level function {entry}(self, action) defined"))
    else:
        args = fn.args
        n_pos = len(args.posonlyargs) + len(args.args)
        if args.vararg or args.kwarg or n_pos not in (2, 3):
            findings.append(
                Finding("static", f"{entry} must take (self, action) or (self, action, obs)", fn.lineno)
            )
        if self_paths is not None and n_pos:
            self_name = (args.posonlyargs + args.args)[0].arg
            findings += _check_self_paths(fn, self_name, self_paths, self_leaves or set())
    for stmt in tree.body:
        if not isinstance(stmt, (ast.FunctionDef, ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.Expr)):
            findings.append(Finding("static", f"top-level {type(stmt).__name__} is not allowed: only imports, constants and functions", stmt.lineno))
    return tree, findings


def _check_self_paths(
    fn: ast.FunctionDef, self_name: str, paths: set[str], leaves: set[str]
) -> list[Finding]:
    findings: list[Finding] = []
    seen: set[tuple[str, int]] = set()
    for node in ast.walk(fn):
        if not isinstance(node, ast.Attribute) or not isinstance(node.ctx, ast.Load):
            continue
        chain = _attribute_chain(node)
        if not chain or chain[0] != self_name:
            continue
        path = "self"
        for part in chain[1:]:
            if path in leaves:
                break
            candidate = f"{path}.{part}"
            if candidate not in paths:
                members = sorted(p.rsplit(".", 1)[1] for p in paths if p.rsplit(".", 1)[0] == path)
                key = (candidate, node.lineno)
                if key not in seen:
                    seen.add(key)
                    findings.append(
                        Finding(
                            "static",
                            f"{candidate} is not defined by the environment card; "
                            f"{path} has: {', '.join(members) or '(nothing)'}",
                            node.lineno,
                        )
                    )
                break
            path = candidate
    return findings


# --------------------------------------------------------------------------- instrumentation

TICK = "__rl_tick__"
_GUARDS = {ast.Mult: "__rl_mul__", ast.Pow: "__rl_pow__", ast.LShift: "__rl_lshift__"}


class _Instrument(ast.NodeTransformer):
    def _tick(self, node: ast.AST) -> ast.Expr:
        call = ast.Call(ast.Name(TICK, ast.Load()), [ast.Constant(getattr(node, "lineno", 0))], [])
        return ast.Expr(call)

    def _loop(self, node: Any) -> Any:
        self.generic_visit(node)
        node.body.insert(0, self._tick(node))
        return node

    visit_For = visit_While = _loop

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        return self._loop(node)

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        self.generic_visit(node)
        tick = self._tick(node).value
        node.body = ast.BoolOp(ast.Or(), [tick, node.body])  # tick() returns None
        return node

    def visit_comprehension(self, node: ast.comprehension) -> Any:
        self.generic_visit(node)
        tick = self._tick(node.target).value
        node.ifs.insert(0, ast.Compare(tick, [ast.Is()], [ast.Constant(None)]))
        return node

    def _needs_guard(self, op: ast.operator, left: ast.AST, right: ast.AST) -> bool:
        if isinstance(op, ast.Mult):
            return not (_float_constant(left) or _float_constant(right))
        if isinstance(op, (ast.Pow, ast.LShift)):
            return not _small_number(right)
        return False

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        self.generic_visit(node)
        if type(node.op) in _GUARDS and self._needs_guard(node.op, node.left, node.right):
            return ast.Call(ast.Name(_GUARDS[type(node.op)], ast.Load()), [node.left, node.right], [])
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        self.generic_visit(node)
        if (
            type(node.op) in _GUARDS
            and isinstance(node.target, ast.Name)
            and self._needs_guard(node.op, node.target, node.value)
        ):
            load = ast.Name(node.target.id, ast.Load())
            call = ast.Call(ast.Name(_GUARDS[type(node.op)], ast.Load()), [load, node.value], [])
            return ast.Assign([node.target], call)
        return node


def instrument(tree: ast.Module) -> ast.Module:
    """Insert budget ticks and size guards; returns a new, location-fixed tree."""
    new = _Instrument().visit(tree)
    return ast.fix_missing_locations(new)


def sandbox_globals(budget: Budget) -> dict[str, Any]:
    """The globals a compiled reward program runs in."""
    return {
        "__builtins__": dict(SAFE_BUILTINS),
        "__name__": "reward_program",
        TICK: budget.tick,
        "__rl_mul__": guard_mul,
        "__rl_pow__": guard_pow,
        "__rl_lshift__": guard_lshift,
    }


# --------------------------------------------------------------------------- process limits


def limit_process_memory(max_bytes: int) -> None:
    """Cap this process's data segment (heap and anonymous mappings) at ``max_bytes``.

    Allocations beyond it raise :class:`MemoryError` instead of exhausting the machine. Linux
    only; a no-op where ``RLIMIT_DATA`` is unavailable. The cap never raises a lower hard
    limit.
    """
    if not hasattr(resource, "RLIMIT_DATA"):
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        max_bytes = min(max_bytes, hard)
    if soft == resource.RLIM_INFINITY or soft > max_bytes:
        resource.setrlimit(resource.RLIMIT_DATA, (max_bytes, hard))
