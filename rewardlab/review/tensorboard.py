"""TensorBoard on a run's training logs, started from the review page.

One ``tensorboard`` process per run, bound to 127.0.0.1 on a free port, reading the run's
``rewards`` folder (each version's logs appear as ``vN/tb``); stopped when the
review server stops. Started only after the run folder was checked to hold no link or special
file (TensorBoard follows links). The page always shows the equivalent command too.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from rewardlab.review.safefs import RunsRoot


@dataclass
class Board:
    url: str
    proc: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TensorBoards:
    """The TensorBoard processes this review server started."""

    def __init__(self, root: RunsRoot) -> None:
        self.root = root
        self._boards: dict[str, Board] = {}
        self._lock = threading.Lock()

    @staticmethod
    def available() -> bool:
        return importlib.util.find_spec("tensorboard") is not None

    def logdir(self, run_id: str) -> str:
        return str(self.root.path / run_id / "rewards")

    def command(self, run_id: str, versions: Sequence[int]) -> str:
        """The shell command that shows the run's logs (empty without logs)."""
        if not versions:
            return ""
        return f"tensorboard --logdir {shlex.quote(self.logdir(run_id))} --host 127.0.0.1"

    def status(self, run_id: str) -> str | None:
        """The address of the run's TensorBoard if it is running."""
        with self._lock:
            board = self._boards.get(run_id)
            if board is not None and board.proc.poll() is not None:
                del self._boards[run_id]
                board = None
        return board.url if board else None

    def start(self, run_id: str, versions: Sequence[int]) -> str | None:
        """Start TensorBoard on the run (no-op if it runs); ``None`` on success, else why not."""
        if self.status(run_id):
            return None
        if not versions:
            return "no version has TensorBoard logs yet"
        if not self.available():
            return "tensorboard is not installed (pip install tensorboard)"
        problems = self.root.links_below(run_id)
        if problems:
            return "refused: " + "; ".join(f"{p.path}: {p.reason}" for p in problems[:3])
        port = _free_port()
        code = "import sys; from tensorboard.main import run_main; sys.argv[0] = 'tensorboard'; run_main()"
        cmd = [sys.executable, "-c", code, "--logdir", self.logdir(run_id), "--host", "127.0.0.1",
               "--port", str(port), "--reload_interval", "15"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"tensorboard exited with code {proc.returncode}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.3)
        else:
            proc.kill()
            return "tensorboard did not start within 60 s"
        with self._lock:
            self._boards[run_id] = Board(f"http://127.0.0.1:{port}/", proc)
        return None

    def stop_all(self) -> None:
        with self._lock:
            boards = list(self._boards.values())
            self._boards.clear()
        for b in boards:
            b.proc.terminate()
            try:
                b.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                b.proc.kill()
