"""The message format between a trusted process and a confined worker.

A worker runs generated code, so everything it sends is untrusted: no pickle (unpickling runs
code), bounded sizes, and only plain data. A message is::

    b"RLW1" | u32 header length | u64 payload length | JSON header | payload

where the header is a JSON object (at most :data:`MAX_HEADER` bytes) whose ``"~arrays"`` entry
lists ``[dtype, shape]`` of the numeric arrays (bool, int, uint, float; at most 8 bytes per
element) concatenated in the payload (at most :data:`MAX_PAYLOAD` bytes). :class:`Reader`
enforces a wall-clock deadline (the parent's watchdog), so a worker that hangs, sends garbage
or closes the pipe is noticed, never waited on for ever. Arrays read are writable views into
their message's own buffer.
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
"""The array kinds :func:`encode` sends (bool, int, uint, float)."""


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


_DTYPES = {
    dtype.str: dtype
    for base in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                 np.uint32, np.uint64, np.float16, np.float32, np.float64)
    for dtype in (np.dtype(base).newbyteorder("<"), np.dtype(base).newbyteorder(">"))
}  # fmt: skip
"""The array types a message may carry, by their ``dtype.str`` (nothing else is parsed)."""


def _arrays(specs: Any, payload: bytearray) -> list[np.ndarray]:
    """The arrays ``specs`` announces, as views into ``payload`` (a fresh, writable buffer of
    this message alone)."""
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
        dtype = _DTYPES.get(spec[0])
        if dtype is None:
            raise WireError(f"dtype {spec[0][:20]!r} is not allowed")
        shape = spec[1]
        if len(shape) > 8 or not all(type(s) is int and 0 <= s <= MAX_PAYLOAD for s in shape):
            raise WireError("bad array shape")
        count = math.prod(shape)
        size = count * dtype.itemsize
        if offset + size > len(payload):
            raise WireError("array data shorter than announced")
        out.append(np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(shape))
        offset += size
    if offset != len(payload):
        raise WireError("array data longer than announced")
    return out


class Reader:
    """Reads messages from ``fd`` one at a time, with as few system calls as it can (one
    ``poll`` and one ``read`` for a message that has fully arrived); bytes of a following
    message stay buffered for the next :meth:`read`."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray()
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)

    def _fill(self, n: int, deadline: float | None) -> None:
        """Read until ``n`` bytes are buffered (at most ``n`` plus one chunk are ever held)."""
        while len(self._buf) < n:
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0 or not self._poller.poll(max(1, math.ceil(wait * 1000))):
                    raise WireTimeout("no reply before the deadline")
            chunk = os.read(self.fd, min(max(n - len(self._buf), 1 << 16), 1 << 24))
            if not chunk:
                raise WireClosed("the pipe was closed")
            self._buf += chunk

    def read(self, deadline: float | None = None) -> tuple[dict[str, Any], list[np.ndarray]]:
        """Read one message by ``deadline`` (``time.monotonic()`` seconds; ``None``: wait for
        ever).

        Raises:
            WireTimeout: nothing complete arrived in time.
            WireClosed: the pipe was closed.
            WireError: the message is malformed or oversized.
        """
        self._fill(_PREFIX.size, deadline)
        magic, n_header, n_payload = _PREFIX.unpack_from(self._buf)
        if magic != MAGIC:
            raise WireError("not a rewardlab message")
        if n_header > MAX_HEADER or n_payload > MAX_PAYLOAD:
            raise WireError(f"message too large ({n_header} + {n_payload} bytes)")
        start = _PREFIX.size
        end = start + n_header + n_payload
        self._fill(end, deadline)
        text = bytes(self._buf[start : start + n_header])
        payload = self._buf[start + n_header : end]
        del self._buf[:end]
        try:
            header = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise WireError(f"unreadable header: {type(exc).__name__}") from None
        if not isinstance(header, dict):
            raise WireError("the header is not an object")
        return header, _arrays(header.pop("~arrays", []), payload)
