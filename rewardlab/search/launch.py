"""Fan-out of candidate trainings and seed runs through a Hydra launcher.

Why Hydra launchers and not Ray: rewardlab is configured and swept with Hydra already
(``rewardlab train -m ...``), so one job model covers both plain sweeps and the search's
batches; the joblib launcher (``hydra-joblib-launcher``: pure Python, on top of joblib/loky)
runs jobs in separate local processes, which isolates MuJoCo, torch threads and the per-process
memory cap, and the submitit launcher (``hydra-submitit-launcher``) sends the very same jobs to
SLURM. Ray would add a large dependency, a cluster runtime (GCS, raylet, dashboard) that costs
seconds and memory on a 2-core machine, and a second way of describing jobs.

A batch is a list of :class:`Job` s (train folder, reward file, budget, seed). With
``search.launcher=inline`` (or ``joblib`` with ``n_jobs=1``) they run one after the other in
this process through :func:`run_job`. Otherwise the batch is written to ``<batch>/jobs.json``
and run as a Hydra multirun of :mod:`rewardlab.search.worker` over ``index=0,...,n-1`` with
``hydra/launcher=<launcher>``; each job writes ``<batch>/result_<i>.json`` and a job that died
without one is reported as failed. ``search.job_timeout_s`` bounds the whole batch (Eureka's
users report hangs when a training dies silently).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rewardlab.rundir import read_csv, read_json, write_json
from rewardlab.tasks.registry import TaskSpec

_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Job:
    """One training: continue (or start) ``directory`` up to ``budget`` steps."""

    name: str
    """Shown in logs, e.g. ``it0/c2@4096``."""
    directory: str
    """The training folder (metrics.csv, tb/, checkpoints/ ... go here)."""
    source_file: str | None
    """The reward program; ``None`` = the benchmark's own reward."""
    budget: int
    seed: int
    stop_at_success: float = 0.0
    checkpoint_freq: int = 0
    """0 = the run's ``train.checkpoint_freq``."""


def resolve_launcher(search: Any) -> str:
    """The launcher a batch will use: ``inline`` or a Hydra launcher name."""
    name = str(search.launcher)
    if name == "auto":
        installed = importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is not None
        return "joblib" if installed and int(search.n_jobs) > 1 else "inline"
    if name == "joblib" and int(search.n_jobs) <= 1:
        return "inline"
    return name


PLUGINS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher==1.2.0"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher==1.2.0"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher==1.2.0"),
}
"""Launchers rewardlab knows the plugin package of (others are passed to Hydra as named)."""


def launcher_problem(search: Any) -> str | None:
    """Why the configured launcher cannot run here (its plugin is missing), or ``None``."""
    name = resolve_launcher(search)
    if name in PLUGINS and importlib.util.find_spec(PLUGINS[name][0]) is None:
        return (f"search.launcher={name} needs the Hydra plugin: pip install {PLUGINS[name][1]} "
                "(or use search.launcher=inline)")  # fmt: skip
    return None


def limit_memory(train: Any) -> None:
    """Apply ``train.memory_limit_gb`` to this process (as ``rewardlab train`` does)."""
    from rewardlab.reward.sandbox import limit_process_memory

    gb = float(train.memory_limit_gb)
    if gb >= 0:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        limit_process_memory(int(gb * 2**30) if gb > 0 else int(0.8 * total))


def ensure_checkpoint(directory: Path, timesteps: int) -> None:
    """Make sure the newest checkpoint is at ``timesteps`` so the next rung resumes exactly
    where this one ended (copies ``model.zip`` and ``vecnormalize.pkl`` when needed)."""
    from rewardlab.training import latest_checkpoint

    ckpt = latest_checkpoint(directory)
    if (ckpt is not None and ckpt[1] >= timesteps) or not (directory / "model.zip").exists():
        return
    folder = directory / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(directory / "model.zip", folder / f"model_{timesteps}_steps.zip")
    if (directory / "vecnormalize.pkl").exists():
        shutil.copyfile(directory / "vecnormalize.pkl", folder / f"model_vecnormalize_{timesteps}_steps.pkl")


def run_job(cfg: Any, task: TaskSpec, job: Job) -> dict[str, Any]:
    """Train ``job`` in this process; never raises for a failed training.

    Returns:
        ``status`` (``ok``, ``reward_failed`` or ``error``), ``timesteps``, the last
        evaluation's ``success`` and ``progress``, ``best_success``, ``stopped_early``,
        ``wall_s``, ``reward_errors`` and ``error`` (the reason, for a failure).
    """
    from rewardlab.config import AlgoConfig, TrainConfig
    from rewardlab.training import train
    from rewardlab.wrappers import RewardFailure

    directory = Path(job.directory)
    directory.mkdir(parents=True, exist_ok=True)
    started = time.time()
    base: dict[str, Any] = {"job": job.name, "budget": job.budget}
    try:
        algo = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AlgoConfig), cfg.algo))
        train_cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), cfg.train))
        assert isinstance(algo, AlgoConfig) and isinstance(train_cfg, TrainConfig)
        train_cfg.total_timesteps = int(job.budget)
        train_cfg.seed = int(job.seed)
        train_cfg.stop_at_success = float(job.stop_at_success)
        train_cfg.video_episodes = 0
        train_cfg.progress_bar = False
        if job.checkpoint_freq > 0:
            train_cfg.checkpoint_freq = int(job.checkpoint_freq)
        source = Path(job.source_file).read_text() if job.source_file else None
        result = train(task, source, algo, train_cfg, directory)
        ensure_checkpoint(directory, result.timesteps)
    except RewardFailure as exc:
        return {**base, "status": "reward_failed", "error": str(exc), "wall_s": round(time.time() - started, 1)}
    except Exception as exc:  # a crashed training must not take the search down
        detail = traceback.format_exc(limit=4)
        return {**base, "status": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": detail,
                "wall_s": round(time.time() - started, 1)}  # fmt: skip
    rows = read_csv(directory / "metrics.csv")
    last = rows[-1] if rows else {}
    return {
        **base, "status": "ok", "timesteps": result.timesteps,
        "success": float(last.get("success_rate", 0.0) or 0.0),
        "progress": float(last.get("mean_progress", 0.0) or 0.0),
        "best_success": result.best_success_rate, "stopped_early": result.stopped_early,
        "wall_s": round(result.wall_s, 1), "reward_errors": result.reward_errors,
    }  # fmt: skip


def hydra_command(spec: Path, count: int, launcher: str, search: Any) -> list[str]:
    """The Hydra multirun that runs the batch described by ``spec``."""
    args = [
        sys.executable, "-m", "rewardlab.search.worker", "-m", f"spec={spec}",
        "index=" + ",".join(str(i) for i in range(count)), f"hydra/launcher={launcher}",
        f"hydra.sweep.dir={spec.parent / 'hydra'}", "hydra.sweep.subdir=${hydra.job.num}",
        "hydra/job_logging=disabled", "hydra/hydra_logging=disabled",
    ]  # fmt: skip
    if launcher == "joblib":
        args.append(f"hydra.launcher.n_jobs={int(search.n_jobs)}")
    return [*args, *(str(o) for o in search.launcher_overrides)]


def launch(
    cfg: Any, task: TaskSpec, jobs: list[Job], batch_dir: Path, log: Any = print
) -> list[dict[str, Any]]:
    """Run ``jobs`` through the configured launcher; results in the order of ``jobs``.

    Args:
        cfg: The run's config (``search.*`` picks the launcher; ``train``/``algo`` the training).
        task: The task.
        jobs: The batch.
        batch_dir: Where the batch's spec, results and launcher log are kept.
        log: Progress messages.
    """
    if not jobs:
        return []
    launcher = resolve_launcher(cfg.search)
    batch_dir.mkdir(parents=True, exist_ok=True)
    if launcher == "inline":
        return [run_job(cfg, task, job) for job in jobs]
    config_file = batch_dir / "config.yaml"
    OmegaConf.save(cfg, config_file, resolve=True)
    spec = batch_dir / "jobs.json"
    write_json(spec, {"config": str(config_file), "task": task.to_dict(), "jobs": [asdict(j) for j in jobs]})
    for old in batch_dir.glob("result_*.json"):
        old.unlink()
    command = hydra_command(spec, len(jobs), launcher, cfg.search)
    timeout = float(cfg.search.job_timeout_s) or None
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    log(f"  launching {len(jobs)} training(s) with hydra/launcher={launcher} -> {batch_dir}")
    with (batch_dir / "launcher.log").open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the batch's own process group, started above
            proc.wait()
            log(f"  batch killed after {timeout:g} s (search.job_timeout_s)")
        except BaseException:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise
    results = []
    for i, job in enumerate(jobs):
        path = batch_dir / f"result_{i}.json"
        if path.exists():
            results.append(read_json(path))
        else:
            results.append({"job": job.name, "budget": job.budget, "status": "error",
                            "error": f"no result (the job died or timed out; exit code {proc.returncode}; "
                                     f"see {batch_dir / 'launcher.log'})"})  # fmt: skip
    return results
