"""Launching, watching and cancelling ``rewardlab refine`` from the review page, one at a time
per run.

A refinement is the ordinary command (``python -m rewardlab.cli refine run=<dir> version=N
feedback=... tags=[...] train.total_timesteps=B algo=A``) in a background process leading a
session of its own, writing to ``<run>/refine.log``. ``<run>/refine.lock`` (created
exclusively, holding the process id) keeps a second refinement of the same run from starting
while one is alive, also across server restarts; ``<run>/refine.json`` records what was
launched and how it ended (``done``, ``failed``, ``cancelled``).

The run folder is untrusted: a refinement is refused while the folder holds a link, a special
file or a name that is not UTF-8 anywhere (the command writes ``report.md``, ``summary.json``
and a new ``rewards/vN``, and reads the parent's ``reward.py``), and while the parent's
program or the feedback contains the value of a secret of this process's environment (an API
key must never reach a prompt or a record). Every file is opened through
:class:`~rewardlab.review.safefs.RunsRoot`.

Cancelling sends ``SIGTERM`` to the refinement's process group and to every descendant and
session member recorded before (so a worker that left the group is not forgotten), waits
:data:`CANCEL_GRACE_S`, then sends ``SIGKILL`` to whatever is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardlab.review.runs import RefineState, RunError, RunFiles, integer, num, text
from rewardlab.review.safefs import Refusal, Refused, RunsRoot
from rewardlab.rundir import SUMMARY

LOG = "refine.log"
STATE = "refine.json"
LOCK = "refine.lock"
CANCEL_GRACE_S = 8.0
"""Seconds between ``SIGTERM`` and ``SIGKILL`` when a refinement is cancelled."""
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH", re.IGNORECASE)
ALGOS = ("ppo", "sac")
"""Algorithms the page offers for the next version (``conf/algo``)."""
MAX_BUDGET = 100_000_000


def hydra_quote(value: str) -> str:
    """``value`` as a single-quoted Hydra override value that parses back to exactly ``value``.

    ``${`` is written as ``$ {``: ``rewardlab refine`` copies overrides into the saved run
    config *resolved*, so an escaped interpolation would come back to life there (and
    ``${oc.env:...}`` would copy environment variables into the run record).
    """
    value = value.replace("${", "$ {")
    value = re.sub(
        r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value
    )  # quotes, and backslashes before them
    value = re.sub(
        r"(\\+)$", lambda m: m.group(1) * 2, value
    )  # backslashes before the closing quote
    return f"'{value}'"


def secrets_in(value: str, extra_names: Sequence[str] = ()) -> list[str]:
    """Names of environment variables holding a secret (an API key, token, password: by name,
    or named in ``extra_names``) whose value occurs in ``value``."""
    found = []
    for name, secret in os.environ.items():
        if (
            (SECRET_NAME.search(name) or name in extra_names)
            and len(secret) >= 8
            and secret in value
        ):
            found.append(name)
    return sorted(found)


@dataclass(frozen=True)
class NextVersion:
    """The settings of the version a refinement writes (chosen on the page)."""

    budget: int | None = None
    """``train.total_timesteps``; ``None``: the run's."""
    algo: str | None = None
    """``algo``; ``None``: the run's."""


def refine_command(run_dir: Path, version: int, feedback: str, tags: Sequence[str], overrides: Sequence[str] = (),
                   python: str = sys.executable, next_version: NextVersion = NextVersion(),
                   run_algo: str = "") -> list[str]:  # fmt: skip
    """The command line of one refinement (tags must already be validated identifiers).

    The page's choices come last and replace the server's overrides of the same keys; when the
    algorithm changes, the server's ``algo.*`` overrides (written for the other algorithm) are dropped.
    """
    cmd = [
        python,
        "-m",
        "rewardlab.cli",
        "refine",
        f"run={hydra_quote(str(run_dir))}",
        f"version={version}",
    ]
    if feedback.strip():
        cmd.append(f"feedback={hydra_quote(' '.join(feedback.split()))}")
    if tags:
        cmd.append(f"tags=[{','.join(tags)}]")
    chosen: list[str] = []
    if next_version.budget is not None:
        chosen.append(f"train.total_timesteps={int(next_version.budget)}")
    if next_version.algo is not None and next_version.algo != run_algo:
        chosen.append(f"algo={next_version.algo}")
    keys = {c.split("=", 1)[0] for c in chosen}
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in keys
            and not ("algo" in keys and o.lstrip("+~").startswith("algo."))]  # fmt: skip
    return [*cmd, *kept, *chosen]


def override_value(overrides: Sequence[str], key: str) -> str | None:
    """The value ``overrides`` give ``key`` (the last one wins), if any."""
    found = None
    for o in overrides:
        k, _, v = o.partition("=")
        if k.lstrip("+~") == key:
            found = v
    return found


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return True


def _proc_table() -> dict[int, tuple[int, int]]:
    """``pid -> (parent pid, session id)`` of every process visible in ``/proc``."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[-1].split()
            table[int(entry)] = (int(fields[1]), int(fields[3]))
        except (OSError, IndexError, ValueError):
            continue
    return table


def process_tree(pid: int) -> set[int]:
    """``pid``, its descendants and the members of its session."""
    table = _proc_table()
    found = {pid} | {p for p, (_, sid) in table.items() if sid == pid}
    grew = True
    while grew:
        grew = False
        for p, (ppid, _) in table.items():
            if ppid in found and p not in found:
                found.add(p)
                grew = True
    return found


def _signal_all(pid: int, pids: set[int], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)


def _is_refinement(pid: int, run_dir: Path) -> bool:
    """``pid`` is a ``rewardlab.cli refine`` of ``run_dir`` (not a reused process id)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\x00")
    except OSError:
        return False
    return (
        b"rewardlab.cli" in args
        and b"refine" in args
        and any(str(run_dir).encode() in a for a in args)
    )


@dataclass
class RefineStatus:
    """What the page shows about the latest refinement of a run."""

    state: str
    """``idle`` (never refined from the page), ``running``, ``done``, ``failed``, ``cancelled``
    or ``ended`` (stopped while no server was watching, without a trained version; see the log)."""
    parent: int | None = None
    target: int | None = None
    """The version the refinement writes."""
    started: str = ""
    finished: str = ""
    returncode: int | None = None
    feedback: str = ""
    tags: tuple[str, ...] = ()
    budget: int | None = None
    algo: str = ""
    log_tail: str = ""
    phase: str = ""
    """What the running refinement is doing: writing the reward, checking it, training, evaluating."""
    steps: int | None = None
    """Environment steps trained so far (from the new version's training log)."""

    @property
    def running(self) -> bool:
        return self.state == "running"

    def as_state(self) -> RefineState:
        return RefineState(self.state, self.target)

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "parent": self.parent, "target": self.target, "started": self.started,
                "finished": self.finished, "returncode": self.returncode, "log_tail": self.log_tail,
                "budget": self.budget, "algo": self.algo, "phase": self.phase, "steps": self.steps}  # fmt: skip


def _last_steps(root: RunsRoot, rel: str) -> int | None:
    """The last ``time/total_timesteps`` of an SB3 ``progress.csv`` (header and last line only)."""
    try:
        with root.open(rel) as (fd, st):
            head = os.pread(fd, 8192, 0).split(b"\n", 1)[0].decode("utf-8", "replace").split(",")
            tail = os.pread(fd, 8192, max(0, st.st_size - 8192)).rstrip(b"\n").rsplit(b"\n", 1)[-1]
    except (Refused, OSError):
        return None
    if "time/total_timesteps" not in head:
        return None
    values = tail.decode("utf-8", "replace").split(",")
    i = head.index("time/total_timesteps")
    return integer(values[i]) if i < len(values) and len(values) == len(head) else None


class Refiner:
    """Starts refinements, watches them (one watcher thread per running process), cancels them."""

    def __init__(
        self, root: RunsRoot, overrides: Sequence[str] = (), python: str = sys.executable
    ) -> None:
        self.root = root
        self.overrides = list(overrides)
        self.python = python
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._cancelled: set[str] = set()

    # ------------------------------------------------------------------ reading state

    def _read_state(self, run_id: str) -> dict[str, Any] | None:
        try:
            data, cut = self.root.read_bytes(f"{run_id}/{STATE}", 64 * 1024)
            value = json.loads(data)
        except (FileNotFoundError, Refused):  # a linked state file is listed as refused by the page
            return None
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) and not cut else {}

    def status(self, run_id: str, *, tail: bool = True) -> RefineStatus:
        data = self._read_state(run_id)
        if data is None:
            return RefineStatus("idle")
        tags = data.get("tags")
        st = RefineStatus(
            state=text(data.get("state"), "ended"), parent=integer(data.get("parent")),
            target=integer(data.get("target")), started=text(data.get("started")),
            finished=text(data.get("finished")), returncode=integer(data.get("returncode")),
            feedback=text(data.get("feedback")), budget=integer(data.get("budget")), algo=text(data.get("algo")),
            tags=tuple(str(t) for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
        )  # fmt: skip
        files = RunFiles(self.root, run_id)
        if st.state == "running" and not self._alive(run_id, integer(data.get("pid")) or 0):
            # finished while no server was watching: its trained version tells how it went
            trained = st.target is not None and _finished(files, f"rewards/v{st.target}")
            st.state = "done" if trained else "ended"
        if st.running and st.target is not None:
            st.phase, st.steps = self._phase(files, st.target)
        if tail and st.state != "idle":
            st.log_tail = self.log_tail(run_id)
        return st

    def _phase(self, files: RunFiles, target: int) -> tuple[str, int | None]:
        sub = f"rewards/v{target}"
        if not files.is_dir(sub):
            return "starting", None
        if _finished(files, sub):
            return "recording", None
        if files.is_file(f"{sub}/model.zip"):
            return "evaluating", None
        if files.is_dir(f"{sub}/tb"):
            return "training", _last_steps(self.root, files.rel(f"{sub}/tb/progress.csv")) or 0
        if files.is_file(f"{sub}/reward.py"):
            return "checking", None
        return "writing the reward", None

    def log_tail(self, run_id: str, lines: int = 30) -> str:
        try:
            with self.root.open(f"{run_id}/{LOG}") as (fd, st):
                data = os.pread(fd, 8192, max(0, st.st_size - 8192)).decode(
                    "utf-8", errors="replace"
                )
        except (OSError, Refused):
            return ""
        return "\n".join(data.splitlines()[-lines:])

    def _alive(self, run_id: str, pid: int) -> bool:
        if run_id in self._procs:  # watched here: alive until the watcher has recorded the end
            return True
        return pid_alive(pid)

    def busy(self, run_id: str) -> bool:
        """A refinement of ``run_id`` is alive (started by this server or another one)."""
        try:
            data, _ = self.root.read_bytes(f"{run_id}/{LOCK}", 64)
        except FileNotFoundError:
            return run_id in self._procs
        except (OSError, Refused):
            return True  # a lock we cannot read: assume someone holds it
        try:
            pid = int(data.strip() or 0)
        except ValueError:
            pid = 0
        return self._alive(run_id, pid)

    # ------------------------------------------------------------------ starting

    def preflight(
        self, run_id: str, parent: int, feedback: str, extra_secret_names: Sequence[str] = ()
    ) -> list[Refusal]:
        """Why the refinement of ``run_id`` must not start (empty: it may)."""
        problems = self.root.links_below(run_id)
        files = RunFiles(self.root, run_id)
        source = files.text(f"rewards/v{parent}/reward.py") or ""
        problems += files.refused
        for name in secrets_in(source, extra_secret_names):
            problems.append(
                Refusal(
                    f"{run_id}/rewards/v{parent}/reward.py",
                    f"contains the value of ${name}; it would reach the prompt",
                )
            )
        for name in secrets_in(feedback, extra_secret_names):
            problems.append(Refusal("feedback", f"contains the value of ${name}"))
        return problems

    def start(self, run_id: str, version: int, feedback: str, tags: Sequence[str],
              next_version: NextVersion = NextVersion(), run_algo: str = "",
              extra_secret_names: Sequence[str] = ()) -> str | None:  # fmt: skip
        """Launch a refinement of ``version``; ``None`` on success, else why not."""
        if self.busy(run_id):
            return "a refinement of this run is already running"
        problems = self.preflight(run_id, version, feedback, extra_secret_names)
        if problems:
            return "refused: " + "; ".join(f"{p.path}: {p.reason}" for p in problems[:5])
        run_dir = self.root.path / run_id
        with self._lock:
            if self.busy(run_id):
                return "a refinement of this run is already running"
            self.root.unlink(f"{run_id}/{LOCK}")  # stale: its process is gone
            if not self.root.create_exclusive(f"{run_id}/{LOCK}", str(os.getpid()).encode()):
                return "a refinement of this run is already running"
            files = RunFiles(self.root, run_id)
            target = max(files.version_numbers(), default=-1) + 1
            cmd = refine_command(
                run_dir,
                version,
                feedback,
                tags,
                self.overrides,
                self.python,
                next_version,
                run_algo,
            )
            now = time.strftime("%Y-%m-%d %H:%M:%S")
            try:
                log = self.root.open_for_append(f"{run_id}/{LOG}")
            except (OSError, Refused) as exc:
                self.root.unlink(f"{run_id}/{LOCK}")
                return f"could not open refine.log: {exc}"
            try:
                os.write(
                    log,
                    f"\n=== {now}: refining v{version} -> v{target} (started from the review page)\n".encode(),
                )
                os.write(log, ("$ " + " ".join(cmd) + "\n").encode())
                proc = subprocess.Popen(
                    cmd, cwd=run_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )  # fmt: skip
            except OSError as exc:
                os.write(log, f"could not start: {exc}\n".encode())
                self.root.unlink(f"{run_id}/{LOCK}")
                return f"could not start the refinement: {exc}"
            finally:
                os.close(log)
            self.root.write_atomic(f"{run_id}/{LOCK}", str(proc.pid).encode())
            self._procs[run_id] = proc
            budget = next_version.budget
            if budget is None:
                budget = integer(override_value(self.overrides, "train.total_timesteps"))
            state = {"state": "running", "pid": proc.pid, "parent": version, "target": target, "started": now,
                     "feedback": feedback, "tags": list(tags), "budget": budget,
                     "algo": next_version.algo or run_algo, "command": cmd}  # fmt: skip
            self._write_state(run_id, state)
        threading.Thread(target=self._watch, args=(run_id, proc, state), daemon=True).start()
        return None

    def _write_state(self, run_id: str, state: dict[str, Any]) -> None:
        with contextlib.suppress(
            OSError, Refused
        ):  # the page then shows the lock's view; nothing goes through a link
            self.root.write_atomic(
                f"{run_id}/{STATE}", (json.dumps(state, indent=2) + "\n").encode()
            )

    def _watch(self, run_id: str, proc: subprocess.Popen[bytes], state: dict[str, Any]) -> None:
        code = proc.wait()
        with self._lock:
            cancelled = run_id in self._cancelled
            self._cancelled.discard(run_id)
            state.update(state="cancelled" if cancelled else "done" if code == 0 else "failed", returncode=code,
                         finished=time.strftime("%Y-%m-%d %H:%M:%S"))  # fmt: skip
            self._write_state(run_id, state)
            self.root.unlink(f"{run_id}/{LOCK}")
            self._procs.pop(run_id, None)

    # ------------------------------------------------------------------ cancelling

    def cancel(self, run_id: str, grace_s: float = CANCEL_GRACE_S) -> str | None:
        """Stop the running refinement of ``run_id`` (its whole process tree); ``None`` when
        it is stopped, else why not."""
        data = self._read_state(run_id) or {}
        with self._lock:
            proc = self._procs.get(run_id)
            pid = proc.pid if proc is not None else integer(data.get("pid")) or 0
            if proc is None and (data.get("state") != "running" or not pid_alive(pid)):
                return "no refinement of this run is running"
            if proc is None and not _is_refinement(pid, self.root.path / run_id):
                return f"process {pid} is not this run's refinement; not touched"
            self._cancelled.add(run_id)
        tree = process_tree(pid)
        _signal_all(pid, tree, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(pid_alive(p) for p in tree):
            time.sleep(0.1)
        tree |= process_tree(pid)  # members of its session that appeared meanwhile
        _signal_all(pid, tree, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(pid_alive(p) for p in tree):
            time.sleep(0.05)
        left = sorted(p for p in tree if pid_alive(p))
        if proc is not None:
            proc.wait(timeout=10)
            for _ in range(100):  # the watcher records the end
                if run_id not in self._procs:
                    break
                time.sleep(0.05)
        else:
            with self._lock:
                self._cancelled.discard(run_id)
                data.update(state="cancelled", finished=time.strftime("%Y-%m-%d %H:%M:%S"))
                self._write_state(run_id, data)
                self.root.unlink(f"{run_id}/{LOCK}")
        if left:
            return f"processes {left} did not stop"
        self._append_log(
            run_id, f"=== {time.strftime('%Y-%m-%d %H:%M:%S')}: cancelled from the review page\n"
        )
        return None

    def _append_log(self, run_id: str, line: str) -> None:
        try:
            fd = self.root.open_for_append(f"{run_id}/{LOG}")
        except (OSError, Refused):
            return
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

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


def parse_budget(raw: str) -> int | None:
    """A budget typed on the form (``50000``, ``50k``, ``1.5M``, ``50_000``); ``None`` if invalid."""
    m = re.fullmatch(r"\s*([0-9][0-9_,]*(?:\.[0-9]+)?)\s*([kKmM]?)\s*", raw)
    if not m:
        return None
    value = num(m.group(1).replace("_", "").replace(",", ""))
    if value is None:
        return None
    value *= {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    return int(value) if 1 <= value <= MAX_BUDGET and value == int(value) else None


def _finished(files: RunFiles, sub: str) -> bool:
    """Whether version folder ``sub`` finished training: its ``summary.json`` (written from the
    start of training, :meth:`rewardlab.rundir.RunDir.trained`) says ``done``."""
    try:
        summary = files.json_obj(f"{sub}/{SUMMARY}")
    except RunError:
        return False
    return summary is not None and text(summary.get("status"), "done") == "done"
