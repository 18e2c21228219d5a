"""Fan-out of candidate trainings and seed runs through a Hydra launcher.

rewardlab is configured and swept with Hydra (``rewardlab train -m ...``), so one job model
covers plain sweeps and the search's batches. A batch is a list of :class:`Job` s (train
folder, reward file, budget, seed). With ``search.launcher=inline`` (or ``joblib`` with
``n_jobs=1``) they run one after the other in this process through :func:`run_job` (no
isolation: for debugging and tiny runs). Otherwise the batch is written to
``<batch>/jobs.json`` and run as a Hydra multirun of :mod:`rewardlab.search.worker` over
``index=0,...,n-1`` with the launcher's Hydra plugin:

* ``joblib`` (``hydra-joblib-launcher``): local processes, ``search.n_jobs`` at a time;
* ``ray`` (``hydra/launcher=rewardlab_ray``, :mod:`hydra_plugins.rewardlab_ray_launcher`): a
  Ray cluster (``search.ray_address``; by default a local Ray instance this process starts
  once, with ``n_jobs * cpus_per_job`` CPUs), ``search.cpus_per_job`` / ``gpus_per_job`` /
  ``memory_gb_per_job`` reserved per job, a Ray worker per job (``max_calls=1``), a job
  whose worker died re-run (``search.retries``);
* ``submitit_local`` / ``submitit_slurm`` (``hydra-submitit-launcher``): a subprocess or a
  SLURM job per job, with the same resources as SLURM requests.

Each job writes ``<batch>/result_<i>.json``; a job that died without one is reported as
failed with the reason. Where the launcher reuses processes (joblib's loky pool, Ray workers)
the job trains in a fresh supervised interpreter (:mod:`rewardlab.search.worker`: GPU pinning,
per-attempt timeout ``search.job_timeout_s``, retries of killed trainings). Eureka's users
report hangs when a training dies silently: nothing here waits without a bound once
``search.job_timeout_s`` is set.
"""

from __future__ import annotations

import importlib.util
import math
import os
import resource
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rewardlab.rundir import append_csv, read_csv, read_json, write_json
from rewardlab.tasks.registry import TaskSpec
from rewardlab.trust import signed_output

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
    decision_episodes: int = 0
    """Evaluate the trained policy on this many fresh episodes for a search decision
    (:mod:`rewardlab.search.decision`); 0 = report the last training evaluation instead."""
    confidence: float = 0.95
    """Coverage of the decision's intervals."""


def env_workers_per_job(search: Any) -> int:
    """``train.env_workers`` for a training the search launches (when the run left it at 0): the
    job's share of this machine's cores, so that parallel trainings do not each take one worker
    per core. ``inline``: jobs run one at a time, 0 (one per core); ``joblib``: the cores this
    process may use over ``search.n_jobs``; any other launcher: the CPUs it reserves per job
    (``search.cpus_per_job``, at least 1)."""
    launcher = resolve_launcher(search)
    if launcher == "inline":
        return 0
    if launcher == "joblib":
        return max(1, len(os.sched_getaffinity(0)) // max(1, int(search.n_jobs)))
    return max(1, int(float(search.cpus_per_job)))


def resolve_launcher(search: Any) -> str:
    """The launcher a batch will use: ``inline`` or a launcher name (see :data:`PLUGINS`)."""
    name = str(search.launcher)
    if name == "auto":
        installed = importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is not None
        return "joblib" if installed and int(search.n_jobs) > 1 else "inline"
    if name == "joblib" and int(search.n_jobs) <= 1:
        return "inline"
    return name


PLUGINS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher==1.2.0"),
    "ray": ("ray", 'rewardlab[ray] (or: pip install "ray==2.60.0")'),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher==1.2.0"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher==1.2.0"),
}
"""Launchers rewardlab knows the package of (others are passed to Hydra as named)."""

HYDRA_NAMES = {"ray": "rewardlab_ray"}
"""``search.launcher`` values whose Hydra plugin is registered under another name."""

STARTS_FRESH = ("submitit_local", "submitit_slurm")
"""Launchers that start a new process per job by themselves (the job trains in it); every
other launcher's jobs train in a fresh supervised child (:mod:`rewardlab.search.worker`)."""


def launcher_problem(search: Any) -> str | None:
    """Why the configured launcher cannot run here (its plugin is missing), or ``None``."""
    name = resolve_launcher(search)
    if name in PLUGINS and importlib.util.find_spec(PLUGINS[name][0]) is None:
        return (f"search.launcher={name} needs: pip install {PLUGINS[name][1]} "
                "(or use search.launcher=inline)")  # fmt: skip
    return None


_LOCAL_RAY: dict[str, Any] = {}


def local_ray_address(search: Any) -> str:
    """Start a local Ray instance in this process (once; shut down at exit) for
    ``search.launcher=ray`` without ``search.ray_address``; its GCS address. It gets
    ``n_jobs * cpus_per_job`` CPUs, so at most ``n_jobs`` jobs run at a time, as with joblib;
    no dashboard, no usage statistics, nothing reached outside this machine."""
    if "address" not in _LOCAL_RAY:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import atexit

        import ray

        cpus = max(1, math.ceil(int(search.n_jobs) * float(search.cpus_per_job)))
        gpus = (
            math.ceil(int(search.n_jobs) * float(search.gpus_per_job))
            if float(search.gpus_per_job) > 0
            else None
        )
        ctx: Any = ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, log_to_driver=False,
                            configure_logging=False)  # fmt: skip
        _LOCAL_RAY["address"] = ctx.address_info["gcs_address"]
        atexit.register(ray.shutdown)
    return str(_LOCAL_RAY["address"])


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
    from rewardlab.checkpoints import latest_checkpoint

    ckpt = latest_checkpoint(directory)
    if (ckpt is not None and ckpt[1] >= timesteps) or not (directory / "model.zip").exists():
        return
    folder = directory / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(directory / "model.zip", folder / f"model_{timesteps}_steps.zip")
    if (directory / "vecnormalize.pkl").exists():
        shutil.copyfile(
            directory / "vecnormalize.pkl", folder / f"model_vecnormalize_{timesteps}_steps.pkl"
        )


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return float(usage.ru_utime + usage.ru_stime)


def keep_rows(path: Path, *, below: int | None = None, upto: int | None = None) -> None:
    """Drop the rows of a CSV log whose ``timesteps`` are not ``< below`` / ``<= upto``."""
    if not path.exists():
        return
    rows = read_csv(path)
    kept = [r for r in rows if (below is None or int(float(r["timesteps"])) < below)
            and (upto is None or int(float(r["timesteps"])) <= upto)]  # fmt: skip
    if len(kept) == len(rows):
        return
    path.unlink()
    for row in kept:
        append_csv(path, row)


def forget_after_checkpoint(directory: Path) -> None:
    """Before (re)starting a job: drop evaluations logged after the checkpoint training will
    resume from; an attempt killed mid-job (then retried) leaves such rows behind."""
    from rewardlab.checkpoints import latest_checkpoint

    ckpt = latest_checkpoint(directory)
    upto = ckpt[1] if ckpt is not None else 0
    keep_rows(directory / "metrics.csv", upto=upto)
    keep_rows(directory / "decisions.csv", upto=upto)


def run_job(cfg: Any, task: TaskSpec, job: Job) -> dict[str, Any]:
    """Train ``job`` in this process; never raises for a failed training.

    Returns:
        ``status`` (``ok``, ``reward_failed`` or ``error``), ``timesteps``, ``success`` and
        ``progress`` (of the decision evaluation when ``job.decision_episodes > 0``, with
        ``*_low``/``*_high`` bounds and ``decision``; else of the last training evaluation),
        ``curve_success``/``curve_progress`` (the last training evaluation), ``best_success``,
        ``stopped_early``, ``wall_s``, ``reward_errors``, ``pid`` and ``error`` (the reason,
        for a failure).
    """
    from rewardlab.config import AlgoConfig, RolloutConfig, TrainConfig
    from rewardlab.training import train
    from rewardlab.wrappers import RewardFailure

    directory = Path(job.directory)
    directory.mkdir(parents=True, exist_ok=True)
    started = time.time()
    base: dict[str, Any] = {
        "job": job.name,
        "budget": job.budget,
        "pid": os.getpid(),
        "started": round(started, 3),
    }
    cpu_before = cpu_seconds()
    forget_after_checkpoint(directory)
    try:
        algo = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AlgoConfig), cfg.algo))
        train_cfg = OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(TrainConfig), cfg.train)
        )
        rollout = OmegaConf.to_object(
            OmegaConf.merge(
                OmegaConf.structured(RolloutConfig), getattr(cfg, "rollout", None) or {}
            )
        )
        assert (
            isinstance(algo, AlgoConfig)
            and isinstance(train_cfg, TrainConfig)
            and isinstance(rollout, RolloutConfig)
        )
        train_cfg.total_timesteps = int(job.budget)
        train_cfg.seed = int(job.seed)
        train_cfg.stop_at_success = float(job.stop_at_success)
        train_cfg.video_episodes = 0
        train_cfg.progress_bar = False
        if train_cfg.env_workers == 0 and getattr(cfg, "search", None) is not None:
            train_cfg.env_workers = env_workers_per_job(cfg.search)
        if job.checkpoint_freq > 0:
            train_cfg.checkpoint_freq = int(job.checkpoint_freq)
        source = Path(job.source_file).read_text() if job.source_file else None
        result = train(task, source, algo, train_cfg, directory, rollout=rollout)
        ensure_checkpoint(directory, result.timesteps)
        decision = None
        if job.decision_episodes > 0:
            from rewardlab.search.decision import decision_eval

            t0 = time.time()
            decision = decision_eval(task, directory, algo.name, episodes=int(job.decision_episodes),
                                     seed=int(job.seed), confidence=float(job.confidence))  # fmt: skip
            decision.update(timesteps=result.timesteps, seconds=round(time.time() - t0, 1))
            keep_rows(
                directory / "decisions.csv", below=result.timesteps
            )  # a re-run attempt replaces its row
            append_csv(directory / "decisions.csv", {k: decision[k] for k in DECISION_COLUMNS})
    except RewardFailure as exc:
        return {
            **base,
            "status": "reward_failed",
            "error": str(exc),
            "wall_s": round(time.time() - started, 1),
        }
    except Exception as exc:  # a crashed training must not take the search down
        detail = traceback.format_exc(limit=4)
        return {**base, "status": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": detail,
                "wall_s": round(time.time() - started, 1)}  # fmt: skip
    rows = read_csv(directory / "metrics.csv")
    last = rows[-1] if rows else {}
    curve_success = float(last.get("success_rate", 0.0) or 0.0)
    curve_progress = float(last.get("mean_progress", 0.0) or 0.0)
    out = {
        **base, "status": "ok", "timesteps": result.timesteps, "success": curve_success,
        "progress": curve_progress, "curve_success": curve_success, "curve_progress": curve_progress,
        "best_success": result.best_success_rate, "stopped_early": result.stopped_early,
        "wall_s": round(time.time() - started, 1), "cpu_s": round(cpu_seconds() - cpu_before, 1),
        "reward_errors": result.reward_errors,
    }  # fmt: skip
    if decision is not None:
        out.update({k: decision[k] for k in ("success", "success_low", "success_high", "progress",
                                             "progress_low", "progress_high")}, decision=decision)  # fmt: skip
    return out


DECISION_COLUMNS = ("timesteps", "episodes", "successes", "success", "success_low", "success_high", "progress",
                    "progress_low", "progress_high", "engine", "seconds")  # fmt: skip
"""Columns of a candidate's ``decisions.csv`` (one row per rung it was evaluated at)."""


def resource_overrides(launcher: str, search: Any, ray_address: str | None = None) -> list[str]:
    """The launcher's Hydra overrides for ``search``'s per-job resources, parallelism, retries
    and timeout (``search.launcher_overrides`` come after them and win)."""
    cpus, gpus, mem = (
        float(search.cpus_per_job),
        float(search.gpus_per_job),
        float(search.memory_gb_per_job),
    )
    timeout = float(search.job_timeout_s)
    if launcher == "joblib":
        return [f"hydra.launcher.n_jobs={int(search.n_jobs)}"]
    if launcher == "ray":
        out = [f"hydra.launcher.num_cpus={cpus:g}", f"hydra.launcher.num_gpus={gpus:g}",
               f"hydra.launcher.memory_gb={mem:g}", f"hydra.launcher.max_retries={int(search.retries)}"]  # fmt: skip
        return [*out, f"hydra.launcher.address={ray_address}"] if ray_address else out
    if launcher in STARTS_FRESH:
        out = [f"hydra.launcher.cpus_per_task={max(1, math.ceil(cpus))}"]
        if (
            gpus > 0 and launcher == "submitit_slurm"
        ):  # submitit_local would give every job GPU 0: search.gpus pins there
            out.append(f"hydra.launcher.gpus_per_node={math.ceil(gpus)}")
        if mem > 0:
            out.append(f"hydra.launcher.mem_gb={math.ceil(mem)}")
        if timeout > 0:
            out.append(f"hydra.launcher.timeout_min={max(1, math.ceil(timeout / 60))}")
        return out
    return []


def hydra_command(
    spec: Path, count: int, launcher: str, search: Any, ray_address: str | None = None
) -> list[str]:
    """The Hydra multirun that runs the batch described by ``spec``."""
    args = [
        sys.executable, "-m", "rewardlab.search.worker", "-m", f"spec={spec}",
        "index=" + ",".join(str(i) for i in range(count)), f"hydra/launcher={HYDRA_NAMES.get(launcher, launcher)}",
        f"hydra.sweep.dir={spec.parent / 'hydra'}", "hydra.sweep.subdir=${hydra.job.num}",
        "hydra/job_logging=disabled", "hydra/hydra_logging=disabled",
    ]  # fmt: skip
    return [
        *args,
        *resource_overrides(launcher, search, ray_address),
        *(str(o) for o in search.launcher_overrides),
    ]


def write_batch(cfg: Any, task: TaskSpec, jobs: list[Job], batch_dir: Path, *, fresh: bool) -> Path:
    """Write ``<batch>/config.yaml`` and the batch's ``jobs.json`` (clearing old results);
    the spec's path. ``fresh``: jobs train in a supervised child (:mod:`rewardlab.search.worker`)."""
    batch_dir.mkdir(parents=True, exist_ok=True)
    config_file = batch_dir / "config.yaml"
    spec = batch_dir / "jobs.json"
    # jobs take code-bearing settings only from signed files
    with signed_output(config_file) as tmp:
        OmegaConf.save(cfg, tmp, resolve=True)
    with signed_output(spec) as tmp:
        write_json(tmp, {"config": str(config_file), "task": task.to_dict(),
                         "jobs": [asdict(j) for j in jobs], "fresh": fresh})  # fmt: skip
    for old in [*batch_dir.glob("result_*.json"), *batch_dir.glob("attempts_*.jsonl")]:
        old.unlink()
    return spec


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
    spec = write_batch(cfg, task, jobs, batch_dir, fresh=launcher not in STARTS_FRESH)
    address = None
    if launcher == "ray":
        address = (
            str(cfg.search.ray_address) if cfg.search.ray_address else local_ray_address(cfg.search)
        )
    command = hydra_command(spec, len(jobs), launcher, cfg.search, address)
    per_job = float(cfg.search.job_timeout_s)
    # a backstop for the whole batch: every job, every attempt, one after the other
    timeout = (
        per_job * (int(cfg.search.retries) + 1) ** 2 * len(jobs) + 600 if per_job > 0 else None
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    log(f"  launching {len(jobs)} training(s) with launcher {launcher}" + (f" (Ray at {address})" if address else "")
        + f" -> {batch_dir}")  # fmt: skip
    with (batch_dir / "launcher.log").open("w") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the batch's own process group, started above
            proc.wait()
            log(f"  batch killed after {timeout:g} s (backstop of search.job_timeout_s)")
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
