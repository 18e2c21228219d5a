"""The message format between a trusted process and a confined worker.

A worker runs generated code, so everything it sends is untrusted: no pickle (unpickling runs
code), bounded sizes, and only plain data. A message is::

    b"RLW1" | u32 header length | u64 payload length | JSON header | payload

where the header is a JSON object (at most :data:`MAX_HEADER` bytes) whose ``"~arrays"`` entry
lists ``[dtype, shape]`` of the numeric arrays (bool, int, uint, float; at most 8 bytes per
element) concatenated in the payload (at most :data:`MAX_PAYLOAD` bytes). :func:`read`
enforces a wall-clock deadline (the parent's watchdog), so a worker that hangs, sends garbage
or closes the pipe is noticed, never waited on for ever.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

MAGIC = b"RLW1"
_PREFIX = struct.Struct("<4sIQ")
MAX_HEADER = 4 << 20
"""Largest JSON header (bytes)."""
MAX_PAYLOAD = 512 << 20
"""Largest array payload (bytes)."""
_KINDS = frozenset("biuf")


class WireError(Exception):
    """A malformed, oversized or unexpected message (from an untrusted worker)."""


class WireTimeout(WireError):
    """No complete message before the deadline."""


class WireClosed(WireError):
    """The other side closed the pipe (it exited or was killed)."""


def encode(header: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> bytes:
    """One message (see the module docstring)."""
    specs, chunks = [], []
    for array in arrays:
        array = np.ascontiguousarray(array)
        if array.dtype.kind not in _KINDS or array.dtype.itemsize > 8:
            raise WireError(f"cannot send a {array.dtype} array")
        specs.append([array.dtype.str, list(array.shape)])
        chunks.append(array.tobytes())
    text = json.dumps({**header, "~arrays": specs}, separators=(",", ":")).encode()
    payload = b"".join(chunks)
    return _PREFIX.pack(MAGIC, len(text), len(payload)) + text + payload


def send(fd: int, header: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> None:
    """Write one message to ``fd`` (blocking)."""
    data = memoryview(encode(header, arrays))
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes:
    parts, left = [], n
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not poller.poll(max(1, math.ceil(wait * 1000))):
                raise WireTimeout("no reply before the deadline")
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise WireClosed("the pipe was closed")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _arrays(specs: Any, payload: bytes) -> list[np.ndarray]:
    if not isinstance(specs, list):
        raise WireError("bad array list")
    out, offset = [], 0
    for spec in specs:
        if not (
            isinstance(spec, list)
            and len(spec) == 2
            and isinstance(spec[0], str)
            and isinstance(spec[1], list)
        ):
            raise WireError("bad array spec")
        try:
            dtype = np.dtype(spec[0])
        except TypeError:
            raise WireError(f"bad dtype {spec[0][:20]!r}") from None
        shape = spec[1]
        if dtype.kind not in _KINDS or dtype.itemsize > 8 or dtype.hasobject:
            raise WireError(f"dtype {dtype} is not allowed")
        if len(shape) > 8 or not all(type(s) is int and 0 <= s <= MAX_PAYLOAD for s in shape):
            raise WireError("bad array shape")
        size = math.prod(shape) * dtype.itemsize
        if offset + size > len(payload):
            raise WireError("array data shorter than announced")
        out.append(
            np.frombuffer(payload, dtype=dtype, count=math.prod(shape), offset=offset)
            .reshape(shape)
            .copy()
        )
        offset += size
    if offset != len(payload):
        raise WireError("array data longer than announced")
    return out


def read(fd: int, deadline: float | None = None) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Read one message from ``fd`` by ``deadline`` (``time.monotonic()`` seconds; ``None``:
    wait for ever).

    Raises:
        WireTimeout: nothing complete arrived in time.
        WireClosed: the pipe was closed.
        WireError: the message is malformed or oversized.
    """
    magic, n_header, n_payload = _PREFIX.unpack(_read_exactly(fd, _PREFIX.size, deadline))
    if magic != MAGIC:
        raise WireError("not a rewardlab message")
    if n_header > MAX_HEADER or n_payload > MAX_PAYLOAD:
        raise WireError(f"message too large ({n_header} + {n_payload} bytes)")
    text = _read_exactly(fd, n_header, deadline)
    payload = _read_exactly(fd, n_payload, deadline) if n_payload else b""
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"unreadable header: {type(exc).__name__}") from None
    if not isinstance(header, dict):
        raise WireError("the header is not an object")
    return header, _arrays(header.pop("~arrays", []), payload)
