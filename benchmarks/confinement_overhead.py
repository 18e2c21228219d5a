"""Training throughput with the reward program confined versus run in the trainer's process.

Usage: python benchmarks/confinement_overhead.py [--slices 6] [--slice-steps 4096]
       [--task mujoco/hopper_forward] [--markdown FILE]

The main job's settings (``rewardlab train``: ``mujoco/hopper_forward``, the offline
synthesizer's program, PPO with the ``algo=ppo`` preset, 4 envs, ``VecNormalize``, torch with
``train.torch_threads``) are trained twice in one process:

  in-process  what rewardlab did before the OS wall: a ``DummyVecEnv`` of 4 envs, each with
              ``ProgramReward`` calling its own ``fresh()`` copy of the program compiled once,
              in the trainer's process
  confined    what ``rewardlab train`` does now: ``rewardlab.training.make_vec_env``, the
              program compiled once here and shipped to one worker behind
              seccomp/Landlock/rlimits holding the 4 envs with their copies, one message
              each way per vectorised step

The two trainings are *interleaved*: each slice lets both learn ``--slice-steps`` more steps
(PPO rollouts and gradient updates included), in alternating order; the ratio of their
env-steps/s in each slice compares times measured seconds apart, so load from other users of
the machine falls on both alike. The table reports the median ratio over slices with the
2.5-97.5% range of a bootstrap of the median (1,000 resamples). Target: confined at least 0.9x.

Wall-clock throughput on a machine shared with other users favours the confined run (two
processes get a larger share of a contended CPU than one), so the CPU time each slice costs is
measured too (this process's user + system time, plus the worker's, read from ``/proc``): the
ratio of CPU per step is the overhead the confinement adds whatever the load.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from rewardlab.config import AlgoConfig, TrainConfig, register_configs
from rewardlab.generators.offline import offline_reward
from rewardlab.paths import data_dir
from rewardlab.reward.program import RewardProgram
from rewardlab.tasks import get_task
from rewardlab.training import build_model, make_vec_env
from rewardlab.workers.confined import ConfinedVecEnv
from rewardlab.wrappers import ProgramReward, compile_for_task, make_env


def main_job_config() -> tuple[AlgoConfig, TrainConfig]:
    """The ``algo`` and ``train`` nodes of ``rewardlab train`` with no overrides."""
    register_configs()  # the schema and the task configs, as the CLI registers them
    with initialize_config_dir(config_dir=str(data_dir("conf")), version_base="1.3"):
        cfg = compose(config_name="config")
    algo = AlgoConfig(**OmegaConf.to_container(cfg.algo, resolve=True))  # type: ignore[arg-type]
    train = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))  # type: ignore[arg-type]
    return algo, train


def in_process_vec_env(task: Any, program: RewardProgram, train: TrainConfig) -> DummyVecEnv:
    """The trainer-process reward of before: each env calls its copy of the program here."""

    def factory(rank: int) -> Any:
        def make() -> Any:
            env = ProgramReward(
                make_env(task), task, program.fresh(), max_error_rate=train.max_reward_error_rate
            )
            return Monitor(env, info_keywords=("is_success",))

        return make

    venv = DummyVecEnv([factory(i) for i in range(train.n_envs)])
    venv.seed(train.seed)
    return venv


def cpu_seconds(model: Any) -> float:
    """CPU time (user + system) of this process, plus that of the confined workers that step
    ``model``'s envs, if it has them: what one training costs the machine, whatever the load."""
    total = time.process_time()
    venv = unwrap(model)
    for worker in venv.workers if isinstance(venv, ConfinedVecEnv) else []:
        fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def bootstrap_median(
    values: np.ndarray, rng: np.random.Generator, n: int = 1000
) -> tuple[float, float]:
    medians = np.median(rng.choice(values, size=(n, len(values)), replace=True), axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def run(task_name: str, slices: int, slice_steps: int) -> dict[str, Any]:
    algo, train = main_job_config()
    torch.set_num_threads(train.torch_threads)
    task = get_task(task_name)
    program = compile_for_task(offline_reward(task), task)
    one_worker = replace(train, env_workers=1)
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        models["in-process"], _ = build_model(
            algo, train, in_process_vec_env(task, program, train), Path(tmp) / "a"
        )
        models["confined"], _ = build_model(
            algo, train, make_vec_env(task, program, train), Path(tmp) / "b"
        )
        models["confined, 1 worker"], _ = build_model(
            algo, one_worker, make_vec_env(task, program, one_worker), Path(tmp) / "c"
        )
        workers = len(unwrap(models["confined"]).workers)
        times: dict[str, list[float]] = {name: [] for name in models}
        cpu: dict[str, list[float]] = {name: [] for name in models}
        order = list(models)
        for i in range(slices):
            for name in order if i % 2 == 0 else order[::-1]:
                model = models[name]
                start, cpu_start = time.perf_counter(), cpu_seconds(model)
                model.learn(total_timesteps=slice_steps, reset_num_timesteps=False)
                times[name].append(time.perf_counter() - start)
                cpu[name].append(cpu_seconds(model) - cpu_start)
        for model in models.values():
            env = model.get_env()
            assert env is not None
            env.close()
    fps = {name: slice_steps / np.asarray(t) for name, t in times.items()}
    result: dict[str, Any] = {
        "task": task_name, "n_envs": train.n_envs, "workers": workers, "slices": slices,
        "slice_steps": slice_steps, "fps": {name: float(np.median(v)) for name, v in fps.items()},
        "cpu_ms_per_step": {name: 1000 * float(np.median(v)) / slice_steps for name, v in cpu.items()},
        "arms": {},
    }  # fmt: skip
    for name in order[1:]:
        ratios = fps[name] / fps["in-process"]
        cpu_ratios = np.asarray(cpu[name]) / np.asarray(cpu["in-process"])
        result["arms"][name] = {
            "ratio": float(np.median(ratios)),
            "ratio_ci": bootstrap_median(ratios, np.random.default_rng(0)),
            "ratios": [round(float(r), 3) for r in ratios],
            "cpu_ratio": float(np.median(cpu_ratios)),
            "cpu_ratio_ci": bootstrap_median(cpu_ratios, np.random.default_rng(1)),
        }
    return result


def unwrap(model: Any) -> Any:
    """The innermost vectorised env of ``model``."""
    return model.get_env().unwrapped


def markdown(result: dict[str, Any]) -> str:
    load = os.getloadavg()
    lines = []
    for name, arm in result["arms"].items():
        label = f"{name} ({result['workers']} workers)" if name == "confined" else name
        lines.append(
            f"| {result['task']} | PPO, {result['n_envs']} envs | {label} | "
            f"{result['fps']['in-process']:,.0f} | {result['fps'][name]:,.0f} | "
            f"{arm['ratio']:.3f} [{arm['ratio_ci'][0]:.3f}, {arm['ratio_ci'][1]:.3f}] | "
            f"{result['cpu_ms_per_step']['in-process']:.2f} | {result['cpu_ms_per_step'][name]:.2f} | "
            f"{arm['cpu_ratio']:.3f} [{arm['cpu_ratio_ci'][0]:.3f}, {arm['cpu_ratio_ci'][1]:.3f}] | "
            f"{result['slices']} x {result['slice_steps']:,} | {load[0]:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=6)
    parser.add_argument("--slice-steps", type=int, default=4096)
    parser.add_argument("--task", default="mujoco/hopper_forward")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    result = run(args.task, args.slices, args.slice_steps)
    header = (
        "| task | training | arm | in-process env-steps/s | arm env-steps/s | arm / in-process "
        "(median, 95% bootstrap) | in-process CPU ms/step | arm CPU ms/step (trainer + workers) | "
        "CPU arm / in-process (median, 95% bootstrap) | slices | load at end |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|"
    )
    line = markdown(result)
    print(header + "\n" + line)
    for name, arm in result["arms"].items():
        print(f"per-slice ratios, {name}:", arm["ratios"])
    if args.markdown is not None:
        args.markdown.write_text(header + "\n" + line + "\n")


if __name__ == "__main__":
    main()
