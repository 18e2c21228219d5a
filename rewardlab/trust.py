"""Which run-folder files rewardlab may load code-bearing data from: the ones it wrote itself.

A run folder is untrusted input when someone else hands it over, and some of its files run
code when loaded: SB3 model zips (cloudpickle inside), ``VecNormalize`` statistics and replay
buffers (pickles); its ``config.yaml`` names code to import (a task's ``entry_point``,
``task_path``), where the API key is sent (``llm.base_url``) and where caches are written.
So, like Jupyter's notebook signatures, rewardlab signs every such file it writes with a key
that only this user can read (HMAC-SHA256 over the file's bytes, in ``<file>.sig``) and loads
one only after checking its signature: reading the bytes once, checking them, and loading
from those bytes (no second read that could differ). A file without a valid signature is
refused with one line that says how to trust it: ``rewardlab trust <folder>``, after reading
what the folder holds.

The key is ``$REWARDLAB_TRUST_KEY`` (a file path) or ``~/.config/rewardlab/trust.key``,
created on first use (32 random bytes, mode 0600). Machines of one cluster that write and read
each other's run folders share it (a shared home, or the same file named by the variable).
Where Landlock confines reads, confined workers cannot read it (their file system view
excludes the home folder); on kernels without Landlock a program that slipped past the vetter
could read it, and only leak it through its rewards and component names (README threat model).

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "stats.pkl").write_bytes(b"data")
    4
    >>> sign(folder / "stats.pkl")
    >>> read_trusted(folder / "stats.pkl")
    b'data'
    >>> (folder / "stats.pkl").write_bytes(b"changed")
    7
    >>> read_trusted(folder / "stats.pkl")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rewardlab.trust.UntrustedFile: ...stats.pkl: its signature does not match ...
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from rewardlab.atomic import write_atomic

KEY_ENV = "REWARDLAB_TRUST_KEY"
"""Environment variable naming the key file (default ``~/.config/rewardlab/trust.key``)."""
SUFFIX = ".sig"
PICKLE_PATTERNS = ("*.zip", "*.pkl")
"""Files rewardlab writes that run code when loaded (SB3 model zips, normalisation statistics,
replay buffers). Its torch files (``*.pt``) hold tensors only and load with
``weights_only=True``."""
_DOMAIN = b"rewardlab-signed-file-v1\0"


class UntrustedFile(ValueError):
    """A file rewardlab would load code or settings from has no valid signature of this user."""


def key_file() -> Path:
    """Where this user's signing key lives."""
    named = os.environ.get(KEY_ENV)
    if named:
        return Path(named).expanduser()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "rewardlab" / "trust.key"


@cache
def _key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".trust-key-")  # mode 0600
        try:
            os.write(fd, secrets.token_bytes(32))
            os.close(fd)
            with contextlib.suppress(FileExistsError):  # another process won the race: use its key
                os.link(tmp, path)  # atomic
        finally:
            os.unlink(tmp)
    key = path.read_bytes()
    if len(key) < 16:
        raise UntrustedFile(
            f"the signing key {path} is shorter than 16 bytes: delete it to make a new one"
        )
    return key


def key() -> bytes:
    """This user's signing key (created on first use)."""
    return _key(key_file())


def _digest(data: bytes) -> str:
    return hmac.new(key(), _DOMAIN + data, hashlib.sha256).hexdigest()


def signature_file(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


def sign(path: Path) -> None:
    """Sign ``path`` as written by rewardlab (atomically replaces ``<path>.sig``)."""
    path = Path(path)
    write_atomic(signature_file(path), _digest(path.read_bytes()) + "\n")


@contextlib.contextmanager
def signed_output(path: Path) -> Iterator[Path]:
    """A temporary path (beside ``path``) to write ``path``'s new content to; when the block
    ends, that content replaces ``path``, signed.

    A kill at any instant (``kill -9``, the machine's power) leaves ``path`` with a signature
    that accepts its bytes: the signature file lists the new digest and the old one while the
    new file is renamed into place, then the new digest alone. (Writing then signing leaves an
    unsigned file between the two, which a resume would then refuse.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        new = _digest(tmp.read_bytes())
        try:
            old = [_digest(read_trusted(path))]
        except (OSError, UntrustedFile):
            old = []
        write_atomic(signature_file(path), "\n".join([new, *old]) + "\n")
        os.replace(tmp, path)
        write_atomic(signature_file(path), new + "\n")
    finally:
        tmp.unlink(missing_ok=True)


def _refusal(path: Path, why: str) -> UntrustedFile:
    return UntrustedFile(
        f"{path}: {why}, so rewardlab will not load it (it may run code): if you trust the "
        f"folder's author, read it, then `rewardlab trust {path.parent}`"
    )


def read_trusted(path: Path) -> bytes:
    """The bytes of ``path`` once its signature is checked.

    Raises:
        UntrustedFile: no signature, or one that does not match the bytes.
        OSError: the file cannot be read.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        expected = signature_file(path).read_text().split()[:2]  # two while being replaced
    except (OSError, UnicodeDecodeError):
        raise _refusal(path, "it has no signature from rewardlab on this machine") from None
    digest = _digest(data)
    if not any(hmac.compare_digest(e, digest) for e in expected):
        raise _refusal(path, "its signature does not match (written elsewhere or changed since)")
    return data


def is_trusted(path: Path) -> bool:
    """Whether ``path`` exists and carries a valid signature."""
    try:
        read_trusted(path)
    except (OSError, UntrustedFile):
        return False
    return True


def _escapes(path: Path, folder: Path) -> bool:
    """Whether the symbolic link ``path`` leads outside ``folder`` (or nowhere)."""
    try:
        return not path.resolve(strict=True).is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return True


def signable(folder: Path) -> Iterator[Path]:
    """The files under ``folder`` that rewardlab signs when it writes them: ``config.yaml`` at
    its top and SB3 model zips and pickles anywhere beneath; also every symbolic link that
    leads outside ``folder`` (never signed, so never trusted). A link inside the folder (a
    search links its best candidate as ``rewards/v0``) is checked where it leads."""
    folder = Path(folder)
    config = folder / "config.yaml"
    if config.exists() or config.is_symlink():
        yield config
    for root, dirs, files in os.walk(folder):  # os.walk does not enter linked folders
        for name in sorted(files):
            path = Path(root) / name
            if any(path.match(p) for p in PICKLE_PATTERNS) or (
                path.is_symlink() and _escapes(path, folder)
            ):
                yield path
        for name in dirs:
            path = Path(root) / name
            if path.is_symlink() and _escapes(path, folder):
                yield path


def untrusted_files(folder: Path) -> list[Path]:
    """The files of :func:`signable` under ``folder`` without a valid signature (a run folder
    from elsewhere, changed since, or recorded by a rewardlab before signatures)."""
    folder = Path(folder)
    return [
        p for p in signable(folder) if (p.is_symlink() and _escapes(p, folder)) or not is_trusted(p)
    ]


def trust_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """Sign every code-bearing file under ``folder`` (the user decided to trust its author);
    ``(signed, symbolic links leading outside it, left untrusted)``."""
    signed, links = [], []
    for path in signable(Path(folder)):
        if path.is_symlink() and _escapes(path, Path(folder)):
            links.append(path)
        else:
            sign(path)
            signed.append(path)
    return signed, links
