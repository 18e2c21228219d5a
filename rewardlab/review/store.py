"""Reviews of a reward version: ``rewards/vN/reviews.jsonl``, one JSON object per line.

Appends rewrite the file through a temporary file and ``os.replace`` (a crash never leaves a
half-written line), serialised by a thread lock and an ``flock`` on ``.reviews.lock`` (two
servers on one runs directory do not lose each other's lines).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any

REVIEWS = "reviews.jsonl"
_LOCK = threading.Lock()


def append_review(vdir: Path, record: dict[str, Any]) -> None:
    """Append ``record`` to ``vdir/reviews.jsonl`` atomically and durably."""
    line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode()
    path = vdir / REVIEWS
    with _LOCK, (vdir / ".reviews.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = path.read_bytes() if path.exists() else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        tmp = vdir / f".{REVIEWS}.{os.getpid()}.{threading.get_ident()}.tmp"
        with tmp.open("wb") as f:
            f.write(old + line)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(vdir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_reviews(vdir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The reviews of a version, oldest first, and a reason per unreadable line."""
    path = vdir / REVIEWS
    if not path.is_file():
        return [], []
    reviews: list[dict[str, Any]] = []
    bad: list[str] = []
    for n, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as exc:
            bad.append(f"{REVIEWS} line {n}: invalid JSON ({exc.msg})")
            continue
        if isinstance(item, dict):
            reviews.append(item)
        else:
            bad.append(f"{REVIEWS} line {n}: not an object")
    return reviews, bad
