"""Per-step ``info`` dicts between a confined worker and the trusted process, packed as numbers.

A training step carries the infos of every environment copy (about 15 scalars each: the task's
success and progress, every reward component, the benchmark's terms). Sent as JSON they cost
more than the rest of the message together (float formatting and parsing, a type check per
value), so the scalar part travels as one ``float64`` array instead:

* a **schema** -- the keys of one info dict, in order, with a type code each (``f`` float,
  ``b`` bool, ``i`` int) -- is sent once, under a small id, in the header's ``"schemas"``
  entry, the first time it occurs (:data:`MAX_SCHEMAS` ids; the worker starts over, sending
  definitions again, when it runs out);
* per message, an ``int32`` array of schema ids (one per info; ``-1``: no info, e.g. a copy
  that did not reset) and one ``float64`` array of all values, concatenated;
* what is not a scalar (short strings, arrays of at most 16 numbers) goes in the header's
  ``"extras"`` as JSON, as before.

:class:`InfoPacker` runs in the worker (untrusted side: it only has to be fast).
:class:`InfoTable` runs in the trusted process and validates everything: schema ids, key
counts and lengths, type codes, array dtypes and lengths, the extras' types and sizes; anything
else raises :class:`MalformedInfos` (the caller kills and replaces the worker). Values are built
only as ``float``, ``bool``, ``int``, ``str`` or lists of numbers: nothing from the worker is
ever constructed as an object or executed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_INFO_KEYS = 256
"""Info entries kept per environment and step."""
MAX_KEY = 200
"""Longest info key (and string value) kept."""
MAX_SCHEMAS = 256
"""Schema ids a worker may define (it starts over, defining them again, once it has used them
all)."""
MAX_LIST = 16
"""Largest numeric array kept in an info (as a list of floats)."""

_CODES: dict[type, str] = {
    float: "f", np.float64: "f", np.float32: "f", np.float16: "f",
    bool: "b", np.bool_: "b",
    int: "i", np.int64: "i", np.int32: "i", np.int16: "i", np.int8: "i",
    np.uint64: "i", np.uint32: "i", np.uint16: "i", np.uint8: "i",
}  # fmt: skip
_EXACT_INT = 2**53


class MalformedInfos(ValueError):
    """The worker's infos broke the format (see the module docstring)."""


def _extra(value: Any) -> Any:
    """A non-scalar info value as JSON-safe plain data, or ``None`` if it is not kept."""
    if isinstance(value, np.ndarray) and value.size <= MAX_LIST and value.dtype.kind in "biuf":
        return [float(v) for v in value.ravel()]
    if isinstance(value, str) and len(value) <= MAX_KEY:
        return value
    return None


class _Full(Exception):
    """The worker's schema table has no free id."""


def _code(value: Any) -> str | None:
    """The type code of a scalar info value (``None``: not a scalar)."""
    code = _CODES.get(type(value))
    if code is not None:
        return code
    if isinstance(value, (bool, np.bool_)):
        return "b"
    if isinstance(value, (int, np.integer)):
        return "i"
    if isinstance(value, (float, np.floating)):
        return "f"
    return None


class InfoPacker:
    """Worker side: packs info dicts (see the module docstring)."""

    def __init__(self) -> None:
        self._ids: dict[tuple[tuple[str, ...], str], int] = {}
        self._simple: dict[
            tuple[tuple[Any, ...], tuple[type, ...]], tuple[tuple[str, ...], str]
        ] = {}
        """Schemas of info dicts whose values all go into the array as they are (floats and
        bools only), by their keys and value types: such a dict is packed without a look at
        each value."""

    def pack(
        self, infos: Sequence[dict[str, Any] | None]
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        """Header entries and the ``[ids, values]`` arrays for ``infos`` (``None``: no info)."""
        try:
            return self._pack(infos)
        except _Full:  # start the table over: this message defines every id it uses
            self._ids.clear()
        try:
            return self._pack(infos)
        except _Full:
            raise ValueError(f"more than {MAX_SCHEMAS} kinds of info dict in one step") from None

    def _pack(
        self, infos: Sequence[dict[str, Any] | None]
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        ids: list[int] = []
        values: list[Any] = []
        schemas: list[Any] = []
        extras: list[Any] = []
        for pos, info in enumerate(infos):
            if info is None:
                ids.append(-1)
                continue
            kinds = (tuple(info), tuple(map(type, info.values())))
            schema = self._simple.get(kinds)
            if schema is not None:
                values.extend(info.values())
            else:
                schema, extra = self._split(info, values)
                if extra:
                    extras.append([pos, extra])
                elif len(schema[0]) == len(info) and set(schema[1]) <= {"f", "b"}:
                    if len(self._simple) >= MAX_SCHEMAS:
                        self._simple.clear()
                    self._simple[kinds] = schema
            sid = self._ids.get(schema)
            if sid is None:
                if len(self._ids) >= MAX_SCHEMAS:
                    raise _Full
                sid = self._ids[schema] = len(self._ids)
                schemas.append([sid, list(schema[0]), schema[1]])
            ids.append(sid)
        header: dict[str, Any] = {}
        if schemas:
            header["schemas"] = schemas
        if extras:
            header["extras"] = extras
        return header, [np.array(ids, dtype=np.int32), np.array(values, dtype=np.float64)]

    @staticmethod
    def _split(
        info: dict[str, Any], values: list[Any]
    ) -> tuple[tuple[tuple[str, ...], str], dict[str, Any]]:
        """``info``'s schema, its scalar values appended to ``values``, and its other values
        that are kept (the extras)."""
        keys: list[str] = []
        codes: list[str] = []
        extra: dict[str, Any] = {}
        for key, value in info.items():
            if len(keys) + len(extra) >= MAX_INFO_KEYS:
                break
            if type(key) is not str or len(key) > MAX_KEY or key == "terminal_observation":
                continue
            code = _code(value)
            if code is None:
                plain = _extra(value)
                if plain is not None:
                    extra[key] = plain
                continue
            if code == "i" and not -_EXACT_INT < value < _EXACT_INT:
                code = "f"
                try:
                    value = float(value)
                except OverflowError:
                    continue
            keys.append(key)
            codes.append(code)
            values.append(value)
        return (tuple(keys), "".join(codes)), extra


class InfoTable:
    """Trusted side: the schemas one worker defined; :meth:`unpack` validates and rebuilds."""

    def __init__(self) -> None:
        self._schemas: dict[int, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {}

    def define(self, raw: Any) -> None:
        """Take the schema definitions of a reply's ``"schemas"`` entry (every reply's, even
        one whose infos are not read, so that later replies can use them).

        Raises:
            MalformedInfos: a definition breaks the format.
        """
        if not isinstance(raw, list) or len(raw) > MAX_SCHEMAS:
            raise MalformedInfos("bad schema list")
        for entry in raw:
            if not (isinstance(entry, list) and len(entry) == 3):
                raise MalformedInfos("bad schema")
            sid, keys, codes = entry
            if not (
                type(sid) is int
                and 0 <= sid < MAX_SCHEMAS
                and isinstance(keys, list)
                and isinstance(codes, str)
                and len(keys) == len(codes) <= MAX_INFO_KEYS
                and all(type(k) is str and len(k) <= MAX_KEY for k in keys)
                and len(set(keys)) == len(keys)
                and "terminal_observation" not in keys
                and set(codes) <= {"f", "b", "i"}
            ):
                raise MalformedInfos("bad schema")
            self._schemas[sid] = (
                tuple(keys),
                tuple(k for k, c in zip(keys, codes, strict=True) if c == "b"),
                tuple(k for k, c in zip(keys, codes, strict=True) if c == "i"),
            )

    def unpack(
        self, header: dict[str, Any], ids: np.ndarray, values: np.ndarray, *, optional: bool
    ) -> list[dict[str, Any] | None]:
        """The info dicts packed in ``ids``, ``values`` and ``header``'s ``"extras"``, with
        the schemas given to :meth:`define` before; ``-1`` ids (``None``) are allowed only if
        ``optional``.

        Raises:
            MalformedInfos: anything that breaks the format.
        """
        if ids.dtype != np.int32 or ids.ndim != 1 or values.dtype != np.float64 or values.ndim != 1:
            raise MalformedInfos("bad info arrays")
        flat = values.tolist()
        out: list[dict[str, Any] | None] = []
        offset = 0
        try:
            for sid in ids.tolist():
                if sid == -1 and optional:
                    out.append(None)
                    continue
                keys, bools, ints = self._schemas[sid]
                end = offset + len(keys)
                if end > len(flat):
                    raise MalformedInfos("info values shorter than announced")
                info = dict(zip(keys, flat[offset:end], strict=True))
                offset = end
                for key in bools:
                    info[key] = info[key] != 0.0
                for key in ints:
                    info[key] = int(info[key])
                out.append(info)
        except (KeyError, ValueError, OverflowError):
            raise MalformedInfos("undefined schema or bad value") from None
        if offset != len(flat):
            raise MalformedInfos("info values longer than announced")
        self._merge(header.get("extras"), out)
        return out

    @staticmethod
    def _merge(raw: Any, out: list[dict[str, Any] | None]) -> None:
        if raw is None:
            return
        if not isinstance(raw, list) or len(raw) > len(out):
            raise MalformedInfos("bad extras")
        for entry in raw:
            if not (isinstance(entry, list) and len(entry) == 2 and type(entry[0]) is int):
                raise MalformedInfos("bad extras")
            pos, extra = entry
            if not 0 <= pos < len(out) or (info := out[pos]) is None:
                raise MalformedInfos("bad extras")
            if not isinstance(extra, dict) or len(info) + len(extra) > MAX_INFO_KEYS:
                raise MalformedInfos("bad extras")
            for key, value in extra.items():
                ok = (isinstance(value, str) and len(value) <= MAX_KEY) or (
                    isinstance(value, list)
                    and len(value) <= MAX_LIST
                    and all(type(v) in (int, float) for v in value)
                )
                if not ok or len(key) > MAX_KEY or key == "terminal_observation" or key in info:
                    raise MalformedInfos("bad extras")
            info.update(extra)
