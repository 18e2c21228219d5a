"""One job of a launched batch (:mod:`rewardlab.search.launch`), as a Hydra application.

Run by the launcher as a multirun: ``python -m rewardlab.search.worker -m spec=<jobs.json>
index=0,1,2 hydra/launcher=joblib``; job ``index`` trains ``jobs[index]`` of the spec with the
run's saved config and writes ``result_<index>.json`` next to the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from rewardlab.rundir import read_json, write_json
from rewardlab.search.launch import Job, limit_memory, run_job
from rewardlab.tasks.registry import TaskSpec


@dataclass
class WorkerConfig:
    """The worker's own (tiny) config."""

    spec: str = MISSING
    """``jobs.json`` of the batch."""
    index: int = 0
    """Which job of the batch to run."""


ConfigStore.instance().store(name="rewardlab_search_worker", node=WorkerConfig)


def work(cfg: Any) -> None:
    """Train job ``cfg.index`` of ``cfg.spec`` and write its result."""
    spec_path = Path(cfg.spec)
    spec = read_json(spec_path)
    run_cfg = OmegaConf.load(spec["config"])
    task = TaskSpec.from_dict(spec["task"])
    job = Job(**spec["jobs"][int(cfg.index)])
    limit_memory(run_cfg.train)
    result = run_job(run_cfg, task, job)
    write_json(spec_path.parent / f"result_{int(cfg.index)}.json", result)


@hydra.main(version_base="1.3", config_path=None, config_name="rewardlab_search_worker")
def main(cfg: Any) -> None:
    """Hydra entry point."""
    work(cfg)


if __name__ == "__main__":
    main()
