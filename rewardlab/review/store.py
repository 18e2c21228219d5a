"""Reviews of a reward version: ``rewards/vN/reviews.jsonl``, one JSON object per line.

Appends rewrite the file through a temporary file and ``rename`` inside the checked version
folder (:meth:`RunsRoot.append_atomic`: a crash never leaves a half-written line, and a
``reviews.jsonl`` or folder that is a link is refused, never written through), serialised by a
thread lock and an ``flock`` on ``.reviews.lock`` (two servers on one runs directory do not
lose each other's lines).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from rewardlab.review.safefs import RunsRoot

REVIEWS = "reviews.jsonl"
_LOCK = threading.Lock()


def append_review(root: RunsRoot, version_dir: str, record: dict[str, Any]) -> None:
    """Append ``record`` to ``<version_dir>/reviews.jsonl`` (``version_dir`` relative to the
    runs directory) atomically and durably; :class:`~rewardlab.review.safefs.Refused` if a
    link or special file is in the way."""
    line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode()
    with _LOCK, root.locked(f"{version_dir}/.reviews.lock"):
        root.append_atomic(f"{version_dir}/{REVIEWS}", line)


def parse_reviews(data: bytes) -> tuple[list[dict[str, Any]], list[str]]:
    """The reviews in a ``reviews.jsonl``'s bytes, oldest first, and a reason per unreadable line."""
    reviews: list[dict[str, Any]] = []
    bad: list[str] = []
    for n, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except (json.JSONDecodeError, RecursionError) as exc:
            bad.append(
                f"{REVIEWS} line {n}: invalid JSON ({getattr(exc, 'msg', 'nested too deeply')})"
            )
            continue
        if isinstance(item, dict):
            reviews.append(item)
        else:
            bad.append(f"{REVIEWS} line {n}: not an object")
    return reviews, bad
