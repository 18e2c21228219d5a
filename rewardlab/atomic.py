"""Atomic file writes: a reader never sees half a file, and a link planted where the
temporary file would go is never followed.

The temporary file gets a fresh random name (``mkstemp``: ``O_CREAT | O_EXCL``, mode 0600)
beside the target, then ``rename`` replaces the target, which replaces a symbolic link there
rather than writing through it. Every run-folder file rewardlab writes goes through here.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "summary.json.tmp").symlink_to(folder / "elsewhere")  # planted
    >>> write_atomic(folder / "summary.json", "{}")
    >>> (folder / "summary.json").read_text(), (folder / "elsewhere").exists()
    ('{}', False)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """A new file object that becomes ``path`` when the block ends without an exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
