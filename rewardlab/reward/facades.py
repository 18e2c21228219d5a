"""Read-only stand-ins for the modules reward code may import (:data:`ALLOWED_MODULES`) and the
names bound without an import (:data:`PREBOUND`): a curated numpy with size caps on array
creation and no object or oversized dtypes, ``math`` with capped factorial/comb/perm/prod,
scipy's distances and ``Rotation``, ``transforms3d`` quaternions/euler and ``typing``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from rewardlab.reward.findings import SandboxViolation
from rewardlab.reward.guards import (
    bounded,
    check_count,
    check_result,
    check_value,
    guard_mul,
    guarded,
    shape_count,
)


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


def _capped_shape(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(shape: Any, *args: Any, **kwargs: Any) -> Any:
        check_count(shape_count(shape), f"numpy.{fn.__name__}")
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
        check_count(math.ceil(abs((float(stop) - float(start)) / float(step))), "numpy.arange")
    return np.arange(*args, **kwargs)


def _safe_linspace(start: Any, stop: Any, num: int = 50, *args: Any, **kwargs: Any) -> Any:
    check_count(float(num), "numpy.linspace")
    return np.linspace(start, stop, num, *args, **kwargs)


def _safe_eye(n: int, m: int | None = None, *args: Any, **kwargs: Any) -> Any:
    check_count(float(n) * float(m if m is not None else n), "numpy.eye")
    return np.eye(n, m, *args, **kwargs)


def _safe_identity(n: int, *args: Any, **kwargs: Any) -> Any:
    check_count(float(n) ** 2, "numpy.identity")
    return np.identity(n, *args, **kwargs)


def _safe_tile(a: Any, reps: Any) -> Any:
    check_count(np.size(a) * shape_count(reps), "numpy.tile")
    return np.tile(a, reps)


def _safe_repeat(a: Any, repeats: Any, axis: Any = None) -> Any:
    check_count(np.size(a) * float(np.max(repeats)), "numpy.repeat")
    return np.repeat(a, repeats, axis)


def _safe_outer(a: Any, b: Any, out: Any = None) -> Any:
    check_count(float(np.size(a)) * float(np.size(b)), "numpy.outer")
    return np.outer(a, b, out)


def _safe_kron(a: Any, b: Any) -> Any:
    check_count(float(np.size(a)) * float(np.size(b)), "numpy.kron")
    return np.kron(a, b)


def _safe_meshgrid(*xi: Any, **kwargs: Any) -> Any:
    check_count(float(np.prod([float(np.size(x)) for x in xi])) * len(xi), "numpy.meshgrid")
    return np.meshgrid(*xi, **kwargs)


def _safe_like(fn: Callable[..., Any], position: int = 4) -> Callable[..., Any]:
    """``numpy.*_like`` with its ``shape`` override (keyword or ``position``) capped."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        shape = kwargs.get("shape", args[position] if len(args) > position else None)
        if shape is not None:
            check_count(shape_count(shape), f"numpy.{fn.__name__}")
        return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    return wrapper


def _safe_diag(v: Any, k: int = 0) -> Any:
    if np.ndim(v) == 1:
        check_count((float(np.size(v)) + abs(float(k))) ** 2, "numpy.diag")
    return np.diag(v, k)


def _safe_join(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``concatenate``/``stack``/``hstack`` ... with the total size of the pieces capped."""

    def wrapper(arrays: Any, *args: Any, **kwargs: Any) -> Any:
        if not hasattr(arrays, "__len__"):
            arrays = tuple(arrays)
        total = 0.0
        for piece in bounded(arrays, f"numpy.{fn.__name__}"):
            total += float(np.size(piece))
            check_count(total, f"numpy.{fn.__name__}")
        return fn(arrays, *args, **kwargs)

    wrapper.__name__ = fn.__name__
    return wrapper


def _safe_append(arr: Any, values: Any, axis: Any = None) -> Any:
    check_count(float(np.size(arr)) + float(np.size(values)), "numpy.append")
    return np.append(arr, values, axis)


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


def guard_members(members: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Wrap every function (not types, constants or sub-facades) with :func:`guarded`."""
    return {
        name: guarded(value, f"{prefix}.{name}")
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
        **{
            n: _safe_join(getattr(np, n))
            for n in ("concatenate", "stack", "hstack", "vstack", "column_stack")
        },
    )
    linalg = {n: getattr(np.linalg, n) for n in _LINALG_NAMES.split()}
    members["linalg"] = Facade("numpy.linalg", guard_members(linalg, "numpy.linalg"))
    return Facade("numpy", guard_members(members, "numpy"))


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
    for value in bounded(iterable, "math.prod"):
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
    check_count(_rows(xa) * _rows(xb), "scipy.spatial.distance.cdist")
    return distance.cdist(xa, xb, *args, **kwargs)


def _safe_pdist(x: Any, *args: Any, **kwargs: Any) -> Any:
    from scipy.spatial import distance

    _metric_name(kwargs, args, "scipy.spatial.distance.pdist")
    check_count(_rows(x) ** 2 / 2, "scipy.spatial.distance.pdist")
    return distance.pdist(x, *args, **kwargs)


def _safe_squareform(x: Any, *args: Any, **kwargs: Any) -> Any:
    from scipy.spatial import distance

    n = float(np.size(x))
    check_count(
        n if np.ndim(x) == 2 else 2 * n + math.sqrt(8 * n + 1), "scipy.spatial.distance.squareform"
    )
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
        {"distance": Facade("scipy.spatial.distance", guard_members(dist, "scipy.spatial.distance")),
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
    return check_result(value, what)


def _rotation_call(target: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    what = f"Rotation.{name}"
    for value in (*args, *kwargs.values()):
        if not isinstance(value, Rotation):
            check_value(value, what)
            if isinstance(value, (np.ndarray, list, tuple)):
                check_count(
                    float(np.size(value)) if isinstance(value, np.ndarray) else float(len(value)),
                    what,
                )
    if name in ("identity", "random"):
        num = kwargs.get("num", args[0] if args else None)
        if num is not None:
            check_count(9.0 * float(num), what)
    return _wrap(
        getattr(target, name)(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}), what
    )


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
        subs[sub] = Facade(f"transforms3d.{sub}", guard_members(members, f"transforms3d.{sub}"))
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
