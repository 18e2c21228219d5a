"""Batch values: one reward-program value for every world, with per-world semantics or a refusal.

A :class:`BatchValue` holds a value of every world at once, batch axis *first*
(``(N, *shape)``, where ``shape`` is the value's shape in one world: ``()`` for a proxy leaf,
``(nu,)`` for ``action``). Every operation a reward program applies to it either computes,
for each world, exactly what the same operation computes on that world's value, or raises
:class:`NotBatchable` (the caller then evaluates the program once per world):

* arithmetic, comparisons and numpy ufuncs work elementwise; per-world constants (a
  ``np.array([1.0, 2.0])`` written in the program) broadcast against the per-world shape,
  never against the batch axis;
* reductions (``np.sum``, ``np.mean``, ``np.any``, ``.max()``, ``np.linalg.norm`` ...),
  ``len``, iteration, indexing and reshaping act on the per-world axes only, so no result can
  mix worlds (``np.any(z < 1.0)`` is each world's own ``z < 1.0``);
* anything that needs one world's value as a Python object -- ``if``/``while``/``and`` on a
  value, ``bool``, ``float``, ``int``, ``math.*``, ``np.array(value)``, hashing, formatting,
  item assignment -- raises :class:`NotBatchable`, as does every numpy function not
  implemented here.

Python floats and numpy float64 differ in how they combine with float32 arrays (NEP 50:
``vx * action[0]`` is float32 when ``vx`` is a Python float); a value that is a Python
scalar in every world is *weak* here and combines the same way.

Example:
    >>> import numpy as np
    >>> z = BatchValue(np.array([0.5, 1.2, 1.3]), weak=True)      # a proxy leaf, 3 worlds
    >>> action = BatchValue(np.array([[1.0, 2.0], [0.0, 1.0], [3.0, 0.0]]))
    >>> np.sum(action).values().tolist(), len(action), np.any(z < 1.0).values().tolist()
    ([3.0, 1.0, 3.0], 2, [True, False, False])
    >>> bool(z > 1.0)
    Traceback (most recent call last):
    ...
    rewardlab.rollout.batch.NotBatchable: the truth value of a per-world value (if/while/and/or/not, bool()) differs between worlds
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MAX_WORLD_ELEMENTS = 4096
"""Largest value (elements per world) evaluated batched; larger ones run per world."""

_KINDS = frozenset("biuf")


class NotBatchable(BaseException):
    """A program does something whose per-world meaning a batch value cannot reproduce.

    A ``BaseException`` so that reward code cannot catch it (batched evaluation refuses
    programs with ``try`` anyway).
    """


def _refuse(what: str) -> NotBatchable:
    return NotBatchable(what)


def _weak_placeholder(arr: np.ndarray) -> Any:
    kind = arr.dtype.kind
    return False if kind == "b" else 0 if kind in "iu" else 0.0


def _python_dtype(value: Any) -> np.dtype:
    """The dtype numpy gives a Python scalar on its own (the weak value's storage)."""
    return np.asarray(value).dtype


class BatchValue:
    """A value of every world (see the module docstring). ``weak``: a Python scalar per world."""

    __slots__ = ("_a", "_weak")
    __hash__ = None  # type: ignore[assignment]
    __array_priority__ = 1000

    def __init__(self, values: np.ndarray, *, weak: bool = False) -> None:
        arr = np.asarray(values)
        if arr.ndim == 0 or arr.dtype.kind not in _KINDS:
            raise TypeError(
                f"a batch value needs a numeric array with a batch axis, got {arr.dtype}{arr.shape}"
            )
        if weak and arr.ndim != 1:
            raise TypeError("only per-world scalars can be weak")
        object.__setattr__(self, "_a", arr)
        object.__setattr__(self, "_weak", weak)

    # ------------------------------------------------------------------ for the core

    def values(self) -> np.ndarray:
        """The ``(N, *shape)`` array (the evaluator's view, also reachable by reward code)."""
        return self._a.copy()

    def __repr__(self) -> str:
        return f"<batch value: {len(self._a)} worlds, per-world shape {self._a.shape[1:]}, {self._a.dtype}>"

    # ------------------------------------------------------------------ refusals

    def __bool__(self) -> bool:
        raise _refuse(
            "the truth value of a per-world value (if/while/and/or/not, bool()) differs between worlds"
        )

    def __float__(self) -> float:
        raise _refuse("float() of a per-world value (math.* or float() on state)")

    def __int__(self) -> int:
        raise _refuse("int() of a per-world value")

    def __index__(self) -> int:
        raise _refuse("a per-world value used as an index or count")

    def __complex__(self) -> complex:
        raise _refuse("complex() of a per-world value")

    def __format__(self, spec: str) -> str:
        raise _refuse("formatting a per-world value")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise _refuse(
            "converting a per-world value to a plain array (np.array/np.asarray of state)"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise _refuse("assigning to a per-world value")

    def __setitem__(self, key: Any, value: Any) -> None:
        raise _refuse("item assignment into a per-world value")

    def __contains__(self, item: Any) -> bool:
        raise _refuse("'in' on a per-world value")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # protocol probes (numpy's __array_interface__ ...)
            raise AttributeError(name)
        raise _refuse(f"attribute {name!r} of a per-world value")

    # ------------------------------------------------------------------ shape

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._a.shape[1:])

    @property
    def ndim(self) -> int:
        return self._a.ndim - 1

    @property
    def size(self) -> int:
        return int(np.prod(self._a.shape[1:], dtype=np.int64))

    @property
    def dtype(self) -> np.dtype:
        return self._a.dtype

    @property
    def T(self) -> BatchValue:  # noqa: N802 - numpy's name
        return _transpose(self)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise _refuse("len() of a per-world scalar")
        return int(self._a.shape[1])

    def __iter__(self) -> Any:
        if self.ndim == 0:
            raise _refuse("iterating over a per-world scalar")
        return iter([BatchValue(self._a[:, i]) for i in range(self._a.shape[1])])

    def __getitem__(self, key: Any) -> BatchValue:
        return BatchValue(self._a[_batch_key(key)])

    # ------------------------------------------------------------------ numpy protocols

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if method != "__call__":
            raise _refuse(f"numpy.{ufunc.__name__}.{method} on per-world values")
        if ufunc is np.matmul:
            return _matmul(*inputs, **kwargs)
        if ufunc.signature is not None:
            raise _refuse(f"generalized ufunc numpy.{ufunc.__name__} on per-world values")
        # The lift's stand-ins for builtins give Python floats per world: float(x) and
        # math.f(x) are lifted to numpy ufuncs with dtype=float64, min/max to fmin/fmax.
        weak_result = kwargs.get("dtype") is np.float64 or (
            ufunc in (np.fmin, np.fmax) and all(_is_weak(v) for v in inputs)
        )
        for key in ("out", "where"):
            if kwargs.get(key) is not None:
                raise _refuse(f"numpy.{ufunc.__name__}({key}=...) on per-world values")
            kwargs.pop(key, None)
        arrays = _aligned(inputs, cast=True)
        out = ufunc(*arrays, **kwargs)
        return _wrap(out, weak=weak_result)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        handler = _FUNCTIONS.get(func)
        if handler is None:
            raise _refuse(f"numpy.{getattr(func, '__name__', func)} on per-world values")
        return handler(*args, **kwargs)

    # ------------------------------------------------------------------ operators

    def __neg__(self) -> BatchValue:
        return _operator(operator.neg, np.negative, self)

    def __pos__(self) -> BatchValue:
        return _operator(operator.pos, np.positive, self)

    def __abs__(self) -> BatchValue:
        return _operator(operator.abs, np.absolute, self)

    def __invert__(self) -> BatchValue:
        return _operator(operator.invert, np.invert, self)

    def __round__(self, ndigits: int | None = None) -> BatchValue:
        if ndigits is not None:
            return _wrap(np.round(self._a, ndigits), weak=self._weak)
        out = np.rint(self._a)  # Python's round: half to even, as numpy's rint
        if self._weak and self._a.dtype.kind == "f":
            out = out.astype(np.int64)  # round(float) is an int
        return _wrap(out, weak=self._weak)

    def __matmul__(self, other: Any) -> BatchValue:
        return _matmul(self, other)

    def __rmatmul__(self, other: Any) -> BatchValue:
        return _matmul(other, self)

    def astype(self, dtype: Any) -> BatchValue:
        return BatchValue(self._a.astype(_plain_dtype(dtype)))

    def copy(self) -> BatchValue:
        return BatchValue(self._a.copy(), weak=self._weak)

    def reshape(self, *shape: Any) -> BatchValue:
        return _reshape(self, shape[0] if len(shape) == 1 else shape)

    def ravel(self) -> BatchValue:
        return _reshape(self, -1)

    flatten = ravel

    def squeeze(self, axis: Any = None) -> BatchValue:
        return _squeeze(self, axis)

    def dot(self, other: Any) -> BatchValue:
        return _dot(self, other)

    def clip(self, a_min: Any = None, a_max: Any = None) -> BatchValue:
        return _clip(self, a_min, a_max)

    def transpose(self, *axes: Any) -> BatchValue:
        return _transpose(self, (axes[0] if len(axes) == 1 else axes) or None)


def _method(func: Any) -> Any:
    def method(self: BatchValue, *args: Any, **kwargs: Any) -> Any:
        return _FUNCTIONS[func](self, *args, **kwargs)

    method.__name__ = func.__name__
    return method


for _func in ("sum", "prod", "mean", "std", "var", "max", "min", "any", "all", "argmax", "argmin"):
    setattr(BatchValue, _func, _method(getattr(np, _func)))


def _binary(py_op: Callable[[Any, Any], Any], ufunc: np.ufunc, reflected: bool = False) -> Any:
    def method(self: BatchValue, other: Any) -> Any:
        if not _operand_ok(other):
            return NotImplemented
        a, b = (other, self) if reflected else (self, other)
        return _operator(py_op, ufunc, a, b)

    return method


for _name, _py, _uf in [
    ("add", operator.add, np.add), ("sub", operator.sub, np.subtract),
    ("mul", operator.mul, np.multiply), ("truediv", operator.truediv, np.true_divide),
    ("floordiv", operator.floordiv, np.floor_divide), ("mod", operator.mod, np.remainder),
    ("pow", operator.pow, np.power), ("and", operator.and_, np.bitwise_and),
    ("or", operator.or_, np.bitwise_or), ("xor", operator.xor, np.bitwise_xor),
]:  # fmt: skip
    setattr(BatchValue, f"__{_name}__", _binary(_py, _uf))
    setattr(BatchValue, f"__r{_name}__", _binary(_py, _uf, reflected=True))
for _name, _uf in [
    ("lt", np.less), ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal),
    ("eq", np.equal), ("ne", np.not_equal),
]:  # fmt: skip
    setattr(BatchValue, f"__{_name}__", _binary(getattr(operator, _name), _uf))


# --------------------------------------------------------------------------- helpers


def _operand_ok(value: Any) -> bool:
    if isinstance(value, (BatchValue, bool, int, float, np.generic)):
        return True
    return isinstance(value, np.ndarray) and value.dtype.kind in _KINDS


def _plain_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise _refuse(f"dtype {dtype!r}") from None
    if dt.kind not in _KINDS or dt.itemsize > 8:
        raise _refuse(f"dtype {dt} on per-world values")
    return dt


def _batch_size(values: Sequence[Any]) -> int:
    sizes = {v._a.shape[0] for v in values if isinstance(v, BatchValue)}
    if len(sizes) != 1:
        raise _refuse("values of different batches")
    return sizes.pop()


def _aligned(values: Sequence[Any], *, cast: bool) -> list[Any]:
    """The raw arrays of ``values`` aligned for broadcasting with per-world semantics.

    Batch values become ``(N, 1, ..., 1, *shape)`` with as many per-world dimensions as the
    widest operand; constants keep their shape (they broadcast from the right, as in one
    world). With ``cast``, weak values take the dtype a Python scalar would get against the
    other operands (NEP 50). Per-world results above :data:`MAX_WORLD_ELEMENTS` are refused.
    """
    fast = _scalars(values, cast)
    if fast is not None:
        return fast
    n = _batch_size(values)
    depth = 0
    shapes: list[tuple[int, ...]] = []
    for v in values:
        if isinstance(v, BatchValue):
            shapes.append(v.shape)
        elif isinstance(v, (np.ndarray, np.generic)):
            if v.dtype.kind not in _KINDS:
                raise _refuse(f"a {v.dtype} array with per-world values")
            shapes.append(v.shape)
        elif isinstance(v, (bool, int, float)) or v is None:
            shapes.append(())
        else:
            raise _refuse(f"a {type(v).__name__} with per-world values")
        depth = max(depth, len(shapes[-1]))
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError as exc:
        raise _refuse(f"per-world shapes do not broadcast: {exc}") from None
    if int(np.prod(shape, dtype=np.int64)) > MAX_WORLD_ELEMENTS:
        raise _refuse(
            f"a per-world value of shape {shape} (batched up to {MAX_WORLD_ELEMENTS} elements)"
        )
    weak_dtype = None
    if cast and any(isinstance(v, BatchValue) and v._weak for v in values):
        strong = [
            v._a.dtype if isinstance(v, BatchValue) else v
            for v in values
            if v is not None and not (isinstance(v, BatchValue) and v._weak)
        ]
        if any(not isinstance(s, (bool, int, float)) for s in strong):
            placeholders = [
                _weak_placeholder(v._a) for v in values if isinstance(v, BatchValue) and v._weak
            ]
            weak_dtype = np.result_type(*strong, *placeholders)
    out: list[Any] = []
    for v in values:
        if not isinstance(v, BatchValue):
            out.append(v)
            continue
        arr = v._a
        if v._weak and weak_dtype is not None and arr.dtype != weak_dtype:
            arr = arr.astype(weak_dtype)
        if depth > v.ndim:
            arr = arr.reshape((n,) + (1,) * (depth - v.ndim) + v.shape)
        out.append(arr)
    return out


_F64 = np.dtype(np.float64)


def _scalars(values: Sequence[Any], cast: bool) -> list[Any] | None:
    """The common case of :func:`_aligned`, fast: per-world scalars and Python numbers that
    need no reshaping and no dtype change (``None``: take the general path)."""
    arrays: list[Any] = []
    n = -1
    weak = strong_other = False
    for v in values:
        kind = type(v)
        if kind is BatchValue:
            a = v._a
            if a.ndim != 1 or (n >= 0 and a.shape[0] != n):
                return None
            n = a.shape[0]
            if v._weak:
                weak = True
            elif a.dtype != _F64:
                strong_other = True
            arrays.append(a)
        elif kind is float or kind is int or kind is bool:
            arrays.append(v)
        else:
            return None
    if n < 0 or (cast and weak and strong_other):
        return None
    return arrays


def _new(arr: np.ndarray, weak: bool) -> BatchValue:
    """A batch value around a checked result array (no validation)."""
    value = object.__new__(BatchValue)
    object.__setattr__(value, "_a", arr)
    object.__setattr__(value, "_weak", weak)
    return value


def _wrap(out: Any, *, weak: bool = False) -> Any:
    if type(out) is np.ndarray and out.ndim and out.dtype.kind in _KINDS:
        return _new(out, weak and out.ndim == 1)
    if isinstance(out, tuple):
        return tuple(_wrap(o) for o in out)
    arr = np.asarray(out)
    if arr.ndim == 0:
        raise _refuse("an operation on per-world values lost the batch axis")
    if arr.dtype.kind not in _KINDS:
        raise _refuse(f"a per-world result of dtype {arr.dtype}")
    return BatchValue(arr, weak=weak and arr.ndim == 1)


def _operator(py_op: Callable[..., Any], ufunc: np.ufunc, *operands: Any) -> Any:
    """A Python operator on operands of which at least one is a batch value."""
    all_weak = True
    for v in operands:
        kind = type(v)
        if not ((kind is BatchValue and v._weak) or kind is float or kind is int or kind is bool):
            all_weak = False
            break
    if all_weak:
        # Python scalars in every world: Python's arithmetic (bools are ints, true division
        # of ints is a float); the result is again a Python scalar per world.
        arrays = []
        for v in operands:
            arr = v._a if isinstance(v, BatchValue) else v
            if isinstance(arr, np.ndarray) and arr.dtype.kind == "b" and ufunc not in _BOOL_OK:
                arr = arr.astype(np.int64)
            elif isinstance(arr, bool) and ufunc not in _BOOL_OK:
                arr = int(arr)
            arrays.append(arr)
        if ufunc is np.power and any(
            isinstance(a, np.ndarray) and a.dtype.kind in "iu" for a in arrays
        ):
            raise _refuse("integer power of per-world values")
        return _wrap(ufunc(*arrays), weak=True)
    return BatchValue.__array_ufunc__(
        operands[0] if isinstance(operands[0], BatchValue) else operands[-1],
        ufunc,
        "__call__",
        *operands,
    )


_BOOL_OK = frozenset({np.bitwise_and, np.bitwise_or, np.bitwise_xor, np.less, np.less_equal,
                      np.greater, np.greater_equal, np.equal, np.not_equal})  # fmt: skip


def _batch_key(key: Any) -> tuple[Any, ...]:
    """A per-world index as an index of the batch array (batch axis kept whole)."""
    parts = key if isinstance(key, tuple) else (key,)
    advanced = 0
    for part in parts:
        if isinstance(part, BatchValue):
            raise _refuse("indexing with a per-world value")
        if part is None or part is Ellipsis or isinstance(part, (slice, int, np.integer)):
            continue
        if isinstance(part, bool):
            raise _refuse("indexing with a bool")
        arr = np.asarray(part)
        if arr.dtype.kind not in "biu":
            raise _refuse(f"index of type {type(part).__name__}")
        advanced += 1
    if advanced > 1:
        raise _refuse("more than one array index (numpy moves their axes)")
    return (slice(None), *parts)


def _axes(value: BatchValue, axis: Any) -> tuple[int, ...] | int:
    """Per-world ``axis`` (None, int or tuple) as axes of the batch array."""
    nd = value.ndim
    if axis is None:
        return tuple(range(1, nd + 1))
    items = axis if isinstance(axis, tuple) else (axis,)
    mapped = []
    for a in items:
        if isinstance(a, BatchValue) or not isinstance(a, (int, np.integer)):
            raise _refuse("a reduction axis that is not an integer constant")
        a = int(a)
        if not -nd <= a < nd:
            raise _refuse(f"axis {a} out of range for per-world shape {value.shape}")
        mapped.append(a % nd + 1)
    return tuple(mapped) if isinstance(axis, tuple) else mapped[0]


def _axis(value: BatchValue, axis: Any) -> int:
    """One per-world axis (an int) as an axis of the batch array."""
    if isinstance(axis, tuple):
        raise _refuse("a tuple of axes here")
    mapped = _axes(value, axis)
    assert isinstance(mapped, int)
    return mapped


def _as_batch(value: Any, like: BatchValue) -> BatchValue:
    if isinstance(value, BatchValue):
        return value
    arr = np.asarray(value)
    if arr.dtype.kind not in _KINDS:
        raise _refuse(f"a {arr.dtype} value with per-world values")
    return BatchValue(
        np.broadcast_to(arr, (like._a.shape[0], *arr.shape)).copy(),
        weak=isinstance(value, (bool, int, float)),
    )


def _contiguous(value: BatchValue) -> np.ndarray:
    return np.ascontiguousarray(value._a)


def _reduction(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    def handler(a: Any, axis: Any = None, *args: Any, **kwargs: Any) -> Any:
        if args:
            raise _refuse(f"numpy.{name} with positional options")
        for key in ("out", "where", "initial", "weights"):
            if kwargs.get(key) is not None:
                raise _refuse(f"numpy.{name}({key}=...) on per-world values")
            kwargs.pop(key, None)
        if not isinstance(a, BatchValue):
            raise _refuse(f"numpy.{name} over a sequence of per-world values")
        if "dtype" in kwargs and kwargs["dtype"] is not None:
            kwargs["dtype"] = _plain_dtype(kwargs["dtype"])
        return _wrap(fn(_contiguous(a), axis=_axes(a, axis), **kwargs))

    return handler


def _argreduction(fn: Callable[..., Any]) -> Callable[..., Any]:
    def handler(a: Any, axis: Any = None, **kwargs: Any) -> Any:
        if kwargs.get("out") is not None or not isinstance(a, BatchValue):
            raise _refuse(f"numpy.{fn.__name__} here")
        if axis is None:
            return _wrap(fn(_contiguous(a).reshape(a._a.shape[0], -1), axis=1))
        return _wrap(
            fn(_contiguous(a), axis=_axes(a, axis), keepdims=bool(kwargs.get("keepdims", False)))
        )

    return handler


def _elementwise(fn: Callable[..., Any], name: str, arrays: int) -> Callable[..., Any]:
    """A numpy function that is elementwise in its first ``arrays`` arguments."""

    def handler(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("out") is not None:
            raise _refuse(f"numpy.{name}(out=...) on per-world values")
        kwargs.pop("out", None)
        head, tail = list(args[:arrays]), list(args[arrays:])
        for k in list(kwargs):
            if isinstance(kwargs[k], BatchValue):
                raise _refuse(f"numpy.{name}({k}=<per-world value>)")
        if any(isinstance(t, BatchValue) for t in tail):
            raise _refuse(f"numpy.{name} with a per-world option")
        return _wrap(fn(*_aligned(head, cast=True), *tail, **kwargs))

    return handler


def _is_weak(value: Any) -> bool:
    """A Python scalar per world (a weak batch value or a Python number)."""
    return (isinstance(value, BatchValue) and value._weak) or isinstance(value, (bool, int, float))


def _where(*args: Any) -> Any:
    if len(args) != 3:
        raise _refuse("numpy.where with one argument (indices differ between worlds)")
    weak = all(_is_weak(v) for v in args[1:])
    return _wrap(np.where(*_aligned(args, cast=True)), weak=weak)


def _clip(a: Any, a_min: Any = None, a_max: Any = None, **kwargs: Any) -> Any:
    if kwargs.get("out") is not None:
        raise _refuse("numpy.clip(out=...) on per-world values")
    kwargs.pop("out", None)
    kwargs = {k: v for k, v in kwargs.items() if k in ("min", "max")}
    a_min = kwargs.get("min", a_min)
    a_max = kwargs.get("max", a_max)
    args = [v for v in (a, a_min, a_max)]
    present = [v is not None for v in args]
    aligned = _aligned([v for v in args if v is not None], cast=True)
    it = iter(aligned)
    full: list[Any] = [next(it) if p else None for p in present]
    return _wrap(np.clip(full[0], full[1], full[2]))


def _stack(arrays: Any, axis: int = 0, **kwargs: Any) -> Any:
    items = list(arrays) if not isinstance(arrays, BatchValue) else list(arrays)
    if not items or kwargs.get("out") is not None:
        raise _refuse("numpy.stack here")
    like = next(v for v in items if isinstance(v, BatchValue))
    batch = [_as_batch(v, like) for v in items]
    aligned = _aligned(batch, cast=False)
    shapes = {a.shape[1:] for a in aligned}
    if len(shapes) != 1:
        raise _refuse("numpy.stack of per-world values of different shapes")
    nd = len(shapes.pop()) + 1
    if not -nd <= axis < nd:
        raise _refuse("numpy.stack axis out of range")
    kwargs.pop("out", None)
    dtype = kwargs.pop("dtype", None)
    out = np.stack(aligned, axis=axis % nd + 1)
    return _wrap(out if dtype is None else out.astype(_plain_dtype(dtype)))


def _concatenate(arrays: Any, axis: Any = 0, **kwargs: Any) -> Any:
    items = list(arrays)
    if not items or kwargs.get("out") is not None or kwargs.get("dtype") is not None:
        raise _refuse("numpy.concatenate here")
    like = next(v for v in items if isinstance(v, BatchValue))
    batch = [_as_batch(v, like) for v in items]
    if axis is None:
        return _wrap(
            np.concatenate([_contiguous(b).reshape(b._a.shape[0], -1) for b in batch], axis=1)
        )
    if any(b.ndim == 0 for b in batch):
        raise _refuse("numpy.concatenate of per-world scalars")
    return _wrap(np.concatenate([b._a for b in batch], axis=_axis(batch[0], axis)))


def _atleast(value: Any, like: BatchValue, nd: int) -> BatchValue:
    b = _as_batch(value, like)
    if b.ndim >= nd:
        return b
    return BatchValue(b._a.reshape((b._a.shape[0], *(1,) * (nd - b.ndim), *b.shape)))


def _hstack(tup: Any, **kwargs: Any) -> Any:
    items = list(tup)
    like = next(v for v in items if isinstance(v, BatchValue))
    arrs = [_atleast(v, like, 1) for v in items]
    return _concatenate(arrs, axis=0 if arrs[0].ndim == 1 else 1)


def _vstack(tup: Any, **kwargs: Any) -> Any:
    items = list(tup)
    like = next(v for v in items if isinstance(v, BatchValue))
    return _concatenate([_atleast(v, like, 2) for v in items], axis=0)


def _transpose(a: Any, axes: Any = None) -> BatchValue:
    if not isinstance(a, BatchValue):
        raise _refuse("numpy.transpose here")
    if axes is None:
        order = (0, *range(a.ndim, 0, -1))
    else:
        order = (0, *(int(x) % max(a.ndim, 1) + 1 for x in axes))
    return BatchValue(np.transpose(a._a, order), weak=a._weak)


def _reshape(a: Any, shape: Any, **kwargs: Any) -> BatchValue:
    if not isinstance(a, BatchValue) or kwargs.get("order", "C") != "C":
        raise _refuse("numpy.reshape here")
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(isinstance(d, BatchValue) for d in dims):
        raise _refuse("a per-world shape")
    try:
        return BatchValue(_contiguous(a).reshape((a._a.shape[0], *(int(d) for d in dims))))
    except ValueError as exc:
        raise _refuse(f"reshape: {exc}") from None


def _ravel(a: Any, order: str = "C") -> BatchValue:
    return _reshape(a, -1, order=order)


def _squeeze(a: Any, axis: Any = None) -> BatchValue:
    if not isinstance(a, BatchValue):
        raise _refuse("numpy.squeeze here")
    if axis is None:
        return BatchValue(a._a.reshape((a._a.shape[0], *(d for d in a.shape if d != 1))))
    return BatchValue(np.squeeze(a._a, axis=_axes(a, axis)))


def _expand_dims(a: Any, axis: Any) -> BatchValue:
    if not isinstance(a, BatchValue) or not isinstance(axis, (int, np.integer)):
        raise _refuse("numpy.expand_dims here")
    nd = a.ndim + 1
    if not -nd <= axis < nd:
        raise _refuse("numpy.expand_dims axis out of range")
    return BatchValue(np.expand_dims(a._a, int(axis) % nd + 1))


def _flip(a: Any, axis: Any = None) -> BatchValue:
    if not isinstance(a, BatchValue):
        raise _refuse("numpy.flip here")
    return BatchValue(np.flip(a._a, axis=_axes(a, axis)))


def _dot(a: Any, b: Any) -> Any:
    nd = [v.ndim if isinstance(v, BatchValue) else np.ndim(v) for v in (a, b)]
    if 0 in nd:
        return (
            _operator(operator.mul, np.multiply, a, b)
            if all(isinstance(v, BatchValue) for v in (a, b))
            else BatchValue.__array_ufunc__(
                a if isinstance(a, BatchValue) else b, np.multiply, "__call__", a, b
            )
        )
    if max(nd) > 2:
        raise _refuse("numpy.dot of arrays with more than 2 dimensions per world")
    return _matmul(a, b)


def _vdot(a: Any, b: Any) -> Any:
    return _dot(
        _ravel(a) if isinstance(a, BatchValue) else np.ravel(a),
        _ravel(b) if isinstance(b, BatchValue) else np.ravel(b),
    )


def _inner(a: Any, b: Any) -> Any:
    nd = [v.ndim if isinstance(v, BatchValue) else np.ndim(v) for v in (a, b)]
    if nd != [1, 1]:
        raise _refuse("numpy.inner beyond two vectors per world")
    return _matmul(a, b)


def _matmul(a: Any, b: Any, **kwargs: Any) -> BatchValue:
    """Per-world ``a @ b`` (1-D or 2-D operands), as a stacked matmul over worlds."""
    if kwargs.get("out") is not None:
        raise _refuse("numpy.matmul(out=...) on per-world values")
    n = _batch_size([a, b])
    ops = []
    nds = []
    for v in (a, b):
        if isinstance(v, BatchValue):
            arr, nd = v._a, v.ndim
        else:
            arr = np.asarray(v)
            if arr.dtype.kind not in _KINDS:
                raise _refuse("matmul with a non-numeric operand")
            nd = arr.ndim
            arr = arr[None]
        if nd not in (1, 2):
            raise _refuse("matmul needs 1-D or 2-D values per world")
        nds.append(nd)
        ops.append(arr)
    left, right = ops
    if nds == [1, 1]:  # a dot product per world
        if left.shape[-1] != right.shape[-1]:
            raise _refuse("matmul: per-world shapes do not match")
        out = np.sum(left * right, axis=-1)
        return _wrap(out if out.shape[0] == n else np.broadcast_to(out, (n,)).copy())
    if nds[0] == 1:
        left = left[:, None, :]
    if nds[1] == 1:
        right = right[:, :, None]
    if left.shape[-1] != right.shape[-2]:
        raise _refuse("matmul: per-world shapes do not match")
    out = np.matmul(left, right)  # broadcasts a constant's leading 1 against the worlds
    if nds[1] == 1:
        out = out[..., 0]
    elif nds[0] == 1:
        out = out[:, 0]
    return _wrap(out)


def _norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> BatchValue:
    if not isinstance(x, BatchValue) or isinstance(ord, BatchValue):
        raise _refuse("numpy.linalg.norm here")
    arr = _contiguous(x)
    if axis is None:
        if x.ndim == 0:
            if ord is not None:
                raise _refuse("numpy.linalg.norm of a scalar with ord")
            return _wrap(
                np.abs(arr).astype(np.result_type(arr.dtype, np.float16))
                if keepdims is False
                else np.abs(arr)
            )
        if x.ndim == 1:
            return _wrap(np.linalg.norm(arr, ord=ord, axis=1, keepdims=keepdims))
        if x.ndim == 2:
            return _wrap(np.linalg.norm(arr, ord=ord, axis=(1, 2), keepdims=keepdims))
        if ord is not None:
            raise _refuse("numpy.linalg.norm with ord of arrays above 2-D")
        flat = arr.reshape(arr.shape[0], -1)
        out = np.linalg.norm(flat, axis=1)
        return _wrap(out.reshape((arr.shape[0],) + (1,) * x.ndim) if keepdims else out)
    return _wrap(np.linalg.norm(arr, ord=ord, axis=_axes(x, axis), keepdims=keepdims))


def _cross(a: Any, b: Any, **kwargs: Any) -> BatchValue:
    if kwargs:
        raise _refuse("numpy.cross with options")
    return _wrap(np.cross(*_aligned([a, b], cast=True)))


def _shape(a: Any) -> tuple[int, ...]:
    if not isinstance(a, BatchValue):
        raise _refuse("numpy.shape here")
    return a.shape


def _like(fn: Callable[..., Any]) -> Callable[..., Any]:
    def handler(a: Any, *args: Any, **kwargs: Any) -> BatchValue:
        if not isinstance(a, BatchValue) or kwargs.get("shape") is not None or len(args) > 1:
            raise _refuse(f"numpy.{fn.__name__} here")
        if "dtype" in kwargs and kwargs["dtype"] is not None:
            kwargs["dtype"] = _plain_dtype(kwargs["dtype"])
        if any(isinstance(v, BatchValue) for v in (*args, *kwargs.values())):
            raise _refuse(f"numpy.{fn.__name__} with a per-world fill value")
        return BatchValue(fn(a._a, *args, **kwargs))

    return handler


def _allclose(
    a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False
) -> BatchValue:
    left, right = _aligned([a, b], cast=True)
    close = np.asarray(np.isclose(left, right, rtol=rtol, atol=atol, equal_nan=equal_nan))
    return _wrap(close.reshape(close.shape[0], -1).all(axis=1))


def _diff(a: Any, n: int = 1, axis: int = -1) -> BatchValue:
    if not isinstance(a, BatchValue) or a.ndim == 0:
        raise _refuse("numpy.diff here")
    return _wrap(np.diff(a._a, n=n, axis=_axis(a, axis)))


def _count_nonzero(a: Any, axis: Any = None, *, keepdims: bool = False) -> BatchValue:
    if not isinstance(a, BatchValue):
        raise _refuse("numpy.count_nonzero here")
    return _wrap(
        np.count_nonzero(
            _contiguous(a).reshape(a._a.shape)
            if axis is not None
            else _contiguous(a).reshape(a._a.shape[0], -1),
            axis=_axes(a, axis) if axis is not None else 1,
            keepdims=keepdims,
        )
    )


def _size(a: Any, axis: Any = None) -> int:
    if not isinstance(a, BatchValue) or axis is not None:
        raise _refuse("numpy.size here")
    return a.size


def _ndim(a: Any) -> int:
    if not isinstance(a, BatchValue):
        raise _refuse("numpy.ndim here")
    return a.ndim


def _interp(x: Any, xp: Any, fp: Any, **kwargs: Any) -> BatchValue:
    if not isinstance(x, BatchValue) or isinstance(xp, BatchValue) or isinstance(fp, BatchValue):
        raise _refuse("numpy.interp with per-world sample points")
    if any(isinstance(v, BatchValue) for v in kwargs.values()):
        raise _refuse("numpy.interp with per-world options")
    return _wrap(np.interp(x._a, xp, fp, **kwargs))


def _round(a: Any, decimals: int = 0, out: Any = None) -> BatchValue:
    if out is not None or not isinstance(a, BatchValue):
        raise _refuse("numpy.round here")
    return _wrap(np.round(a._a, decimals))


def _nan_to_num(
    x: Any, copy: bool = True, nan: float = 0.0, posinf: Any = None, neginf: Any = None
) -> BatchValue:
    if not isinstance(x, BatchValue) or any(
        isinstance(v, BatchValue) for v in (nan, posinf, neginf)
    ):
        raise _refuse("numpy.nan_to_num here")
    return _wrap(np.nan_to_num(x._a, nan=nan, posinf=posinf, neginf=neginf))


_FUNCTIONS: dict[Any, Callable[..., Any]] = {
    **{
        getattr(np, n): _reduction(getattr(np, n), n)
        for n in (
            "sum",
            "prod",
            "mean",
            "std",
            "var",
            "max",
            "min",
            "amax",
            "amin",
            "any",
            "all",
            "ptp",
            "nansum",
            "nanmean",
            "nanmax",
            "nanmin",
            "median",
            "nanprod",
        )
    },  # fmt: skip
    np.argmax: _argreduction(np.argmax),
    np.argmin: _argreduction(np.argmin),
    np.where: _where,
    np.clip: _clip,
    np.isclose: _elementwise(np.isclose, "isclose", 2),
    np.allclose: _allclose,
    np.stack: _stack,
    np.concatenate: _concatenate,
    np.hstack: _hstack,
    np.vstack: _vstack,
    np.transpose: _transpose,
    np.reshape: _reshape,
    np.ravel: _ravel,
    np.squeeze: _squeeze,
    np.expand_dims: _expand_dims,
    np.flip: _flip,
    np.dot: _dot,
    np.vdot: _vdot,
    np.inner: _inner,
    np.linalg.norm: _norm,
    np.cross: _cross,
    np.shape: _shape,
    np.size: _size,
    np.ndim: _ndim,
    np.zeros_like: _like(np.zeros_like),
    np.ones_like: _like(np.ones_like),
    np.full_like: _like(np.full_like),
    np.empty_like: _like(np.zeros_like),
    np.diff: _diff,
    np.count_nonzero: _count_nonzero,
    np.interp: _interp,
    np.round: _round,
    np.around: _round,
    np.nan_to_num: _nan_to_num,
    np.atleast_1d: lambda a: _atleast(a, a, 1) if isinstance(a, BatchValue) else np.atleast_1d(a),
    np.copy: lambda a, **kw: a.copy() if isinstance(a, BatchValue) else np.copy(a, **kw),
}


# --------------------------------------------------------------------------- proxies


class BatchView:
    """A batched proxy tree (:func:`rewardlab.rollout.proxies.build_batch_proxy`) whose leaves
    are :class:`BatchValue`: ``(N,)`` leaves are weak (a Python float per world), vector leaves
    (``quaternion``, batch axis last in the proxy) become ``(N, 4)``."""

    __slots__ = ("_proxy",)

    def __init__(self, proxy: Any) -> None:
        object.__setattr__(self, "_proxy", proxy)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._proxy, name)
        if type(value) is np.ndarray:
            if value.ndim == 1:
                return _new(value, True)
            return BatchValue(np.moveaxis(value, -1, 0))
        if isinstance(value, (int, float, str, bool)) or value is None:
            return value
        return BatchView(value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._proxy._path} is read-only (tried to set {name!r})")

    def fields(self) -> tuple[str, ...]:
        return tuple(self._proxy.fields())

    def __repr__(self) -> str:
        return f"<batched {self._proxy!r}>"
