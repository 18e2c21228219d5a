"""A fork server for confined workers: one trusted process per rewardlab process that has
imported numpy, MuJoCo, gymnasium and rewardlab once, and forks a worker in milliseconds.

The zygote never runs generated code: its children do, after building their environment and
putting up the OS wall (:mod:`rewardlab.workers.worker`, :mod:`rewardlab.reward.confine`). It
is started with the scrubbed environment of :func:`~rewardlab.reward.confine.worker_environment`
(no keys, one BLAS thread, so forking it is safe), dies with its parent, and its children die
with it. Requests travel over a ``SOCK_SEQPACKET`` unix socket pair, with the worker's pipe ends
passed as file descriptors; the parent then talks to each worker directly over those pipes.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from rewardlab.reward.confine import die_with_parent, worker_environment

_MAX_MESSAGE = 1 << 16


class ZygoteError(RuntimeError):
    """The fork server could not be started or stopped answering."""


class Zygote:
    """Parent-side handle of the fork server (see the module docstring); one per process."""

    _current: Zygote | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        self.pid = os.getpid()
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = worker_environment()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "rewardlab.workers.zygote", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )  # fmt: skip
        theirs.close()
        reply = self._reply(timeout=300.0)
        if reply.get("ready") is not True:
            raise ZygoteError(f"the worker fork server did not start: {reply}")

    @classmethod
    def get(cls) -> Zygote:
        """This process's fork server (started on first use, restarted if it died)."""
        with cls._lock:
            z = cls._current
            if z is None or z.pid != os.getpid() or z.proc.poll() is not None:
                cls._current = z = Zygote()
            return z

    def _reply(self, timeout: float) -> dict[str, Any]:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            raise ZygoteError("the worker fork server did not answer")
        data = self.sock.recv(_MAX_MESSAGE)
        if not data:
            raise ZygoteError("the worker fork server exited")
        out: dict[str, Any] = json.loads(data)
        return out

    def spawn(self, fds: list[int]) -> int:
        """Fork a worker that owns ``fds`` (its input, output, error and trace pipe ends);
        return its pid."""
        with self._lock:
            socket.send_fds(self.sock, [json.dumps({"op": "spawn"}).encode()], fds)
            reply = self._reply(timeout=60.0)
        if "pid" not in reply:
            raise ZygoteError(f"the worker fork server could not fork: {reply.get('error')}")
        return int(reply["pid"])

    def exit_status(self, pid: int) -> int | None:
        """How worker ``pid`` ended (``os.waitpid`` status), if it has and the server saw it."""
        with self._lock:
            try:
                self.sock.send(json.dumps({"op": "status", "pid": pid}).encode())
                status = self._reply(timeout=10.0).get("status")
            except (OSError, ZygoteError):
                return None
        return int(status) if status is not None else None


# ----------------------------------------------------------------------------------- server


def _serve(sock: socket.socket) -> None:
    statuses: dict[int, int] = {}
    sock.send(json.dumps({"ready": True}).encode())
    while True:
        while True:  # reap finished workers, remember how they ended
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            statuses[pid] = status
            if len(statuses) > 4096:
                statuses.pop(next(iter(statuses)))
        ready, _, _ = select.select([sock], [], [], 0.2)
        if not ready:
            continue
        data, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 8)
        if not data:
            return  # the parent is gone
        request = json.loads(data)
        if request.get("op") == "status":
            pid = int(request["pid"])
            if pid not in statuses:
                try:
                    waited, status = os.waitpid(pid, os.WNOHANG)
                    if waited:
                        statuses[pid] = status
                except ChildProcessError:
                    pass
            sock.send(json.dumps({"status": statuses.get(pid)}).encode())
            continue
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            sock.send(json.dumps({"error": str(exc)}).encode())
            continue
        if pid == 0:
            code = 1
            try:
                sock.close()
                os.setpgid(0, 0)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                die_with_parent()
                from rewardlab.workers.worker import serve

                serve(*fds)
                code = 0
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"pid": pid}).encode())


def main() -> None:
    """Entry point: ``python -m rewardlab.workers.zygote <socket fd>``."""
    die_with_parent()
    sock = socket.socket(fileno=int(sys.argv[1]))
    import gymnasium  # noqa: F401
    import mujoco  # noqa: F401
    import numpy  # noqa: F401 - what every worker needs, imported once here

    import rewardlab.workers.worker  # noqa: F401
    import rewardlab.wrappers  # noqa: F401

    _serve(sock)


if __name__ == "__main__":
    main()
