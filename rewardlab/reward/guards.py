"""Run-time checks on what reward code computes: element counts of new arrays and sequences,
integer sizes of ``*``/``**``/``<<``, no object or oversized dtypes in arguments or results, and
checked ndarray methods (:func:`guard_attr`). The instrumented program calls the ``guard_*``
functions in place of the operators (:mod:`rewardlab.reward.instrument`); the facades
(:mod:`rewardlab.reward.facades`) wrap library functions with :func:`guarded`."""

from __future__ import annotations

import math
import operator
import re
import warnings as pywarnings
from collections.abc import Callable
from typing import Any

import numpy as np

from rewardlab.reward.findings import SandboxViolation
from rewardlab.reward.limits import MAX_ELEMENTS, MAX_INT_BITS, MAX_ITEMSIZE


def check_count(n: float, what: str) -> None:
    """Refuse creating ``n`` elements at once (more than :data:`MAX_ELEMENTS`)."""
    if n > MAX_ELEMENTS:
        raise SandboxViolation(
            f"{what} would create {int(n):,} elements; reward code may create at most "
            f"{MAX_ELEMENTS:,} at once"
        )


def shape_count(shape: Any) -> float:
    """Elements of an array of ``shape`` (an int or a sequence of ints)."""
    if isinstance(shape, (int, np.integer)):
        return float(shape)
    return float(np.prod([float(s) for s in shape])) if len(shape) else 1.0


def check_dtype_like(value: Any, what: str) -> None:
    """Refuse ``value`` if it names an object dtype or one wider than :data:`MAX_ITEMSIZE`."""
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


def check_value(value: Any, what: str, depth: int = 0) -> None:
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
        check_dtype_like(value, what)
    elif isinstance(value, (list, tuple)):
        if depth > 32:
            raise SandboxViolation(f"{what}: argument nested too deeply")
        for item in value:
            check_value(item, what, depth + 1)


def check_broadcast(args: tuple[Any, ...], what: str) -> None:
    """Refuse arrays among ``args`` whose broadcast would exceed :data:`MAX_ELEMENTS`
    (``a[:, None] - b[None, :]`` of two capped arrays can need 10**12 elements)."""
    arrays = [a for a in args if type(a) is np.ndarray and a.ndim]
    if len(arrays) < 2 or math.prod(a.size for a in arrays) <= MAX_ELEMENTS:
        return  # the broadcast is at most the product of the sizes
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        return  # not broadcastable: numpy raises its own error
    check_count(float(math.prod(shape)), what)


def check_result(result: Any, what: str) -> Any:
    """``result``, unless it is (or holds) an object array."""
    items = result if isinstance(result, (tuple, list)) else (result,)
    for item in items:
        if isinstance(item, np.ndarray) and item.dtype.hasobject:
            raise SandboxViolation(f"{what}: object arrays are not allowed in reward code")
    return result


def guarded(
    fn: Callable[..., Any], what: str, precheck: Callable[[tuple[Any, ...]], None] | None = None
) -> Callable[..., Any]:
    """``fn`` with :func:`check_value` (and ``precheck``) on its arguments and
    :func:`check_result` on its result."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for value in args:
            check_value(value, what)
        for value in kwargs.values():
            check_value(value, what)
        check_broadcast(args, what)
        if precheck is not None:
            precheck(args)
        return check_result(fn(*args, **kwargs), what)

    wrapper.__name__ = getattr(fn, "__name__", what)
    wrapper.__doc__ = getattr(fn, "__doc__", None)
    return wrapper


def bounded(iterable: Any, what: str) -> Any:
    """``iterable``, if its length (where it has one) is within :data:`MAX_ELEMENTS`."""
    if hasattr(iterable, "__len__"):
        check_count(float(len(iterable)), what)
    return iterable


_SEQUENCES = (str, bytes, list, tuple)
_FLOATS = frozenset({float, np.float64})
_SCALARS = frozenset({float, int, bool, np.float64, np.float32, np.int64, np.bool_})
_OBJECT = np.dtype(object)


def _int_result(value: int, what: str) -> int:
    if value.bit_length() > MAX_INT_BITS:
        raise SandboxViolation(f"{what}: a {value.bit_length()}-bit integer is too large")
    return value


def _array_result(result: Any, what: str) -> Any:
    if type(result) is np.ndarray and result.dtype is _OBJECT:
        raise SandboxViolation(
            f"{what}: the result would be an object array (not allowed in reward code)"
        )
    return result


def guard_mul(a: Any, b: Any) -> Any:
    """``a * b`` that refuses to build huge strings, lists, tuples, integers or broadcasts."""
    if type(a) is int and type(b) is int:
        if a.bit_length() + b.bit_length() > MAX_INT_BITS:
            raise SandboxViolation(
                f"integer product of {a.bit_length()} and {b.bit_length()} bits is too large"
            )
    else:
        for seq, n in ((a, b), (b, a)):
            if isinstance(seq, _SEQUENCES) and isinstance(n, int):
                check_count(float(len(seq)) * float(n), "sequence repetition")
        check_broadcast((a, b), "*")
    return _array_result(a * b, "*")


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
    check_broadcast((a, b), "**")
    return _array_result(a**b, "**")


def guard_lshift(a: Any, b: Any) -> Any:
    """``a << b`` that refuses integer results above :data:`MAX_INT_BITS` bits."""
    if isinstance(a, int) and isinstance(b, int) and a and a.bit_length() + b > MAX_INT_BITS:
        raise SandboxViolation(f"integer shift by {b} bits is too large")
    return _array_result(a << b, "<<")


def guard_add(a: Any, b: Any) -> Any:
    """``a + b``: no concatenation beyond :data:`MAX_ELEMENTS` (``s = s + s`` doubles),
    no integer beyond :data:`MAX_INT_BITS`, no oversized broadcast, no object array."""
    if type(a) in _FLOATS and type(b) in _SCALARS:
        return a + b  # by far the most common case; cannot build any of the above
    if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
        check_count(float(len(a)) + float(len(b)), "concatenation")
        return operator.add(a, b)
    check_broadcast((a, b), "+")
    result = a + b
    return _int_result(result, "+") if type(result) is int else _array_result(result, "+")


def guard_arith(op: Callable[[Any, Any], Any], symbol: str) -> Callable[[Any, Any], Any]:
    """``op`` (``-``, ``/``, ``//``, ``@``, ``&`` ...) with the broadcast, integer-size and
    object-array checks of :func:`guard_add`."""

    def guard(a: Any, b: Any) -> Any:
        if type(a) in _FLOATS and type(b) in _SCALARS:
            return op(a, b)
        check_broadcast((a, b), symbol)
        result = op(a, b)
        return _int_result(result, symbol) if type(result) is int else _array_result(result, symbol)

    guard.__name__ = f"guard_{op.__name__}"
    return guard


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
MAX_FORMAT_WIDTH = 10_000
"""Largest field width or precision in a format spec or ``%`` format."""


def _check_widths(numbers: Any, what: str) -> None:
    for text in numbers:
        if text == "*":
            raise SandboxViolation(f"{what}: '*' field widths are not allowed in reward code")
        if text and (len(text) > 6 or int(text) > MAX_FORMAT_WIDTH):
            raise SandboxViolation(f"{what}: field width {text[:12]} is above {MAX_FORMAT_WIDTH:,}")


def guard_mod(a: Any, b: Any) -> Any:
    """``a % b``: ``%`` formatting of a string with a field width or precision above
    :data:`MAX_FORMAT_WIDTH` (or ``*``) is refused; arithmetic as :func:`guard_arith`."""
    if isinstance(a, (str, bytes)):
        text = a if isinstance(a, str) else a.decode("latin-1")
        for match in _PERCENT_SPEC.finditer(text):
            _check_widths(match.groups(), "% formatting")
        return a % b
    return _mod(a, b)


_mod = guard_arith(operator.mod, "%")


def guard_format(value: Any, conversion: int, spec: str) -> str:
    """An f-string field ``{value!conversion:spec}`` with the width/precision of ``spec``
    (which may be computed: ``f"{x:>{n}}"``) at most :data:`MAX_FORMAT_WIDTH`."""
    if conversion == ord("r"):
        value = repr(value)
    elif conversion == ord("s"):
        value = str(value)
    elif conversion == ord("a"):
        value = ascii(value)
    _check_widths(re.findall(r"\d+", spec), "format spec")
    return format(value, spec)


CHECKED_METHODS = frozenset(
    {"astype", "view", "sum", "prod", "cumsum", "cumprod", "mean", "std", "var", "trace", "dot",
     "repeat", "resize", "choose", "clip", "round", "compress", "take", "put", "fill", "getfield",
     "setfield", "searchsorted", "max", "min", "all", "any", "argmax", "argmin", "ptp", "cross",
     "extend", "join", "replace", "center", "ljust", "rjust", "zfill"}
)  # fmt: skip
"""Attributes reached through :func:`guard_attr`: the ndarray methods that take a dtype, an
``out`` array or values that could become an object array, and the ``str``/``list`` methods
that can grow a sequence far beyond their arguments."""

_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _check_str_method(obj: Any, name: str, args: tuple[Any, ...]) -> None:
    what = f"{type(obj).__name__}.{name}"
    if name in _WIDTH_METHODS and args and isinstance(args[0], int):
        check_count(float(args[0]), what)
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        check_count(
            float(len(obj)) + float(len(obj) + 1) * float(len(new)) / max(len(old), 1), what
        )
    elif name == "extend" and args:
        check_count(float(len(obj)) + float(len(bounded(args[0], what))), what)


def guard_attr(obj: Any, name: str) -> Any:
    """``obj.name`` where ``name`` is in :data:`CHECKED_METHODS`: ndarray methods get argument
    and result checks, growing ``str``/``list`` methods size checks."""
    value = getattr(obj, name)
    if isinstance(obj, (np.ndarray, np.generic)) and callable(value):
        what = f"ndarray.{name}"

        def precheck(args: tuple[Any, ...]) -> None:
            if name == "repeat" and args:
                check_count(float(np.size(obj)) * float(np.max(args[0])), what)
            elif name == "resize" and args:
                check_count(shape_count(args[0] if len(args) == 1 else args), what)

        return guarded(value, what, precheck)
    if isinstance(obj, (str, bytes)) and name == "join":
        return lambda items: _safe_join(obj, items)
    if isinstance(obj, (str, bytes, list)):

        def checked(*args: Any, **kwargs: Any) -> Any:
            _check_str_method(obj, name, args)
            return value(*args, **kwargs)

        return checked
    return value


def _safe_join(sep: Any, items: Any) -> Any:
    parts = list(bounded(items, "str.join")) if not isinstance(items, (list, tuple)) else items
    check_count(
        float(len(sep)) * len(parts)
        + sum(float(len(p)) if isinstance(p, (str, bytes)) else 0.0 for p in parts),
        "str.join",
    )
    return sep.join(parts)
