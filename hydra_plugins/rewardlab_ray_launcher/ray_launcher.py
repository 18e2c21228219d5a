"""A Hydra launcher that runs every job of a multirun as a Ray task (``hydra/launcher=rewardlab_ray``).

Used by ``rewardlab search search.launcher=ray`` for candidate trainings and usable for any
sweep: ``rewardlab train -m task=...,... train.seed=0,1 hydra/launcher=rewardlab_ray
hydra.launcher.address=auto``. Per job:

* resources: ``num_cpus``, ``num_gpus`` (Ray sets ``CUDA_VISIBLE_DEVICES`` to the GPUs it
  assigned), ``memory_gb`` (Ray's ``memory`` resource: a reservation the scheduler honours);
* a fresh process: the task's worker exits after the job (``max_calls=1``), so no state is
  carried from one job to the next;
* a lost worker (killed, OOM, node lost) makes Ray run the job again, up to ``max_retries``
  times; a job that still fails is returned to Hydra as failed, with the reason, and the
  other jobs go on;
* ``timeout_s`` (0 = none): a job still running after it is reported as failed
  (``TimeoutError``) and its worker exits, which ends the job.

``address``: ``null`` starts a local Ray instance for the multirun (shut down after it);
``auto`` or ``<host>:<port>`` connects to a running cluster (``ray start --head`` ...). Usage
statistics and the dashboard are off; nothing outside the cluster is contacted. Job outputs
go where Hydra puts them (``hydra.sweep.dir``), which must be a filesystem every node sees.
"""

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


@dataclass
class RayLauncherConf:
    """``hydra/launcher=rewardlab_ray`` settings."""

    _target_: str = "hydra_plugins.rewardlab_ray_launcher.ray_launcher.RayLauncher"
    address: Optional[str] = None  # noqa: UP045 - Hydra loads plugins outside sys.modules: no string annotations
    """Cluster to connect to (``auto``, ``<host>:<port>``); ``null`` = a local instance."""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_gb: float = 0.0
    """Memory reserved per job (0 = no reservation)."""
    max_retries: int = 1
    """Re-runs of a job whose worker process died."""
    timeout_s: float = 0.0
    """Fail a job still running after this many seconds (0 = no limit)."""
    local_num_cpus: Optional[int] = None  # noqa: UP045
    """CPUs of a local instance (``address: null``); ``null`` = all of this machine's."""


ConfigStore.instance().store(
    group="hydra/launcher", name="rewardlab_ray", node=RayLauncherConf, provider="rewardlab"
)


def execute_job(
    idx: int, overrides: Sequence[str], hydra_context: HydraContext, config: DictConfig,
    task_function: TaskFunction, singleton_state: dict[Any, Any], timeout_s: float,
) -> JobReturn:  # fmt: skip
    """One Hydra job inside a Ray worker (as Hydra's joblib launcher runs one in a loky worker)."""
    import ray

    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    os.environ["REWARDLAB_RAY_NODE"] = ray.get_runtime_context().get_node_id()

    def run() -> JobReturn:
        return run_job(hydra_context=hydra_context, config=sweep_config, task_function=task_function,
                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")  # fmt: skip

    if timeout_s <= 0:
        return run()
    box: list[JobReturn] = []
    thread = threading.Thread(target=lambda: box.append(run()), daemon=True)
    thread.start()
    thread.join(timeout_s)
    if box:
        return box[0]
    # the worker exits after this task (max_calls=1), which ends the job's thread
    return failed(
        overrides,
        TimeoutError(f"job {idx} still running after {timeout_s:g} s (hydra.launcher.timeout_s)"),
    )


def failed(overrides: Sequence[str], error: BaseException) -> JobReturn:
    """A failed job's return (Hydra raises ``error`` for it once every job has returned)."""
    ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
    ret.return_value = error
    return ret


class RayLauncher(Launcher):
    """See the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        self.settings = kwargs
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        setup_globals()
        assert (
            self.config is not None
            and self.task_function is not None
            and self.hydra_context is not None
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        s = self.settings
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        started_here = not ray.is_initialized()
        if started_here:
            local = s.get("address") is None
            ray.init(address=s.get("address"), include_dashboard=False if local else None,
                     num_cpus=s.get("local_num_cpus") if local else None, configure_logging=False)  # fmt: skip
        options: dict[str, Any] = {"num_cpus": float(s.get("num_cpus", 1.0)), "num_gpus": float(s.get("num_gpus", 0.0)),
                                   "max_calls": 1, "max_retries": int(s.get("max_retries", 1)), "retry_exceptions": False}  # fmt: skip
        if float(s.get("memory_gb") or 0) > 0:
            options["memory"] = int(float(s["memory_gb"]) * 2**30)
        remote = ray.remote(**options)(execute_job)
        log.info(f"Ray ({ray.get_runtime_context().gcs_address}) is launching {len(job_overrides)} jobs, "
                 f"sweep output dir: {sweep_dir}")  # fmt: skip
        singleton_state = Singleton.get_state()
        refs = []
        for i, overrides in enumerate(job_overrides):
            log.info(f"\t#{initial_job_idx + i} : {' '.join(filter_overrides(overrides))}")
            refs.append(remote.remote(initial_job_idx + i, overrides, self.hydra_context, self.config, self.task_function,
                                      singleton_state, float(s.get("timeout_s") or 0.0)))  # fmt: skip
        results: list[JobReturn] = []
        try:
            for overrides, ref in zip(job_overrides, refs, strict=True):
                try:
                    results.append(ray.get(ref))
                except (
                    Exception
                ) as exc:  # a lost worker after its retries, or an unpicklable result
                    results.append(
                        failed(
                            overrides, RuntimeError(f"Ray task failed: {type(exc).__name__}: {exc}")
                        )
                    )
        finally:
            if started_here:
                ray.shutdown()
        return results
