"""Launching ``rewardlab refine`` from the review page, one at a time per run.

A refinement is the ordinary command (``python -m rewardlab.cli refine run=<dir> version=N
feedback=... tags=[...]``) in a background process of its own session, writing to
``<run>/refine.log``. ``<run>/refine.lock`` (created exclusively, holding the process id) keeps
a second refinement of the same run from starting while one is alive, also across server
restarts; ``<run>/refine.json`` records what was launched and how it ended.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardlab.review.runs import integer, read_text, text, version_numbers
from rewardlab.rundir import read_json, write_json

LOG = "refine.log"
STATE = "refine.json"
LOCK = "refine.lock"


def hydra_quote(value: str) -> str:
    """``value`` as a single-quoted Hydra override value that parses back to exactly ``value``.

    ``${`` is written as ``$ {``: ``rewardlab refine`` copies overrides into the saved run
    config *resolved*, so an escaped interpolation would come back to life there (and
    ``${oc.env:...}`` would copy environment variables into the run record).
    """
    value = value.replace("${", "$ {")
    value = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)  # quotes, and backslashes before them
    value = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value)  # backslashes before the closing quote
    return f"'{value}'"


def refine_command(run_dir: Path, version: int, feedback: str, tags: Sequence[str], overrides: Sequence[str] = (),
                   python: str = sys.executable) -> list[str]:  # fmt: skip
    """The command line of one refinement (tags must already be validated identifiers)."""
    cmd = [python, "-m", "rewardlab.cli", "refine", f"run={hydra_quote(str(run_dir))}", f"version={version}"]
    if feedback.strip():
        cmd.append(f"feedback={hydra_quote(' '.join(feedback.split()))}")
    if tags:
        cmd.append(f"tags=[{','.join(tags)}]")
    return [*cmd, *overrides]


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class RefineStatus:
    """What the page shows about the latest refinement of a run."""

    state: str
    """``idle`` (never refined from the page), ``running``, ``done``, ``failed`` or ``ended``
    (stopped while no server was watching, without a trained version; see the log)."""
    parent: int | None = None
    target: int | None = None
    """The version the refinement writes."""
    started: str = ""
    finished: str = ""
    returncode: int | None = None
    feedback: str = ""
    tags: tuple[str, ...] = ()
    log_tail: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "parent": self.parent, "target": self.target, "started": self.started,
                "finished": self.finished, "returncode": self.returncode, "log_tail": self.log_tail}  # fmt: skip


def log_tail(run_dir: Path, lines: int = 30) -> str:
    path = run_dir / LOG
    if not path.is_file():
        return ""
    size = path.stat().st_size
    with path.open("rb") as f:
        f.seek(max(0, size - 8192))
        data = f.read().decode("utf-8", errors="replace")
    return "\n".join(data.splitlines()[-lines:])


class Refiner:
    """Starts refinements and watches them (one watcher thread per running process)."""

    def __init__(self, overrides: Sequence[str] = (), python: str = sys.executable) -> None:
        self.overrides = list(overrides)
        self.python = python
        self._lock = threading.Lock()
        self._procs: dict[Path, subprocess.Popen[bytes]] = {}

    def status(self, run_dir: Path) -> RefineStatus:
        path = run_dir / STATE
        if not path.is_file():
            return RefineStatus("idle")
        try:
            data = read_json(path)
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        st = RefineStatus(
            state=text(data.get("state"), "ended"), parent=integer(data.get("parent")),
            target=integer(data.get("target")), started=text(data.get("started")),
            finished=text(data.get("finished")), returncode=integer(data.get("returncode")),
            feedback=text(data.get("feedback")),
            tags=tuple(str(t) for t in data.get("tags", []) if isinstance(t, str)) if isinstance(data.get("tags"), list) else (),
        )  # fmt: skip
        if st.state == "running" and not self._alive(run_dir, integer(data.get("pid")) or 0):
            # finished while no server was watching: its trained version tells how it went
            trained = st.target is not None and (run_dir / "rewards" / f"v{st.target}" / "summary.json").is_file()
            st.state = "done" if trained else "ended"
        if st.state != "idle":
            st.log_tail = log_tail(run_dir)
        return st

    def _alive(self, run_dir: Path, pid: int) -> bool:
        if run_dir in self._procs:  # watched here: alive until the watcher has recorded the end
            return True
        return pid_alive(pid)

    def busy(self, run_dir: Path) -> bool:
        """A refinement of ``run_dir`` is alive (started by this server or another one)."""
        lock = run_dir / LOCK
        if not lock.exists():
            return False
        try:
            pid = int(read_text(lock, 64).strip() or 0)
        except (OSError, ValueError):
            pid = 0
        return self._alive(run_dir, pid)

    def start(self, run_dir: Path, version: int, feedback: str, tags: Sequence[str]) -> str | None:
        """Launch a refinement of ``version``; ``None`` on success, else why not."""
        with self._lock:
            if self.busy(run_dir):
                return "a refinement of this run is already running"
            lock = run_dir / LOCK
            lock.unlink(missing_ok=True)  # stale: its process is gone
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return "a refinement of this run is already running"
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            target = max(version_numbers(run_dir), default=-1) + 1
            cmd = refine_command(run_dir, version, feedback, tags, self.overrides, self.python)
            now = time.strftime("%Y-%m-%d %H:%M:%S")
            try:
                with (run_dir / LOG).open("ab") as log:
                    log.write(f"\n=== {now}: refining v{version} -> v{target} (started from the review page)\n".encode())
                    log.write(("$ " + " ".join(cmd) + "\n").encode())
                    log.flush()
                    proc = subprocess.Popen(
                        cmd, cwd=run_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    )  # fmt: skip
            except OSError as exc:
                lock.unlink(missing_ok=True)
                with (run_dir / LOG).open("a") as log_text:
                    log_text.write(f"could not start: {exc}\n")
                return f"could not start the refinement: {exc}"
            lock.write_text(str(proc.pid))
            self._procs[run_dir] = proc
            state = {"state": "running", "pid": proc.pid, "parent": version, "target": target, "started": now,
                     "feedback": feedback, "tags": list(tags), "command": cmd}  # fmt: skip
            write_json(run_dir / STATE, state)
        threading.Thread(target=self._watch, args=(run_dir, proc, state), daemon=True).start()
        return None

    def _watch(self, run_dir: Path, proc: subprocess.Popen[bytes], state: dict[str, Any]) -> None:
        code = proc.wait()
        with self._lock:
            state.update(state="done" if code == 0 else "failed", returncode=code,
                         finished=time.strftime("%Y-%m-%d %H:%M:%S"))  # fmt: skip
            write_json(run_dir / STATE, state)
            (run_dir / LOCK).unlink(missing_ok=True)
            self._procs.pop(run_dir, None)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the refinements this server started; ``False`` if some still run."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                procs = list(self._procs.values())
            if not procs:
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.1)
