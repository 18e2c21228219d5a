"""Candidate trainings on every launcher, for real: a fresh process per job under joblib's
reused loky workers, GPU pinning, a killed training retried or recorded, a timeout,
``submitit_local``, and a two-node Ray cluster on 127.0.0.1 (``ray start --head`` plus a
second ``ray start``) running a search whose worker is killed mid-job, with the same
candidates and best program as the in-process launcher replaying it (``llm=replay``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from guards import HANG_S
from omegaconf import OmegaConf

from rewardlab.config import RewardLabConfig
from rewardlab.rundir import read_csv
from rewardlab.search.launch import Job, env_workers_per_job, launch, write_batch
from rewardlab.search.worker import supervise
from rewardlab.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
TASK = get_task("mujoco/hopper_forward")
GOOD = (
    "def compute_dense_reward(self, action):\n"
    "    return self.hopper.top.velocity_x + 1.0, {'forward': self.hopper.top.velocity_x}\n"
)


def tiny_cfg(**settings: Any) -> Any:
    cfg = OmegaConf.structured(RewardLabConfig)
    cfg.task = OmegaConf.structured(TASK)
    cfg.train.n_envs, cfg.train.eval_freq, cfg.train.eval_episodes = 2, 256, 1
    cfg.train.memory_limit_gb = -1.0
    cfg.algo.kwargs = {"n_steps": 64}
    for key, value in settings.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def jobs_in(tmp: Path, n: int, budget: int = 256) -> list[Job]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "good.py").write_text(GOOD)
    return [
        Job(f"j{i}", str(tmp / f"run{i}"), str(tmp / "good.py"), budget=budget, seed=i)
        for i in range(n)
    ]


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["started"] < b["started"] + b["wall_s"] and b["started"] < a["started"] + a["wall_s"]


def test_joblib_jobs_train_in_fresh_processes_on_pinned_gpus(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    cfg = tiny_cfg(**{"search.launcher": "joblib", "search.n_jobs": 2, "search.gpus": [0, 1]})
    results = launch(cfg, TASK, jobs_in(tmp_path, 3), tmp_path / "batch", print)
    assert [r["status"] for r in results] == ["ok"] * 3, results
    trainers = [r["pid"] for r in results]
    supervisors = [r["worker_pid"] for r in results]
    # every job trained in its own interpreter, although loky ran 3 jobs on at most 2 workers
    assert len(set(trainers)) == 3 and not set(trainers) & set(supervisors)
    assert len(set(supervisors)) <= 2
    # the two parallel trainings share the cores instead of each taking one worker per core
    share = max(1, min(2, len(os.sched_getaffinity(0)) // 2))
    for i in range(3):
        assert json.loads((tmp_path / f"run{i}" / "rollout.json").read_text())["workers"] == share
    # one GPU per running training, never shared while both run
    attempts = [r["attempts"][0] for r in results]
    assert {a["cuda_visible_devices"] for a in attempts} <= {"0", "1"}
    assert [r["cuda_visible_devices"] for r in results] == [
        a["cuda_visible_devices"] for a in attempts
    ]
    for i, a in enumerate(attempts):
        for b in attempts[i + 1 :]:
            if overlap(a, b):
                assert a["cuda_visible_devices"] != b["cuda_visible_devices"]


@pytest.mark.parametrize(
    ("settings", "want"),
    [
        ({"search.launcher": "inline"}, 0),
        ({"search.launcher": "joblib", "search.n_jobs": 1}, 0),
        (
            {"search.launcher": "joblib", "search.n_jobs": 2},
            max(1, len(os.sched_getaffinity(0)) // 2),
        ),
        ({"search.launcher": "joblib", "search.n_jobs": 10_000}, 1),
        ({"search.launcher": "ray", "search.cpus_per_job": 3.0}, 3),
        ({"search.launcher": "ray", "search.cpus_per_job": 0.5}, 1),
        ({"search.launcher": "submitit_slurm", "search.cpus_per_job": 2.0}, 2),
    ],
)
def test_parallel_trainings_share_the_cores(settings: dict[str, Any], want: int) -> None:
    """A search's trainings leave ``train.env_workers=0`` to the launcher: one per core when
    they run one at a time, their share of the cores when they run side by side (regression:
    every parallel training took one worker per core and the machine was oversubscribed)."""
    assert env_workers_per_job(tiny_cfg(**settings).search) == want


def wait_for(predicate: Any, timeout: float = HANG_S) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def training_pid(batch: Path, index: int, attempt: int, directory: Path) -> int:
    """The pid of a running attempt's training process, once it has started training."""

    def find() -> int | None:
        log = batch / f"attempts_{index}.jsonl"
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) > attempt and (directory / "tb").exists():
            return int(json.loads(lines[attempt])["pid"])
        return None

    return int(wait_for(find))


def test_a_killed_training_is_retried_then_recorded_and_a_hang_times_out(tmp_path: Path) -> None:
    jobs = jobs_in(tmp_path, 1, budget=1024)
    spec = write_batch(
        tiny_cfg(**{"search.retries": 1}), TASK, jobs, tmp_path / "batch", fresh=True
    )
    box: list[dict[str, Any]] = []
    runner = threading.Thread(target=lambda: box.append(supervise(spec, 0)))
    runner.start()
    os.kill(training_pid(spec.parent, 0, 0, Path(jobs[0].directory)), signal.SIGKILL)
    runner.join(600)
    (result,) = box
    assert result["status"] == "ok" and result["timesteps"] == 1024, result
    assert [a["exit"] for a in result["attempts"]] == [-signal.SIGKILL, 0]
    assert "killed by SIGKILL" in result["attempts"][0]["reason"]
    steps = [int(r["timesteps"]) for r in read_csv(Path(jobs[0].directory) / "metrics.csv")]
    assert steps == sorted(set(steps))  # the killed attempt's evaluations were not kept twice
    # no retries left: recorded as failed, with the reason
    jobs = jobs_in(tmp_path / "b", 1, budget=1024)
    spec = write_batch(
        tiny_cfg(**{"search.retries": 0}), TASK, jobs, tmp_path / "b" / "batch", fresh=True
    )
    box.clear()
    runner = threading.Thread(target=lambda: box.append(supervise(spec, 0)))
    runner.start()
    os.kill(training_pid(spec.parent, 0, 0, Path(jobs[0].directory)), signal.SIGKILL)
    runner.join(600)
    assert box[0]["status"] == "error" and "killed by SIGKILL" in box[0]["error"]
    assert "1 attempt(s), search.retries=0" in box[0]["error"]
    # a training that does not finish in time is killed and recorded as timed out
    cfg = tiny_cfg(**{"search.job_timeout_s": 2.0})
    spec = write_batch(
        cfg, TASK, jobs_in(tmp_path / "c", 1, budget=10**7), tmp_path / "c" / "batch", fresh=True
    )
    hung = supervise(spec, 0)
    assert hung["status"] == "error" and "timed out after 2 s" in hung["error"]
    assert len(hung["attempts"]) == 1 and hung["attempts"][0]["exit"] is None


def test_submitit_local_runs_search_jobs(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = tiny_cfg(
        **{
            "search.launcher": "submitit_local",
            "search.job_timeout_s": 600.0,
            "search.gpus": [0, 1],
        }
    )
    jobs = jobs_in(tmp_path, 2)
    results = launch(cfg, TASK, jobs, tmp_path / "batch", print)
    assert [r["status"] for r in results] == ["ok", "ok"], results
    assert {r["cuda_visible_devices"] for r in results} <= {"0", "1"}
    if overlap(*results):  # both ran at once: on different GPUs
        assert results[0]["cuda_visible_devices"] != results[1]["cuda_visible_devices"]
    assert [r["timesteps"] for r in results] == [256, 256]
    assert len({r["pid"] for r in results}) == 2 and os.getpid() not in {r["pid"] for r in results}
    assert "attempts" not in results[0]  # submitit starts a process per job: it trains there
    assert list((tmp_path / "batch" / "hydra").rglob("*_submission.sh")) or list(
        (tmp_path / "batch" / "hydra").rglob(".submitit")
    )
    for job in jobs:
        assert (Path(job.directory) / "model.zip").exists()


# ----------------------------------------------------------------------------- Ray


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
        "PYTHONPATH": path,
    }


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A head and a second worker node (1 CPU each) on 127.0.0.1, for this module only: each
    ``ray start --block`` runs in the foreground and takes its node down when terminated."""
    pytest.importorskip("ray")
    ray = str(Path(sys.executable).parent / "ray")
    temp = Path(
        tempfile.mkdtemp(prefix="rlray", dir="/tmp")
    )  # short: Ray's socket paths are limited
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    logs = [temp / "head.log", temp / "node.log"]
    nodes: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], log: Path) -> None:
        with log.open("w") as fh:
            nodes.append(
                subprocess.Popen(
                    [ray, "start", *args, *common],
                    env=ray_env(),
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                )
            )
        try:  # `ray start` says so once its node is up (minutes on a loaded machine)
            wait_for(
                lambda: "Ray runtime started" in log.read_text() or nodes[-1].poll() is not None,
                timeout=600,
            )
        finally:
            assert nodes[-1].poll() is None and "Ray runtime started" in log.read_text(), (
                log.read_text()[-3000:]
            )

    try:
        start(
            ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"], logs[0]
        )
        start([f"--address={address}"], logs[1])

        def nodes_up() -> int:
            status = subprocess.run([ray, "status", f"--address={address}"], env=ray_env(), capture_output=True,
                                    text=True, timeout=HANG_S)  # fmt: skip
            return status.stdout.count(" node_")

        wait_for(lambda: nodes_up() == 2, timeout=HANG_S)
        yield address
    finally:
        for node in reversed(nodes):
            node.terminate()
        for node in nodes:
            try:
                node.wait(60)
            except subprocess.TimeoutExpired:
                node.kill()
        shutil.rmtree(temp, ignore_errors=True)


TINY_SEARCH = [
    "task=mujoco/hopper_forward", "search.candidates=2", "search.iterations=1", "search.min_steps=128",
    "search.max_steps=256", "search.eta=2", "search.decision_episodes=3", "search.target_success=0",
    "train.n_envs=2", "algo.kwargs.n_steps=64", "train.eval_freq=128", "train.eval_episodes=1",
    "train.video_episodes=0", "check.steps=20", "train.seed=3",
]  # fmt: skip


def search(root: Path, *extra: str) -> tuple[dict[str, Any], Path]:
    res = subprocess.run([sys.executable, "-m", "rewardlab.cli", "search", *TINY_SEARCH, *extra, f"runs_dir={root}"],
                         capture_output=True, text=True, timeout=900, env=ray_env(), cwd=root.parent)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (found,) = [p.parent for p in root.rglob("search.json")]
    return json.loads((found / "search.json").read_text()), found


@pytest.mark.timeout(1500)  # two small searches and a cluster start-up, on a shared machine
def test_a_ray_cluster_search_survives_a_killed_worker_and_matches_the_local_search(
    ray_cluster: str, tmp_path: Path
) -> None:
    killed: list[int] = []

    def kill_the_first_worker_mid_job() -> None:
        log = next(
            iter(wait_for(lambda: list((tmp_path / "ray").rglob("rung_0/attempts_0.jsonl"))))
        )
        directory = log.parent.parent.parent / "candidates" / "0"
        first = json.loads(
            wait_for(lambda: (directory / "tb").exists() and log.read_text().splitlines()[0])
        )
        killed.append(
            first["supervisor_pid"]
        )  # the Ray worker running the job (its training dies with it)
        os.kill(first["supervisor_pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_the_first_worker_mid_job, daemon=True)
    killer.start()
    on_ray, ray_dir = search(
        tmp_path / "ray", "search.launcher=ray", f"search.ray_address={ray_cluster}"
    )
    killer.join(5)
    # the same search locally, in this process, from the Ray run's recorded replies (llm=replay)
    local, _ = search(
        tmp_path / "local", "search.launcher=inline", "llm=replay", f"llm.replay_from={ray_dir}"
    )
    assert killed, "the worker was never killed"
    assert on_ray["status"] == local["status"] == "done"
    assert on_ray["settings"]["launcher"] == "ray"
    # the same candidates, trained to the same budgets with the same decision numbers
    fields = ("index", "verdict", "status", "budget_reached", "success", "progress", "rank")
    cands = [
        [{k: c.get(k) for k in fields} for it in rec["iterations"] for c in it["candidates"]]
        for rec in (on_ray, local)
    ]
    assert cands[0] == cands[1]
    assert on_ray["best"]["dir"] == local["best"]["dir"]
    # the job whose worker was killed ran again on a fresh worker and finished
    attempts = [
        json.loads(line)
        for line in (ray_dir / "iterations/0/batches/rung_0/attempts_0.jsonl")
        .read_text()
        .splitlines()
    ]
    assert (
        len(attempts) == 2
        and attempts[0]["supervisor_pid"] == killed[0] != attempts[1]["supervisor_pid"]
    )
    # jobs ran on both nodes of the cluster
    nodes = {
        json.loads(line)["node"]
        for p in ray_dir.rglob("attempts_*.jsonl")
        for line in p.read_text().splitlines()
    }
    assert len(nodes) == 2


APP = """
import os, time
import hydra
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg):
    if int(cfg.x) == 2:
        time.sleep(600)  # a hang
    # Ray workers run in the cluster's environment, not the driver's: write next to the job
    with open(os.path.join(HydraConfig.get().runtime.output_dir, "done.txt"), "w") as fh:
        fh.write(f"{os.getpid()} {os.environ.get('REWARDLAB_RAY_NODE')}")

main()
"""


def test_the_ray_launcher_sweeps_any_hydra_app_and_fails_a_hung_job(
    ray_cluster: str, tmp_path: Path
) -> None:
    (tmp_path / "app.py").write_text(APP)
    res = subprocess.run(
        [sys.executable, str(tmp_path / "app.py"), "-m", "+x=0,1,2", "hydra/launcher=rewardlab_ray",
         f"hydra.launcher.address={ray_cluster}", "hydra.launcher.timeout_s=20", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        capture_output=True, text=True, timeout=600, env=ray_env(), cwd=tmp_path,
    )  # fmt: skip
    # the hung job fails the multirun (Hydra reports it once every job has returned) ...
    assert res.returncode != 0 and "TimeoutError" in res.stderr + res.stdout, res.stderr[-3000:]
    assert "still running after 20 s" in res.stderr + res.stdout
    # ... while the others ran, each in its own process on the cluster
    done = [(tmp_path / "sweep" / str(x) / "done.txt").read_text().split() for x in (0, 1)]
    assert len({pid for pid, _ in done}) == 2 and all(node != "None" for _, node in done)
    assert not (tmp_path / "sweep" / "2" / "done.txt").exists()
