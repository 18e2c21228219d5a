"""Training on a reward program: PPO and SAC run, log components, evaluate the task metric,
checkpoint, and continue from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewardlab.checkpoints import latest_checkpoint, load_policy
from rewardlab.config import AlgoConfig, RolloutConfig, ShapingConfig, TrainConfig
from rewardlab.rundir import read_csv, read_json
from rewardlab.tasks import get_task
from rewardlab.training import ContinuedCSV, train

SOURCE = (
    "def compute_dense_reward(self, action):\n"
    "    fwd = self.hopper.top.velocity_x\n"
    "    return fwd + 1.0, {'forward': fwd, 'alive': 1.0}\n"
)


def tiny(**kw: object) -> TrainConfig:
    base = dict(total_timesteps=1024, n_envs=2, eval_freq=512, eval_episodes=1, checkpoint_freq=512,
                progress_bar=False, video_episodes=0, stop_at_success=0.0)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "algo",
    [
        AlgoConfig(name="ppo", kwargs={"n_steps": 256, "batch_size": 64}),
        AlgoConfig(
            name="sac",
            normalize_reward=False,
            kwargs={"learning_starts": 100, "buffer_size": 5000, "batch_size": 64},
        ),
    ],
    ids=["ppo", "sac"],
)
def test_train_and_continue_from_checkpoint(algo: AlgoConfig, tmp_path: Path) -> None:
    task = get_task("mujoco/hopper_forward")
    first = train(task, SOURCE, algo, tiny(), tmp_path)
    assert first.timesteps >= 1024
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt is not None and ckpt[1] >= 512
    if algo.name == "sac":
        assert (tmp_path / "checkpoints" / f"model_replay_buffer_{ckpt[1]}_steps.pkl").exists()
    rows = read_csv(tmp_path / "metrics.csv")
    assert [int(r["timesteps"]) for r in rows][:2] == [512, 1024]
    progress = read_csv(tmp_path / "tb" / "progress.csv")
    assert any(r.get("reward/forward") for r in progress) and any(
        r.get("reward/alive") for r in progress
    )

    more = train(
        task, SOURCE, algo, tiny(total_timesteps=2048), tmp_path
    )  # continues, not restarts
    assert more.timesteps >= 2048
    steps = [int(r["timesteps"]) for r in read_csv(tmp_path / "metrics.csv")]
    assert steps == sorted(steps) and steps[-1] >= 2048
    model, normalizer = load_policy(tmp_path, algo.name)
    assert model.num_timesteps >= 2048 and normalizer is not None


def test_env_reward_when_no_program(tmp_path: Path) -> None:
    result = train(
        get_task("mujoco/hopper_forward"),
        None,
        AlgoConfig(kwargs={"n_steps": 256}),
        tiny(total_timesteps=512),
        tmp_path,
    )
    assert result.timesteps >= 512 and result.reward_errors == {}


@pytest.mark.slow
def test_default_main_job_learns_hopper_forward(tmp_path: Path) -> None:
    """The README's main job (defaults: hopper_forward, PPO, <= 150k steps) meets the task's
    success metric in most evaluation episodes."""
    from omegaconf import OmegaConf

    from rewardlab.evaluation import run_episodes, summarize
    from rewardlab.generators.base import GenerationRequest, extract_code
    from rewardlab.generators.offline import OfflineGenerator
    from rewardlab.wrappers import compile_for_task

    task = get_task("mujoco/hopper_forward")
    reply = OfflineGenerator().propose(
        GenerationRequest(task=task, instruction=task.instruction, messages=[])
    )
    source = extract_code(reply.text)
    algo = OmegaConf.to_object(
        OmegaConf.merge(
            OmegaConf.structured(AlgoConfig),
            OmegaConf.load(Path(__file__).parents[1] / "conf/algo/ppo.yaml"),
        )
    )
    cfg = TrainConfig(progress_bar=False, video_episodes=0)
    train(task, source, algo, cfg, tmp_path)  # type: ignore[arg-type]
    model, normalizer = load_policy(tmp_path, "ppo")
    final = summarize(
        run_episodes(
            task,
            model,
            episodes=10,
            seed=123,
            program=compile_for_task(source, task),
            normalizer=normalizer,
        )
    )  # type: ignore[arg-type]
    assert final["success_rate"] >= 0.8, final


def test_resume_skips_a_checkpoint_broken_by_a_kill(tmp_path: Path) -> None:
    """Regression: a run killed while SB3 wrote a checkpoint left a truncated zip that resume
    picked as the newest and failed on ("No data found in the saved file")."""
    task = get_task("mujoco/hopper_forward")
    algo = AlgoConfig(kwargs={"n_steps": 256})
    train(task, SOURCE, algo, tiny(), tmp_path)
    good = latest_checkpoint(tmp_path)
    assert good is not None
    broken = tmp_path / "checkpoints" / f"model_{good[1] + 512}_steps.zip"
    broken.write_bytes(good[0].read_bytes()[:100])
    assert latest_checkpoint(tmp_path) == good
    more = train(task, SOURCE, algo, tiny(total_timesteps=2048), tmp_path)
    assert more.timesteps >= 2048


def test_training_on_the_rollout_core_backend(tmp_path: Path) -> None:
    """The core trains with the ``rollout`` node's settings, keeps the preset's rollout size per
    update with 8 envs, and records what ran in ``rollout.json``."""
    algo = AlgoConfig(steps_per_update=1024)
    result = train(get_task("mujoco/hopper_forward"), SOURCE, algo, tiny(n_envs=8, backend="native"),
                   tmp_path, rollout=RolloutConfig(engine="rollout", reward_mode="per_world"))  # fmt: skip
    assert result.timesteps == 1024  # one update of 8 envs x 128 steps
    progress = read_csv(tmp_path / "tb" / "progress.csv")
    assert any(r.get("reward/forward") for r in progress), (
        "components reach the logger from the core"
    )
    assert read_csv(tmp_path / "metrics.csv"), "the task metric is evaluated"
    record = read_json(tmp_path / "rollout.json")
    assert record == result.rollout
    assert (record["backend"], record["engine"], record["num_worlds"]) == ("native", "rollout", 8)
    assert record["steps"] == 128 and record["reward"]["mode"] == "per_world"
    assert record["reward"]["per_world_calls"] == 8 * 128
    default = train(get_task("mujoco/hopper_forward"), SOURCE, algo, tiny(n_envs=8, backend="native",
                    total_timesteps=1024), tmp_path / "default")  # fmt: skip
    assert (default.rollout["engine"], default.rollout["reward"]["mode"]) == ("loop", "batched")
    assert default.rollout["reward"]["verifications"] == 128 - 1  # every step after the decision


def test_backend_that_cannot_run_the_task_is_refused_before_training(tmp_path: Path) -> None:
    algo = AlgoConfig(kwargs={"n_steps": 128})
    with pytest.raises(ValueError, match="humanoid_forward: the batched core reproduces"):
        train(get_task("mujoco/humanoid_forward"), None, algo, tiny(backend="native"), tmp_path)
    with pytest.raises(
        ValueError, match="shaping=adaptive wraps each env and needs train.backend=dummy"
    ):
        train(get_task("mujoco/hopper_forward"), SOURCE, algo, tiny(backend="native"), tmp_path,
              shaping=ShapingConfig(kind="adaptive"))  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_resume_keeps_the_progress_log(tmp_path: Path) -> None:
    """Regression: SB3 opened ``tb/progress.csv`` with mode ``w`` on resume, so the component
    curves logged before it were lost. Rows up to the checkpoint are kept; a line cut short by
    a kill is dropped."""
    task = get_task("mujoco/hopper_forward")
    algo = AlgoConfig(kwargs={"n_steps": 256})
    train(task, SOURCE, algo, tiny(), tmp_path)
    path = tmp_path / "tb" / "progress.csv"
    before = read_csv(path)
    assert before and max(int(r["time/total_timesteps"]) for r in before) == 1024
    with path.open("a") as f:
        f.write("0.5,0.1")  # a kill in the middle of a row
    train(task, SOURCE, algo, tiny(total_timesteps=2048), tmp_path)
    after = read_csv(path)
    steps = [int(r["time/total_timesteps"]) for r in after]
    assert steps == sorted(set(steps)) and steps[-1] >= 2048
    assert after[: len(before)] == [
        {**row, **{k: "" for k in after[0].keys() - row.keys()}} for row in before
    ]
    assert all(r.get("reward/forward") for r in after)


def test_continued_csv_keeps_rows_up_to_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "progress.csv"
    path.write_text("time/total_timesteps,reward/a\n256,1.0\n512,2.0\n768,3.0\n")
    writer = ContinuedCSV(str(path), keep_until=512)  # resumed from the 512-step checkpoint
    writer.write({"time/total_timesteps": 768, "reward/a": 3.5, "reward/b": 7}, {}, 768)
    writer.close()
    rows = read_csv(path)
    assert [(r["time/total_timesteps"], r["reward/a"], r["reward/b"]) for r in rows] == [
        ("256", "1.0", ""), ("512", "2.0", ""), ("768", "3.5", "7"),
    ]  # fmt: skip
    ContinuedCSV(str(path), keep_until=0).close()  # a fresh training starts a fresh log
    assert path.read_text() == ""


def test_train_once_trains_then_reuses_the_finished_run(tmp_path: Path) -> None:
    from rewardlab.training import train_once

    task, algo = get_task("mujoco/hopper_forward"), AlgoConfig(kwargs={"n_steps": 256})
    first = train_once(task, None, algo, tiny(total_timesteps=512, eval_freq=256), tmp_path / "run")
    assert [p["steps"] for p in first.curve] == [256, 512] and first.wall_s > 0
    assert (tmp_path / "run" / "reward.py").read_text().startswith("# the benchmark's own reward")
    (tmp_path / "run" / "model.zip").unlink()  # a second call must not train (or load) again
    again = train_once(task, None, algo, tiny(total_timesteps=4096), tmp_path / "run")
    assert again == first and not (tmp_path / "run" / "model.zip").exists()


def test_the_core_trains_exactly_like_gymnasium_envs(tmp_path: Path) -> None:
    """Same seeds and settings: PPO on train.backend=native ends with the policy of PPO on
    gymnasium envs (float32 rounding apart), so a learning difference between the two can only
    come from other settings (n_envs, n_steps), never from the core."""
    import numpy as np
    import torch

    params = {}
    for backend in ("dummy", "native"):
        algo = AlgoConfig(kwargs={"n_steps": 128, "batch_size": 64, "n_epochs": 2})
        train(get_task("mujoco/hopper_forward"), SOURCE, algo,
              tiny(total_timesteps=512, n_envs=4, backend=backend, eval_freq=10**9), tmp_path / backend)  # fmt: skip
        model, _ = load_policy(tmp_path / backend, "ppo")
        params[backend] = (
            torch.cat([p.flatten() for p in model.policy.parameters()]).detach().numpy()
        )
    assert np.abs(params["dummy"]).max() > 0.1
    np.testing.assert_allclose(params["native"], params["dummy"], rtol=0, atol=1e-5)
