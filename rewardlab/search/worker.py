"""One job of a launched batch (:mod:`rewardlab.search.launch`), as a Hydra application.

Run by the launcher as a multirun: ``python -m rewardlab.search.worker -m spec=<jobs.json>
index=0,1,2 hydra/launcher=joblib``; job ``index`` trains ``jobs[index]`` of the spec with the
run's saved config and writes ``result_<index>.json`` next to the spec.

Isolation. Where the launcher reuses its worker processes (joblib's ``loky`` backend keeps a
pool) or runs them inside a long-lived runtime (a Ray worker), the spec says ``fresh``: the job
then only *supervises* a fresh interpreter (``python -m rewardlab.search.worker --run-job
<spec> <index>``) that trains, so nothing a training leaves behind (globals, torch threads,
the memory cap, a crashed native library) reaches the next job. The supervisor

* pins a GPU: with ``search.gpus`` set, it holds an exclusive lock on one of them for the
  child's lifetime (machine-wide, under the temp directory) and passes it as
  ``CUDA_VISIBLE_DEVICES``, so concurrent jobs never share a device;
* bounds the attempt by ``search.job_timeout_s`` (the child is killed, the job recorded as
  timed out);
* re-runs a child that was killed by a signal (OOM killer, a crash, ``kill``) up to
  ``search.retries`` times, resuming from the job's last checkpoint, and otherwise records the
  failure with its reason;
* dies with its child: the child gets ``SIGKILL`` when the supervisor dies
  (``PR_SET_PDEATHSIG``), so a killed worker never leaves an orphan training.

Every attempt is appended to ``<batch>/attempts_<index>.jsonl`` and the result carries the
list (pids, host, exit, reason). submitit starts a fresh process per job by itself (a SLURM
job, or a local subprocess for ``submitit_local``): there the job trains in place, taking a
GPU of ``search.gpus`` the same way (SLURM assigns ``search.gpus_per_job`` GPUs itself).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from rewardlab.rundir import read_json, write_json
from rewardlab.search.launch import Job, limit_memory, run_job
from rewardlab.tasks.registry import TaskSpec
from rewardlab.trust import read_trusted


@dataclass
class WorkerConfig:
    """The worker's own (tiny) config."""

    spec: str = MISSING
    """``jobs.json`` of the batch."""
    index: int = 0
    """Which job of the batch to run."""


ConfigStore.instance().store(name="rewardlab_search_worker", node=WorkerConfig)


def read_spec(spec_path: Path) -> dict[str, Any]:
    """A batch's ``jobs.json``, signature checked (it names the task's code: :mod:`rewardlab.trust`)."""
    spec = json.loads(read_trusted(spec_path))
    assert isinstance(spec, dict)
    return spec


def read_config(spec: dict[str, Any]) -> Any:
    """The batch's ``config.yaml`` that ``spec`` names, signature checked."""
    return OmegaConf.create(read_trusted(Path(spec["config"])).decode())


def result_path(spec_path: Path, index: int) -> Path:
    return spec_path.parent / f"result_{index}.json"


def train_here(spec_path: Path, index: int, *, pin: bool = False) -> dict[str, Any]:
    """Train job ``index`` of the spec in this process and write its result; ``pin``: first take
    a free GPU of ``search.gpus`` for the training (a supervisor pins its child itself)."""
    spec = read_spec(spec_path)
    run_cfg = read_config(spec)
    task = TaskSpec.from_dict(spec["task"])
    job = Job(**spec["jobs"][index])
    limit_memory(run_cfg.train)
    with gpu_slot([int(g) for g in run_cfg.search.gpus] if pin else []) as gpu:
        if gpu is not None:  # before anything initialises CUDA in this process
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        result = run_job(run_cfg, task, job)
    result.update(
        host=socket.gethostname(), cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES")
    )
    write_json(result_path(spec_path, index), result)
    return result


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the parent dies (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


GPU_LOCKS = Path(tempfile.gettempdir()) / "rewardlab-gpu-locks"
"""Machine-wide lock files, one per GPU index, held by the job using that GPU."""


@contextlib.contextmanager
def gpu_slot(gpus: list[int], poll_s: float = 0.5) -> Iterator[str | None]:
    """Hold an exclusive lock on a free GPU of ``gpus`` (waiting for one); yields its index as
    a ``CUDA_VISIBLE_DEVICES`` value, or ``None`` when ``gpus`` is empty."""
    if not gpus:
        yield None
        return
    GPU_LOCKS.mkdir(parents=True, exist_ok=True)
    while True:
        for gpu in gpus:
            handle = (GPU_LOCKS / f"gpu_{int(gpu)}.lock").open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            try:
                yield str(int(gpu))
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        time.sleep(poll_s)


def wait_child(
    proc: subprocess.Popen[bytes], timeout: float | None, poll_s: float = 0.1
) -> tuple[int | None, float]:
    """Wait for ``proc`` (killing it after ``timeout`` seconds); its exit code (``None`` when it
    was killed for the timeout, ``-N`` for a signal) and the CPU seconds of its process tree."""
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return (None if timed_out else proc.returncode), float(usage.ru_utime + usage.ru_stime)
        if deadline is not None and time.monotonic() >= deadline and not timed_out:
            proc.kill()
            timed_out = True
        time.sleep(poll_s)


def supervise(spec_path: Path, index: int) -> dict[str, Any]:
    """Run job ``index`` in fresh child processes (see the module docstring); write and return
    its result, a failure result when no attempt produced one."""
    spec = read_spec(spec_path)
    search = read_config(spec).search
    retries = max(0, int(search.retries))
    timeout = float(search.job_timeout_s) or None
    job = spec["jobs"][index]
    out = result_path(spec_path, index)
    log = spec_path.parent / f"attempts_{index}.jsonl"
    attempts: list[dict[str, Any]] = []
    reason = "no attempt was made"
    command = [
        sys.executable,
        "-m",
        "rewardlab.search.worker",
        "--run-job",
        str(spec_path),
        str(index),
    ]
    for attempt in range(retries + 1):
        with gpu_slot([int(g) for g in search.gpus]) as gpu:
            env = dict(os.environ)
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
            started = time.time()
            proc = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)  # noqa: PLW1509 - prctl only
            entry = {"attempt": attempt, "pid": proc.pid, "supervisor_pid": os.getpid(), "host": socket.gethostname(),
                     "node": os.environ.get("REWARDLAB_RAY_NODE"), "cuda_visible_devices": gpu, "started": round(started, 3)}  # fmt: skip
            with log.open("a") as fh:
                fh.write(json.dumps(entry) + "\n")
            code, cpu = wait_child(proc, timeout)
        entry.update(exit=code, wall_s=round(time.time() - started, 1), cpu_s=round(cpu, 1))
        attempts.append(entry)
        if out.exists():
            break
        if code is None:
            reason = f"timed out after {timeout:g} s (search.job_timeout_s)"
            break
        if code < 0:
            reason = f"the training process was killed by {signal.Signals(-code).name}"
            entry["reason"] = reason
            if attempt < retries:
                continue
            reason += f" ({attempt + 1} attempt(s), search.retries={retries})"
            break
        reason = f"the training process exited with code {code} without a result"
        break
    if out.exists():
        result = read_json(out)
    else:
        result = {"job": job["name"], "budget": job["budget"], "status": "error", "error": reason}
    result.update(attempts=attempts, worker_pid=os.getpid())
    write_json(out, result)
    return result


def work(cfg: Any) -> None:
    """Train job ``cfg.index`` of ``cfg.spec`` (supervised in a fresh process when the spec
    says ``fresh``) and write its result."""
    spec_path = Path(cfg.spec)
    if read_spec(spec_path).get("fresh"):
        supervise(spec_path, int(cfg.index))
    else:
        train_here(spec_path, int(cfg.index), pin=True)


@hydra.main(version_base="1.3", config_path=None, config_name="rewardlab_search_worker")
def main(cfg: Any) -> None:
    """Hydra entry point."""
    work(cfg)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--run-job":
        train_here(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
