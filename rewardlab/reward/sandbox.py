"""The sandbox for untrusted reward code.

Reward programs come from an LLM (or a person) and are treated as hostile. Defences, in order:

1. **Static vetting** (:func:`vet`): the source is parsed and walked. Imports outside
   :data:`ALLOWED_MODULES`, names such as ``eval``/``open``/``getattr``, any attribute that
   starts with ``_`` (dunder walking), attributes that reach frames or files (``gi_frame``,
   ``f_globals``, ``tofile``, ``format`` ...), classes, ``global``, ``with``, ``async`` and
   unknown names are rejected with their line numbers.
2. **Instrumentation** (:func:`instrument`): every loop iteration, function call and
   comprehension element ticks a per-call budget (a tick count and a wall-clock limit), so
   infinite loops, loops with heavy bodies and runaway recursion stop with
   :class:`BudgetExceeded`; ``*``, ``**`` and ``<<`` whose operands could build huge sequences
   or integers go through size-checked helpers, and the dtype-taking ndarray methods
   (``astype``, ``sum``, ``repeat`` ...) through argument checks.
3. **Restricted runtime**: the code is executed with a small builtins table, and ``import``
   yields read-only facades of allowed modules (a curated numpy with size caps on array
   creation and no object or oversized dtypes, whose arbitrary-precision arithmetic would run
   in C beyond the budget's reach; and ``math`` with capped factorial/comb/perm/prod).
4. **Process limits** (applied by the caller): smoke runs happen in a subprocess with memory,
   CPU and wall-time limits; training processes may cap their data segment
   (:func:`limit_process_memory`) so no program can eat all memory.
"""

from __future__ import annotations

import ast
import builtins
import math
import resource
import time
import warnings as pywarnings
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

DEFAULT_SECONDS = 1.0
"""Default per-call wall-clock budget (checked every few hundred ticks)."""

MAX_ITEMSIZE = 32
"""Largest numpy dtype item size (bytes) reward code may use (complex256 is 32)."""


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
    """A read-only module stand-in exposing only allow-listed attributes.

    Members live in the instance dictionary so that ``np.sqrt`` is a plain (fast) attribute
    lookup; reward code cannot reach the dictionary itself (``__dict__`` and ``vars`` are
    rejected statically), and misses raise a precise :class:`AttributeError`.
    """

    def __init__(self, name: str, members: dict[str, Any]) -> None:
        object.__setattr__(self, "_name", name)
        for key, value in members.items():
            object.__setattr__(self, key, value)

    def __getattr__(self, attr: str) -> Any:  # only called for names that are not members
        raise AttributeError(f"{self._name}.{attr} is not available to reward programs")

    def __setattr__(self, attr: str, value: Any) -> None:
        raise SandboxViolation(f"{self._name} is read-only")

    def __delattr__(self, attr: str) -> None:
        raise SandboxViolation(f"{self._name} is read-only")

    def __dir__(self) -> Iterable[str]:
        return sorted(k for k in self.__dict__ if k != "_name")

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


def _safe_like(fn: Callable[..., Any], position: int = 4) -> Callable[..., Any]:
    """``numpy.*_like`` with its ``shape`` override (keyword or ``position``) capped."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        shape = kwargs.get("shape", args[position] if len(args) > position else None)
        if shape is not None:
            _check_count(_shape_count(shape), f"numpy.{fn.__name__}")
        return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    return wrapper


def _safe_diag(v: Any, k: int = 0) -> Any:
    if np.ndim(v) == 1:
        _check_count((float(np.size(v)) + abs(float(k))) ** 2, "numpy.diag")
    return np.diag(v, k)


def _safe_join(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``concatenate``/``stack``/``hstack`` ... with the total size of the pieces capped."""

    def wrapper(arrays: Any, *args: Any, **kwargs: Any) -> Any:
        if not hasattr(arrays, "__len__"):
            arrays = tuple(arrays)
        total = 0.0
        for piece in _bounded(arrays, f"numpy.{fn.__name__}"):
            total += float(np.size(piece))
            _check_count(total, f"numpy.{fn.__name__}")
        return fn(arrays, *args, **kwargs)

    wrapper.__name__ = fn.__name__
    return wrapper


def _safe_append(arr: Any, values: Any, axis: Any = None) -> Any:
    _check_count(float(np.size(arr)) + float(np.size(values)), "numpy.append")
    return np.append(arr, values, axis)


def _check_dtype_like(value: Any, what: str) -> None:
    try:
        with pywarnings.catch_warnings():
            pywarnings.simplefilter("ignore")
            dtype = np.dtype(value)
    except Exception:  # not a dtype specification (e.g. a mode string such as "valid")
        return
    if dtype.hasobject:
        raise SandboxViolation(f"{what}: object dtypes are not allowed in reward code")
    if dtype.itemsize > MAX_ITEMSIZE:
        raise SandboxViolation(
            f"{what}: dtype {dtype} ({dtype.itemsize} bytes per element) is not allowed"
        )


def _check_value(value: Any, what: str, depth: int = 0) -> None:
    """Reject arguments numpy would turn into object arrays or oversized dtypes.

    Object arrays run Python arithmetic (arbitrary-precision integers, sequence repetition)
    inside C loops that no budget tick can interrupt, so they must never come into being.
    """
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise SandboxViolation(f"{what}: object arrays are not allowed in reward code")
    elif isinstance(value, (bool, float, complex, np.generic)) or value is None:
        return
    elif isinstance(value, int):
        if value.bit_length() > 64:
            raise SandboxViolation(
                f"{what}: a {value.bit_length()}-bit integer would become an object array"
            )
    elif isinstance(value, (str, type, np.dtype, dict)):
        _check_dtype_like(value, what)
    elif isinstance(value, (list, tuple)):
        if depth > 32:
            raise SandboxViolation(f"{what}: argument nested too deeply")
        for item in value:
            _check_value(item, what, depth + 1)


def _check_result(result: Any, what: str) -> Any:
    items = result if isinstance(result, (tuple, list)) else (result,)
    for item in items:
        if isinstance(item, np.ndarray) and item.dtype.hasobject:
            raise SandboxViolation(f"{what}: object arrays are not allowed in reward code")
    return result


def _guarded(
    fn: Callable[..., Any], what: str, precheck: Callable[[tuple[Any, ...]], None] | None = None
) -> Callable[..., Any]:
    """``fn`` with :func:`_check_value` (and ``precheck``) on its arguments and
    :func:`_check_result` on its result."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for value in args:
            _check_value(value, what)
        for value in kwargs.values():
            _check_value(value, what)
        if precheck is not None:
            precheck(args)
        return _check_result(fn(*args, **kwargs), what)

    wrapper.__name__ = getattr(fn, "__name__", what)
    wrapper.__doc__ = getattr(fn, "__doc__", None)
    return wrapper


class _InstanceCheck(type):
    _wraps: type = np.ndarray

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, cls._wraps)

    def __subclasscheck__(cls, sub: Any) -> bool:
        return issubclass(sub, cls._wraps)


class _NdarrayType(metaclass=_InstanceCheck):
    """``numpy.ndarray`` for ``isinstance`` checks and annotations; cannot be instantiated."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise SandboxViolation(
            "numpy.ndarray(...) is not available to reward programs; use numpy.array/zeros"
        )


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


def _guard_members(members: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Wrap every function (not types, constants or sub-facades) with :func:`_guarded`."""
    return {
        name: _guarded(value, f"{prefix}.{name}")
        if callable(value) and not isinstance(value, (type, Facade))
        else value
        for name, value in members.items()
    }


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
        diag=_safe_diag,
        append=_safe_append,
        ndarray=_NdarrayType,
        **{n: _safe_like(getattr(np, n)) for n in ("zeros_like", "ones_like", "empty_like")},
        full_like=_safe_like(np.full_like, position=5),
        **{n: _safe_join(getattr(np, n)) for n in ("concatenate", "stack", "hstack", "vstack", "column_stack")},
    )
    linalg = {n: getattr(np.linalg, n) for n in _LINALG_NAMES.split()}
    members["linalg"] = Facade("numpy.linalg", _guard_members(linalg, "numpy.linalg"))
    return Facade("numpy", _guard_members(members, "numpy"))


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
    members["prod"] = _safe_prod
    return Facade("math", members)


def _safe_prod(iterable: Any, *, start: Any = 1) -> Any:
    """``math.prod`` with every step size-checked like ``*``."""
    result = start
    for value in _bounded(iterable, "math.prod"):
        result = guard_mul(result, value)
    return result


_DISTANCE_NAMES = """braycurtis canberra chebyshev cityblock correlation cosine dice euclidean
hamming jaccard jensenshannon mahalanobis minkowski rogerstanimoto russellrao seuclidean
sokalsneath sqeuclidean yule directed_hausdorff"""


def _rows(x: Any) -> float:
    return float(np.shape(x)[0]) if np.ndim(x) else 1.0


def _metric_name(kwargs: dict[str, Any], args: tuple[Any, ...], what: str) -> None:
    metric = kwargs.get("metric", args[0] if args else "euclidean")
    if not isinstance(metric, str):
        raise SandboxViolation(f"{what}: metric must be a name such as 'euclidean', not a function")


def _safe_cdist(xa: Any, xb: Any, *args: Any, **kwargs: Any) -> Any:
    from scipy.spatial import distance

    _metric_name(kwargs, args, "scipy.spatial.distance.cdist")
    _check_count(_rows(xa) * _rows(xb), "scipy.spatial.distance.cdist")
    return distance.cdist(xa, xb, *args, **kwargs)


def _safe_pdist(x: Any, *args: Any, **kwargs: Any) -> Any:
    from scipy.spatial import distance

    _metric_name(kwargs, args, "scipy.spatial.distance.pdist")
    _check_count(_rows(x) ** 2 / 2, "scipy.spatial.distance.pdist")
    return distance.pdist(x, *args, **kwargs)


def _safe_squareform(x: Any, *args: Any, **kwargs: Any) -> Any:
    from scipy.spatial import distance

    n = float(np.size(x))
    _check_count(n if np.ndim(x) == 2 else 2 * n + math.sqrt(8 * n + 1), "scipy.spatial.distance.squareform")
    return distance.squareform(x, *args, **kwargs)


def _scipy_facade() -> Facade:
    """``scipy.spatial.distance`` (metrics, ``cdist``/``pdist``/``squareform`` with capped
    sizes and named metrics only) and ``scipy.spatial.transform.Rotation``."""
    from scipy.spatial import distance

    dist = {n: getattr(distance, n) for n in _DISTANCE_NAMES.split()}
    dist.update(cdist=_safe_cdist, pdist=_safe_pdist, squareform=_safe_squareform)
    transform = Facade("scipy.spatial.transform", {"Rotation": _rotation_facade()})
    spatial = Facade(
        "scipy.spatial",
        {"distance": Facade("scipy.spatial.distance", _guard_members(dist, "scipy.spatial.distance")),
         "transform": transform},
    )  # fmt: skip
    return Facade("scipy", {"spatial": spatial})


_ROTATION_METHODS = """apply as_davenport as_euler as_matrix as_mrp as_quat as_rotvec
approx_equal inv magnitude mean"""
_ROTATION_FACTORIES = """from_davenport from_euler from_matrix from_mrp from_quat from_rotvec
identity random concatenate align_vectors"""


def _unwrap(value: Any) -> Any:
    if isinstance(value, Rotation):
        return value._rotation
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    return value


def _wrap(value: Any, what: str) -> Any:
    from scipy.spatial.transform import Rotation as ScipyRotation

    if isinstance(value, ScipyRotation):
        return Rotation(value)
    if isinstance(value, tuple):
        return tuple(_wrap(v, what) for v in value)
    return _check_result(value, what)


def _rotation_call(target: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    what = f"Rotation.{name}"
    for value in (*args, *kwargs.values()):
        if not isinstance(value, Rotation):
            _check_value(value, what)
            if isinstance(value, (np.ndarray, list, tuple)):
                _check_count(float(np.size(value)) if isinstance(value, np.ndarray) else float(len(value)), what)
    if name in ("identity", "random"):
        num = kwargs.get("num", args[0] if args else None)
        if num is not None:
            _check_count(9.0 * float(num), what)
    return _wrap(getattr(target, name)(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}), what)


class Rotation:
    """``scipy.spatial.transform.Rotation`` for reward code: the allow-listed methods of a
    rotation (``as_quat``, ``as_euler``, ``apply``, ``inv``, ``magnitude`` ..., composition with
    ``*``, ``**``, indexing) with checked arguments; results are arrays or other
    :class:`Rotation` s. Made by the factories of the ``Rotation`` facade (``from_quat`` ...)."""

    __slots__ = ("_rotation",)

    def __init__(self, rotation: Any) -> None:
        object.__setattr__(self, "_rotation", rotation)

    def __setattr__(self, attr: str, value: Any) -> None:
        raise SandboxViolation("Rotation objects are read-only")

    def __getattr__(self, attr: str) -> Any:  # only for names that are not methods
        raise AttributeError(f"Rotation.{attr} is not available to reward programs")

    def __mul__(self, other: Any) -> Any:
        if not isinstance(other, Rotation):
            return NotImplemented
        return Rotation(self._rotation * other._rotation)

    def __pow__(self, n: Any) -> Any:
        return _rotation_call(self._rotation, "__pow__", (n,), {})

    def __len__(self) -> int:
        return len(self._rotation)

    def __getitem__(self, index: Any) -> Any:
        return _rotation_call(self._rotation, "__getitem__", (index,), {})

    def __repr__(self) -> str:
        return f"Rotation({self._rotation.as_quat()!r})"

    @property
    def single(self) -> bool:
        return bool(self._rotation.single)


def _rotation_method(name: str) -> Callable[..., Any]:
    def method(self: Rotation, *args: Any, **kwargs: Any) -> Any:
        return _rotation_call(self._rotation, name, args, kwargs)

    method.__name__ = name
    return method


for _name in _ROTATION_METHODS.split():
    setattr(Rotation, _name, _rotation_method(_name))


def _rotation_facade() -> Facade:
    from scipy.spatial.transform import Rotation as ScipyRotation

    def factory(name: str) -> Callable[..., Any]:
        def make(*args: Any, **kwargs: Any) -> Any:
            return _rotation_call(ScipyRotation, name, args, kwargs)

        make.__name__ = name
        return make

    return Facade(
        "scipy.spatial.transform.Rotation", {n: factory(n) for n in _ROTATION_FACTORIES.split()}
    )


_T3D_NAMES = {
    "quaternions": """axangle2quat fillpositive mat2quat nearly_equivalent qconjugate qexp qeye
    qinverse qisunit qlog qmult qnorm qpow quat2axangle quat2mat rotate_vector""",
    "euler": """axangle2euler euler2axangle euler2mat euler2quat mat2euler quat2euler""",
}


def _transforms3d_facade() -> Facade:
    """``transforms3d.quaternions`` and ``transforms3d.euler`` (what published reward code
    calls: ``qmult``, ``qinverse``, ``quat2axangle``, ``euler2quat`` ...), arguments checked."""
    import importlib

    subs = {}
    for sub, names in _T3D_NAMES.items():
        module = importlib.import_module(f"transforms3d.{sub}")
        members = {n: getattr(module, n) for n in names.split()}
        subs[sub] = Facade(f"transforms3d.{sub}", _guard_members(members, f"transforms3d.{sub}"))
    return Facade("transforms3d", subs)


def _typing_facade() -> Facade:
    """The ``typing`` names published reward code annotates with (``Tuple[float, Dict[str,
    float]]`` ...)."""
    import typing

    names = "Any Callable Dict Iterable List Mapping Optional Sequence Tuple Union"
    return Facade("typing", {n: getattr(typing, n) for n in names.split()})


ALLOWED_MODULES: dict[str, Callable[[], Facade]] = {
    "numpy": _numpy_facade,
    "math": _math_facade,
    "scipy": _scipy_facade,
    "transforms3d": _transforms3d_facade,
    "typing": _typing_facade,
}
"""Modules reward code may import, each mapped to a factory of its sandboxed facade."""

PREBOUND = {"np": "numpy", "math": "math"}
"""Names bound in every program's namespace without an import (as Text2Reward's harness had
them): ``np`` is the numpy facade, ``math`` the math facade."""

UNAVAILABLE_HINTS = {
    "torch": "torch is not available to reward programs: Eureka-style torch rewards "
    "(tensors, @torch.jit.script) are not run; write the reward with numpy (np is pre-bound)",
}
"""Why a commonly imported module is refused, where a plain 'not allowed' would not help."""

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


def _safe_sum(iterable: Any, /, start: Any = 0) -> Any:
    if isinstance(start, (list, tuple)):
        raise SandboxViolation(
            "sum() of lists/tuples is not allowed (quadratic); build the list with a comprehension"
        )
    return sum(_bounded(iterable, "sum"), start)


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
SAFE_BUILTINS.update(
    range=_safe_range, pow=_safe_pow, sum=_safe_sum, print=_no_print, __import__=_safe_import
)

FORBIDDEN_NAMES = frozenset(
    """eval exec compile open input __import__ getattr setattr delattr globals locals vars dir
    breakpoint help memoryview type object super classmethod staticmethod property exit quit
    iter next callable id hash issubclass bytearray bytes __builtins__ __loader__ __spec__
    reload os sys subprocess importlib builtins""".split()  # noqa: SIM905
)

FORBIDDEN_ATTRIBUTES = frozenset(
    """format format_map mro tofile dump dumps load loads save savez savetxt fromfile memmap
    ctypes gi_frame gi_code gi_yieldfrom cr_frame cr_code cr_await ag_frame ag_code f_back
    f_globals f_locals f_builtins f_code tb_frame tb_next co_code func_globals func_code
    im_func im_self system popen""".split()  # noqa: SIM905
)


# --------------------------------------------------------------------------- guards


def guard_mul(a: Any, b: Any) -> Any:
    """``a * b`` that refuses to build huge strings, lists, tuples or integers."""
    if isinstance(a, int) and isinstance(b, int):
        if a.bit_length() + b.bit_length() > MAX_INT_BITS:
            raise SandboxViolation(
                f"integer product of {a.bit_length()} and {b.bit_length()} bits is too large"
            )
    else:
        for seq, n in ((a, b), (b, a)):
            if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int):
                _check_count(float(len(seq)) * float(n), "sequence repetition")
    return a * b


def guard_pow(a: Any, b: Any) -> Any:
    """``a ** b`` that refuses integer results above :data:`MAX_INT_BITS` bits."""
    if (
        isinstance(a, int)
        and isinstance(b, int)
        and b > 1
        and abs(a) > 1
        and b * math.log2(abs(a)) > MAX_INT_BITS
    ):
        what = f"{a}**{b}" if a.bit_length() <= 64 else f"({a.bit_length()}-bit integer)**{b}"
        raise SandboxViolation(f"integer power {what} is too large")
    return a**b


def guard_lshift(a: Any, b: Any) -> Any:
    """``a << b`` that refuses integer results above :data:`MAX_INT_BITS` bits."""
    if isinstance(a, int) and isinstance(b, int) and a and a.bit_length() + b > MAX_INT_BITS:
        raise SandboxViolation(f"integer shift by {b} bits is too large")
    return a << b


CHECKED_METHODS = frozenset(
    {"astype", "view", "sum", "prod", "cumsum", "cumprod", "mean", "std", "var", "trace", "dot",
     "repeat", "resize", "choose"}
)  # fmt: skip
"""Attributes whose (ndarray) methods take dtypes or allocate: accessed via :func:`guard_attr`."""


def guard_attr(obj: Any, name: str) -> Any:
    """``obj.name`` where ``name`` is in :data:`CHECKED_METHODS`: ndarray methods get checks."""
    value = getattr(obj, name)
    if not (isinstance(obj, (np.ndarray, np.generic)) and callable(value)):
        return value
    what = f"ndarray.{name}"

    def precheck(args: tuple[Any, ...]) -> None:
        if name == "repeat" and args:
            _check_count(float(np.size(obj)) * float(np.max(args[0])), what)
        elif name == "resize" and args:
            _check_count(_shape_count(args[0] if len(args) == 1 else args), what)

    return _guarded(value, what, precheck)


class Budget:
    """A per-call tick counter and wall-clock limit shared by one compiled program.

    Args:
        limit: ticks (loop iterations + calls + comprehension elements) per call.
        seconds: wall-clock time per call, checked every :attr:`CHECK_EVERY` ticks.
    """

    __slots__ = ("limit", "seconds", "left", "line", "deadline", "checkpoint")
    CHECK_EVERY = 64
    left: int
    checkpoint: int
    deadline: float

    def __init__(self, limit: int, seconds: float = DEFAULT_SECONDS) -> None:
        self.limit = limit
        self.seconds = seconds
        self.line = 0
        self.reset()

    def tick(self, line: int) -> None:
        self.left -= 1
        if self.left < self.checkpoint:
            self._check(line)

    def _check(self, line: int) -> None:
        if self.left < 0:
            self.line = line
            raise BudgetExceeded(
                f"reward program exceeded its budget of {self.limit:,} loop iterations/calls "
                f"per step (line {line}): infinite or very long loop?"
            )
        if time.perf_counter() > self.deadline:
            self.line = line
            self.checkpoint = self.limit + 1  # every later tick re-checks and raises again
            raise BudgetExceeded(
                f"reward program exceeded its time budget of {self.seconds:g} s per step "
                f"(line {line}): very long loop?"
            )
        self.checkpoint = max(self.left - self.CHECK_EVERY, 0)

    def reset(self) -> None:
        self.left = self.limit
        self.checkpoint = max(self.limit - self.CHECK_EVERY, 0)
        self.deadline = time.perf_counter() + self.seconds


# --------------------------------------------------------------------------- static vetting


@dataclass
class Vetting:
    """What :func:`vet` found."""

    tree: ast.Module | None
    """The parsed program; ``None`` if it does not parse."""
    findings: list[Finding]
    """Reasons to reject the program."""
    warnings: list[Finding]
    """Problems that do not reject it (stage ``warning``)."""


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
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)  # match captures: case [a, b, *rest]
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
    return names | set(PREBOUND)


def _import_bindings(node: ast.Import | ast.ImportFrom) -> list[tuple[str, str | None, str]]:
    """``(module, member, bound name)`` for every name an import statement binds."""
    out: list[tuple[str, str | None, str]] = []
    for alias in node.names:
        if isinstance(node, ast.Import):
            out.append((alias.name, None, alias.asname or alias.name.split(".")[0]))
        else:
            out.append((node.module or "", alias.name, alias.asname or alias.name))
    return out


def _import_problem(module: str, member: str | None, level: int = 0) -> str | None:
    """Why ``import module`` / ``from module import member`` is refused (``None``: allowed)."""
    root = module.split(".")[0]
    allowed = ", ".join(sorted(ALLOWED_MODULES))
    if level:
        return "relative imports are not allowed"
    if root not in ALLOWED_MODULES:
        verb = "import from" if member is not None else "import of"
        return UNAVAILABLE_HINTS.get(root) or f"{verb} {module!r} is not allowed (allowed: {allowed})"
    if any(part.startswith("_") for part in module.split(".")):
        return f"importing {'from ' if member is not None else ''}private module {module!r} is not allowed"
    if member == "*":
        return "star imports are not allowed"
    if member is not None and member.startswith("_"):
        return f"importing private name {member!r} is not allowed"
    try:
        target = facade(module)
    except ImportError:
        return f"{root} is not installed"
    except (AttributeError, SandboxViolation):
        return f"module {module!r} is not available to reward programs"
    if member is not None and not hasattr(target, member):
        return f"{module}.{member} is not available to reward programs (available: {', '.join(dir(target))})"
    return None




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
) -> Vetting:
    """Parse and statically check ``source``; return the tree, every finding and the warnings
    (an unused import of an allowed module is a warning; any import of another module, used
    or not, is a finding).

    Args:
        source: the reward program.
        entry: the function that must be defined.
        self_paths: every ``self.a.b`` path the environment card defines; reads of other
            paths rooted at the entry function's first parameter are reported by name.
        self_leaves: the paths whose values are plain data (floats, arrays): attribute
            access beyond them (``.copy()``, ``.shape``) is not checked against the card.
    """
    findings: list[Finding] = []
    warnings: list[Finding] = []
    if len(source) > 100_000:
        return Vetting(None, [Finding("static", "program is longer than 100,000 characters")], [])
    try:
        tree = ast.parse(source, filename="<reward>")
    except SyntaxError as exc:
        return Vetting(None, [Finding("syntax", f"{exc.msg}", exc.lineno)], [])

    def bad(node: ast.AST, message: str) -> None:
        findings.append(Finding("static", message, getattr(node, "lineno", None)))

    defined = _defined_names(tree) | set(SAFE_BUILTINS)
    loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            level = node.level if isinstance(node, ast.ImportFrom) else 0
            for module, member, bound in _import_bindings(node):
                problem = _import_problem(module, member, level)
                if problem:
                    bad(node, problem)
                elif bound not in loaded:
                    what = f"{module}.{member}" if member is not None else module
                    warnings.append(Finding("warning", f"unused import of {what!r}", node.lineno))
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
    return Vetting(tree, findings, warnings)


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
_ATTR = "__rl_attr__"


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
        # x ** 2 and x << 8 must be guarded too: repeated (x = x ** 2 in a loop) they grow
        # integers doubly exponentially in a few iterations.
        if isinstance(op, ast.Mult):
            return not (_float_constant(left) or _float_constant(right))
        if isinstance(op, ast.Pow):
            return not (_float_constant(left) or (_small_number(left) and _small_number(right)))
        if isinstance(op, ast.LShift):
            return not (_small_number(left) and _small_number(right))
        return False

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        self.generic_visit(node)
        if isinstance(node.ctx, ast.Load) and node.attr in CHECKED_METHODS:
            call = ast.Call(ast.Name(_ATTR, ast.Load()), [node.value, ast.Constant(node.attr)], [])
            return ast.copy_location(call, node)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        self.generic_visit(node)
        if type(node.op) in _GUARDS and self._needs_guard(node.op, node.left, node.right):
            call = ast.Call(ast.Name(_GUARDS[type(node.op)], ast.Load()), [node.left, node.right], [])
            return ast.copy_location(call, node)
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
            return ast.copy_location(ast.Assign([node.target], ast.copy_location(call, node)), node)
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
        _ATTR: guard_attr,
        **{name: facade(module) for name, module in PREBOUND.items()},
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
