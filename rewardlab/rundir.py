"""The run directory: its layout, its status and which reward version is current.

:class:`RunDir` is the one owner of a run folder; every command (``train``, ``refine``,
``evaluate``, E2CL, ``search``) and the review page go through it::

    <run>/config.yaml  .hydra/            the resolved config (resume, refine, evaluate read it)
    <run>/summary.json report.md          status, the reward lineage, the current version
    <run>/rewards/v<N>/                   one folder per reward version:
        reward.py check.json gate.json    the program, its check and pre-flight gate reports
        llm/attempt_<K>.json              every prompt and reply
        feedback.json diff.patch          (refined versions) parent, feedback, evidence; diff
        findings.json e2cl/               (E2CL) what exploring the version found
        verification.json                 (E2CL corrections) accepted or refused
        summary.json                      the version's training status and final evaluation
        metrics.csv curves.png tb/        evaluations over training, plots, TensorBoard/CSV
        checkpoints/ model.zip            checkpoints (model, normalisation, replay buffer)
        vecnormalize.pkl best_model.zip   the trained policy
        videos/ eval/<time>/              evaluation videos; later ``rewardlab evaluate`` runs

**Status.** ``summary.json`` says ``training`` (or ``refining``) while a command works on the
run and one of three final states when it ends: ``done``; ``stopped`` (Ctrl-C or SIGTERM, a
checkpoint is kept: ``rewardlab train run=<dir>`` resumes); ``failed`` with the reason in
``message`` (any exception, a reward program rejected or failing during training). A version's
own ``summary.json`` follows the same states while it trains.

**The current version** is the newest version whose training started (its ``summary.json``
exists) and that no E2CL verification refused. It is what ``evaluate``, ``train run=``,
``refine`` (as the parent) and the review page use unless ``version=N`` says otherwise.

Example:
    >>> import tempfile
    >>> run = RunDir(Path(tempfile.mkdtemp()))
    >>> run.write_version_summary(0, {"status": "done", "success_rate": 0.5})
    >>> run.write_version_summary(1, {"status": "done", "success_rate": 0.2})
    >>> write_json(run.version_dir(1) / VERIFICATION, {"outcome": "refused"})
    >>> run.versions(), run.current_version()
    ([0, 1], 0)
    >>> run.record(status="failed", message="RuntimeError: boom")["status"]
    'failed'
    >>> run.status()
    ('failed', 'RuntimeError: boom')
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rewardlab.atomic import atomic_open, write_atomic
from rewardlab.interrupts import stop_on_sigterm

SUMMARY = "summary.json"
"""Status and results of a run, a reward version, a search candidate or an evaluation."""
CONFIG = "config.yaml"
REPORT = "report.md"
REWARD = "reward.py"
VERIFICATION = "verification.json"
FEEDBACK = "feedback.json"

Status = Literal["training", "refining", "done", "stopped", "failed"]
FINAL: tuple[Status, ...] = ("done", "stopped", "failed")
RUNNING: tuple[Status, ...] = ("training", "refining")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a crash never leaves a half-written file)."""
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def append_csv(path: Path, row: dict[str, Any]) -> None:
    """Append a row, writing the header on first use; new keys extend the header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    fields = list(row)
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            fields = list(reader.fieldnames or []) + [
                k for k in row if k not in (reader.fieldnames or [])
            ]
    rows.append(row)
    with atomic_open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def trim_csv(path: Path, key: str, keep_until: int) -> None:
    """Drop the rows whose ``key`` column exceeds ``keep_until`` (a training that resumed
    from an earlier checkpoint threw those steps away)."""
    rows = read_csv(path)
    kept = [r for r in rows if _number(r.get(key)) <= keep_until]
    if len(kept) == len(rows):
        return
    with atomic_open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def read_summary(folder: Path) -> dict[str, Any] | None:
    """``folder/summary.json`` as a dict (``None`` when missing or not a JSON object)."""
    try:
        data = read_json(folder / SUMMARY)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_summary(folder: Path, data: dict[str, Any]) -> Path:
    """Write ``folder/summary.json`` atomically; its path."""
    write_json(folder / SUMMARY, data)
    return folder / SUMMARY


def outcome(exc: BaseException | None) -> tuple[Status, str]:
    """The final status of work that ended with ``exc`` (``None``: it finished).

    Ctrl-C and SIGTERM (:class:`~rewardlab.interrupts.Stopped`, a ``KeyboardInterrupt``)
    give ``stopped``; any
    other exception gives ``failed`` with its type and message.

    Example:
        >>> outcome(None), outcome(KeyboardInterrupt()), outcome(ValueError("bad"))
        (('done', ''), ('stopped', 'interrupted'), ('failed', 'ValueError: bad'))
    """
    if exc is None:
        return "done", ""
    if isinstance(exc, KeyboardInterrupt):
        return "stopped", str(exc) or "interrupted"
    if isinstance(exc, SystemExit) and not exc.code:
        return "done", ""
    text = str(exc).strip()
    return "failed", f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class RunDir:
    """A run directory (see the module docstring); a thin, stateless view of the folder."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # ---------------------------------------------------------------- layout

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG

    @property
    def summary_file(self) -> Path:
        return self.path / SUMMARY

    @property
    def report_file(self) -> Path:
        return self.path / REPORT

    @property
    def rewards(self) -> Path:
        return self.path / "rewards"

    def save_config(self, cfg: Any) -> None:
        """Write ``config.yaml`` (resolved) and sign it: ``train run=``, ``refine`` and
        ``evaluate`` take settings from a run folder only while its signature holds (they name
        code to import and where keys go: :mod:`rewardlab.trust`)."""
        from omegaconf import OmegaConf

        from rewardlab.trust import signed_output

        with signed_output(self.config_file) as tmp:
            OmegaConf.save(cfg, tmp, resolve=True)

    def exists(self) -> bool:
        """Whether this is a rewardlab run (it holds ``config.yaml``)."""
        return self.config_file.is_file()

    def version_dir(self, version: int) -> Path:
        """Folder of reward version ``version`` (``rewards/v<version>``)."""
        return self.rewards / f"v{version}"

    def versions(self) -> list[int]:
        """Version numbers present on disk, ascending."""
        if not self.rewards.is_dir():
            return []
        return sorted(
            int(p.name[1:])
            for p in self.rewards.iterdir()
            if p.name[:1] == "v" and p.name[1:].isdigit() and p.is_dir()
        )

    def next_version(self) -> int:
        """The number a new version gets."""
        return max(self.versions(), default=-1) + 1

    def source(self, version: int) -> str | None:
        """The version's reward program (``None``: trained on the benchmark's own reward)."""
        path = self.version_dir(version) / REWARD
        return path.read_text() if path.is_file() else None

    # ---------------------------------------------------------------- versions

    def version_summary(self, version: int) -> dict[str, Any] | None:
        """The version's ``summary.json`` (``None`` before its training started)."""
        return read_summary(self.version_dir(version))

    def write_version_summary(self, version: int, data: dict[str, Any]) -> None:
        write_summary(self.version_dir(version), {"version": version, **data})

    def trained(self, version: int) -> bool:
        """Whether the version's training finished (status ``done``)."""
        return (self.version_summary(version) or {}).get("status") == "done"

    def verification(self, version: int) -> dict[str, Any] | None:
        """The E2CL verdict on a correction (``verification.json``), else ``None``."""
        try:
            data = read_json(self.version_dir(version) / VERIFICATION)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def refused(self, version: int) -> bool:
        return (self.verification(version) or {}).get("outcome") == "refused"

    def current_version(self) -> int | None:
        """The newest version whose training started and that no E2CL verification refused
        (``None``: no version reached training)."""
        return next(
            (
                n
                for n in reversed(self.versions())
                if self.version_summary(n) is not None and not self.refused(n)
            ),
            None,
        )

    def resolve_version(self, version: int | None) -> int | None:
        """``version`` if given, else the current version."""
        return version if version is not None else self.current_version()

    def lineage(self) -> list[dict[str, Any]]:
        """One entry per version: number, parent and feedback, training results, verdict."""
        entries: list[dict[str, Any]] = []
        for n in self.versions():
            vdir = self.version_dir(n)
            entry: dict[str, Any] = {"version": n, "has_reward": (vdir / REWARD).is_file()}
            try:
                fb = read_json(vdir / FEEDBACK)
                entry.update(parent=fb.get("parent"), feedback=fb.get("feedback"))
            except (OSError, ValueError, AttributeError):
                pass
            vs = self.version_summary(n)
            if vs is not None:
                keys = ("status", "timesteps", "success_rate", "videos", "train_wall_s", "message", "rollout",
                        "success_per_task")  # fmt: skip
                entry.update({k: vs[k] for k in keys if vs.get(k) not in (None, "")})
            verdict = self.verification(n)
            if verdict is not None:
                entry["verification"] = verdict.get("outcome")
            entries.append(entry)
        return entries

    # ---------------------------------------------------------------- run status

    def summary(self) -> dict[str, Any] | None:
        return read_summary(self.path)

    def status(self) -> tuple[str, str]:
        """``(status, message)`` from ``summary.json`` (``("", "")`` before the first record)."""
        data = self.summary() or {}
        return str(data.get("status", "")), str(data.get("message", ""))

    def record(self, *, status: Status, message: str = "", **info: Any) -> dict[str, Any]:
        """Rewrite ``summary.json``: ``status``, ``message``, the lineage and the current
        version with its results; ``info`` (task, instruction, algo, generator ...) is kept
        from the previous record where not given."""
        import time

        previous = self.summary() or {}
        current = self.current_version()
        versions = self.lineage()
        latest: dict[str, Any] = next((v for v in versions if v["version"] == current), {})
        summary: dict[str, Any] = {
            **{k: previous[k] for k in ("task", "instruction", "algo", "generator") if k in previous},
            **info,
            "run_dir": str(self.path), "status": status, "message": message,
            "current_version": current, "success_rate": latest.get("success_rate"),
            "timesteps": latest.get("timesteps"), "videos": latest.get("videos", []),
            "versions": versions, "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
        }  # fmt: skip
        write_summary(self.path, summary)
        return summary

    @contextmanager
    def running(
        self,
        record: Callable[[Status, str], object],
        status: Status = "training",
        *,
        resume: bool = True,
    ) -> Iterator[None]:
        """Record ``status`` now and a final status when the block ends, however it ends:
        ``stopped`` on Ctrl-C or SIGTERM (with how to resume when ``resume``), ``failed`` with
        the reason on any other exception (which propagates), else ``done`` unless the block
        recorded a final status itself. ``record(status, message)`` writes the records (e.g.
        :func:`rewardlab.pipeline.record_run` with the run's settings)."""
        try:
            record(status, "")
            with stop_on_sigterm():
                yield
        except BaseException as exc:
            final, message = outcome(exc)
            if final == "stopped" and resume:
                message = f"{message}; resume with: rewardlab train run={self.path}"
            try:
                record(final, message)
            except Exception:  # the full record failed too: the status at least
                self.record(status=final, message=message)
            raise
        if self.status()[0] not in FINAL:
            record("done", "")
