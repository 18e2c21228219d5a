"""Confined file access for the review page: a runs directory is untrusted input.

Every file the page reads, serves or writes goes through :class:`RunsRoot`, which walks from
the runs directory one component at a time with ``O_NOFOLLOW`` and ``O_DIRECTORY``
(``openat``), so no symbolic link is ever followed, at any depth: a ``report.md``,
``reviews.jsonl``, ``rewards/vN`` or run folder that is a link is *refused*, not resolved. A
file is used only if ``fstat`` on the opened descriptor says it is a regular file that is not on
a pseudo file system (procfs, sysfs, devtmpfs). Writes create a temporary file with
``O_CREAT | O_EXCL | O_NOFOLLOW`` inside the already-opened (checked) folder and ``rename`` it
over the target in that same folder; an existing target that is a link or not a regular file
is refused instead of replaced.

A refusal is a :class:`Refused` exception carrying the path (relative to the runs directory)
and the reason; the page collects them and lists them. Names that are not valid UTF-8 are
refused too (they cannot be shown or addressed in a URL) and described with escapes.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = (
    os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
)  # NONBLOCK: a FIFO must not block open()
PSEUDO_FS = ("/proc", "/sys", "/dev")
"""Mount points whose device ids mark files that are never read (process memory, environment, devices)."""


class Refused(Exception):
    """A path the page will not use; ``rel`` is relative to the runs directory."""

    def __init__(self, rel: str, reason: str) -> None:
        super().__init__(f"{rel}: {reason}")
        self.rel = rel
        self.reason = reason


@dataclass(frozen=True)
class Refusal:
    """One refused path and why, as listed on the page."""

    path: str
    reason: str


def shown_name(name: str) -> str:
    """``name`` as printable text: bytes that are not UTF-8 appear as ``\\xNN`` escapes."""
    return os.fsencode(name).decode("utf-8", errors="backslashreplace")


def utf8_name(name: str) -> bool:
    """``name`` (as ``os.listdir`` decodes it) is valid UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def split_rel(rel: str | Sequence[str]) -> list[str]:
    """The components of a relative path; :class:`Refused` for anything but plain names."""
    parts = rel.split("/") if isinstance(rel, str) else list(rel)
    shown = "/".join(shown_name(p) for p in parts)
    if not parts or any(
        p in ("", ".", "..") or "/" in p or "\x00" in p or "\\" in p for p in parts
    ):
        raise Refused(shown or "(empty)", "not a plain path inside the runs directory")
    if not all(utf8_name(p) for p in parts):
        raise Refused(shown, "the name is not valid UTF-8")
    return parts


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISREG(mode):
        return "a file where a folder was expected"
    return "not a regular file"


class RunsRoot:
    """The runs directory, opened once per operation by descriptor; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        self._pseudo = set()
        for mount in PSEUDO_FS:
            with suppress(OSError):
                self._pseudo.add(os.stat(mount).st_dev)
        with suppress(OSError):
            self._pseudo.add(os.stat("/proc/self").st_dev)

    # ------------------------------------------------------------------ descriptors

    def _describe(self, dir_fd: int, name: str, rel: str) -> Refused:
        """Why ``name`` in ``dir_fd`` could not be opened as asked (it exists)."""
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as exc:
            return Refused(rel, f"cannot be read ({exc.strerror})")
        if stat.S_ISLNK(st.st_mode):
            try:
                target = shown_name(os.readlink(name, dir_fd=dir_fd))
            except OSError:
                target = "?"
            return Refused(rel, f"a symbolic link (to {target}); links are not followed")
        return Refused(rel, _kind(st.st_mode))

    @contextmanager
    def folder(self, rel: str | Sequence[str] = ()) -> Iterator[int]:
        """A descriptor of the folder ``rel`` (``()`` = the runs directory); no component may
        be a link. ``FileNotFoundError`` if it does not exist, :class:`Refused` otherwise."""
        parts = split_rel(rel) if rel else []
        fd = os.open(self.path, DIR_FLAGS & ~os.O_NOFOLLOW)  # the root itself is the user's choice
        try:
            for i, part in enumerate(parts):
                try:
                    nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    raise
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                        raise self._describe(fd, part, "/".join(parts[: i + 1])) from None
                    raise Refused(
                        "/".join(parts[: i + 1]), f"cannot be opened ({exc.strerror})"
                    ) from None
                os.close(fd)
                fd = nxt
            if os.fstat(fd).st_dev in self._pseudo:
                raise Refused(
                    "/".join(parts) or ".", "on a pseudo file system (procfs, sysfs or devices)"
                )
            yield fd
        finally:
            os.close(fd)

    def _open_file(self, dir_fd: int, name: str, rel: str) -> tuple[int, os.stat_result]:
        try:
            fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                raise self._describe(dir_fd, name, rel) from None
            raise Refused(rel, f"cannot be read ({exc.strerror})") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_dev in self._pseudo:
            os.close(fd)
            reason = (
                "on a pseudo file system (procfs, sysfs or devices)"
                if st.st_dev in self._pseudo
                else _kind(st.st_mode)
            )
            raise Refused(rel, reason)
        return fd, st

    @contextmanager
    def open(self, rel: str | Sequence[str]) -> Iterator[tuple[int, os.stat_result]]:
        """``(descriptor, stat)`` of the regular file ``rel`` opened for reading."""
        parts = split_rel(rel)
        with self.folder(parts[:-1]) as dfd:
            fd, st = self._open_file(dfd, parts[-1], "/".join(parts))
            try:
                yield fd, st
            finally:
                os.close(fd)

    def open_binary(self, rel: str | Sequence[str]) -> tuple[object, os.stat_result]:
        """The regular file ``rel`` as an open binary file object (the caller closes it)."""
        parts = split_rel(rel)
        with self.folder(parts[:-1]) as dfd:
            fd, st = self._open_file(dfd, parts[-1], "/".join(parts))
        return os.fdopen(fd, "rb"), st

    # ------------------------------------------------------------------ reading

    def read_bytes(self, rel: str | Sequence[str], limit: int) -> tuple[bytes, bool]:
        """At most ``limit`` bytes of ``rel`` and whether the file was longer."""
        with self.open(rel) as (fd, _):
            chunks: list[bytes] = []
            size = 0
            while size <= limit:
                chunk = os.read(fd, min(1 << 20, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        data = b"".join(chunks)
        return data[:limit], len(data) > limit

    def lstat(self, rel: str | Sequence[str]) -> os.stat_result | None:
        """``lstat`` of ``rel`` inside confined folders; ``None`` if it is missing."""
        parts = split_rel(rel)
        try:
            with self.folder(parts[:-1]) as dfd:
                return os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def entries(self, rel: str | Sequence[str] = ()) -> list[tuple[str, int]]:
        """``(name, lstat mode)`` of the folder's entries, sorted by name (links not followed)."""
        with self.folder(rel) as fd:
            out = []
            with os.scandir(fd) as it:
                for e in it:
                    try:
                        out.append((e.name, e.stat(follow_symlinks=False).st_mode))
                    except OSError:
                        continue
        return sorted(out)

    # ------------------------------------------------------------------ writing

    def _check_target(self, dir_fd: int, name: str, rel: str) -> os.stat_result | None:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            raise self._describe(dir_fd, name, rel)
        return st

    def write_atomic(self, rel: str | Sequence[str], data: bytes, *, mode: int = 0o644) -> None:
        """Replace ``rel`` with ``data``: temporary file + ``rename`` inside the checked folder.
        An existing target that is not a regular file (a link ...) is refused, never replaced."""
        parts = split_rel(rel)
        with self.folder(parts[:-1]) as dfd:
            self._check_target(dfd, parts[-1], "/".join(parts))
            self._replace(dfd, parts[-1], data, mode)

    def _replace(self, dfd: int, name: str, data: bytes, mode: int) -> None:
        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=dfd,
        )
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp, dir_fd=dfd)
            raise
        os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)

    def append_atomic(self, rel: str | Sequence[str], data: bytes, limit: int = 64 << 20) -> None:
        """Append ``data`` to ``rel`` by rewriting it atomically (a crash never leaves half a
        line); the caller serialises writers. Refuses a target that is not a regular file."""
        parts = split_rel(rel)
        with self.folder(parts[:-1]) as dfd:
            old = b""
            if self._check_target(dfd, parts[-1], "/".join(parts)) is not None:
                fd, st = self._open_file(dfd, parts[-1], "/".join(parts))
                try:
                    if st.st_size > limit:
                        raise Refused(
                            "/".join(parts), f"larger than {limit >> 20} MiB; not rewritten"
                        )
                    old = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
                finally:
                    os.close(fd)
            if old and not old.endswith(b"\n"):
                old += b"\n"
            self._replace(dfd, parts[-1], old + data, 0o644)

    def open_for_append(self, rel: str | Sequence[str]) -> int:
        """A descriptor appending to the regular file ``rel`` (created if missing, never through
        a link); for a child process's log. The caller closes it."""
        parts = split_rel(rel)
        with self.folder(parts[:-1]) as dfd:
            self._check_target(dfd, parts[-1], "/".join(parts))
            fd = os.open(
                parts[-1],
                os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=dfd,
            )
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # raced into something else between the check and the open
            os.close(fd)
            raise Refused("/".join(parts), _kind(st.st_mode))
        return fd

    def create_exclusive(self, rel: str | Sequence[str], data: bytes) -> bool:
        """Create ``rel`` holding ``data`` if no entry of that name exists (a lock); ``False``
        if one does."""
        parts = split_rel(rel)
        with self.folder(parts[:-1]) as dfd:
            try:
                fd = os.open(
                    parts[-1],
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o644,
                    dir_fd=dfd,
                )
            except FileExistsError:
                return False
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        return True

    def unlink(self, rel: str | Sequence[str]) -> None:
        """Remove the entry ``rel`` (a link is removed itself, its target untouched); missing is fine."""
        parts = split_rel(rel)
        try:
            with self.folder(parts[:-1]) as dfd:
                os.unlink(parts[-1], dir_fd=dfd)
        except FileNotFoundError:
            pass

    @contextmanager
    def locked(self, rel: str | Sequence[str]) -> Iterator[None]:
        """An exclusive ``flock`` on the lock file ``rel`` (created if missing, never through a link)."""
        import fcntl

        fd = self.open_for_append(rel)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ whole trees

    def links_below(
        self, rel: str | Sequence[str], limit: int = 20, max_entries: int = 200_000
    ) -> list[Refusal]:
        """Links, special files and non-UTF-8 names anywhere below the folder ``rel`` (at most
        ``limit`` listed): a command that will write into that folder must not meet any."""
        found: list[Refusal] = []
        base = split_rel(rel) if rel else []
        stack: list[list[str]] = [base]
        seen = 0
        while stack and len(found) < limit:
            parts = stack.pop()
            try:
                entries = self.entries(parts)
            except Refused as exc:
                found.append(Refusal(exc.rel, exc.reason))
                continue
            except FileNotFoundError:
                continue
            for name, mode in entries:
                seen += 1
                sub = [*parts, name]
                shown = "/".join(shown_name(p) for p in sub)
                if not utf8_name(name):
                    found.append(Refusal(shown, "the name is not valid UTF-8"))
                elif stat.S_ISDIR(mode):
                    stack.append(sub)
                elif not stat.S_ISREG(mode):
                    try:
                        with self.folder(parts) as dfd:
                            found.append(Refusal(shown, self._describe(dfd, name, shown).reason))
                    except (Refused, OSError):
                        found.append(Refusal(shown, _kind(mode)))
            if seen > max_entries:
                found.append(
                    Refusal(
                        "/".join(base) or ".",
                        f"more than {max_entries} entries; not checked further",
                    )
                )
                break
        return found[:limit]
