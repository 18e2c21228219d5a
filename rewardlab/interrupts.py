"""Ctrl-C and SIGTERM: both stop a command the same way (checkpoint, status ``stopped``).

``timeout``, SLURM, Ray and container runtimes send SIGTERM; :func:`stop_on_sigterm` turns it
into :class:`Stopped` (a ``KeyboardInterrupt``), so every ``except KeyboardInterrupt`` path
(save a checkpoint, record the run) handles both. :func:`deferred` holds both signals back
while a checkpoint is written, so a second signal cannot leave it half-saved.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Stopped(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM while :func:`stop_on_sigterm` is active."""


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_stopped(signum: int, frame: Any) -> None:
    raise Stopped("stopped by SIGTERM")


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into :class:`Stopped` while the block runs (main thread only; processes
    forked meanwhile get the default handler back)."""
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs, then act on the first that came
    (the handler that was installed runs: Ctrl-C raises ``KeyboardInterrupt``)."""
    if not _main_thread():
        yield
        return
    received: list[int] = []
    previous: dict[int, Any] = {
        s: signal.signal(s, lambda signum, frame: received.append(signum))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        handler = previous[received[0]]
        if callable(handler):
            handler(received[0], None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(received[0])


def _default_sigterm_in_child() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_default_sigterm_in_child)
