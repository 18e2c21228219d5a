"""SB3 VecEnv and gymnasium VectorEnv adapters over the rollout core; PPO trains on it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

from rewardlab.rollout import CoreConfig, RolloutCore
from rewardlab.rollout.gym_vector import CoreVectorEnv
from rewardlab.rollout.sb3 import CoreVecEnv
from rewardlab.tasks import get_task
from rewardlab.wrappers import compile_for_task, make_env

PROGRAM = """
import math
def compute_dense_reward(self, action):
    vx = self.hopper.top.velocity_x
    upright = math.cos(self.hopper.top_joint.angle)
    return vx + 0.5 * upright, {"progress": vx, "upright": 0.5 * upright}
"""


def _short_task(horizon=12):
    return dataclasses.replace(get_task("mujoco/hopper_forward"), horizon=horizon)


def test_vecenv_matches_dummyvecenv_of_gymnasium_envs():
    """Same seeds and actions: CoreVecEnv returns what DummyVecEnv over make_env returns
    (obs, rewards, dones, infos incl. terminal_observation, is_success, reward components)."""
    task, n = _short_task(), 3
    core = RolloutCore(task, CoreConfig(num_worlds=n, engine="loop"), program=PROGRAM)
    ours = CoreVecEnv(core)
    ref = DummyVecEnv([lambda: make_env(task, compile_for_task(PROGRAM, task)) for _ in range(n)])
    ours.seed(11)
    ref.seed(11)
    np.testing.assert_array_equal(ours.reset(), ref.reset())
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(30):
        action = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
        obs, rew, done, infos = ours.step(action)
        r_obs, r_rew, r_done, r_infos = ref.step(action)
        np.testing.assert_array_equal(obs, r_obs)
        np.testing.assert_allclose(rew, r_rew, rtol=1e-6)
        np.testing.assert_array_equal(done, r_done)
        for got, want in zip(infos, r_infos, strict=True):
            for key in (
                "success",
                "task/progress",
                "reward/env",
                "reward/progress",
                "reward/upright",
                "TimeLimit.truncated",
                "is_success",
            ):
                assert (key in got) == (key in want), key
                if key in want:
                    assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), key
            if "terminal_observation" in want:
                ended += 1
                np.testing.assert_array_equal(
                    got["terminal_observation"], want["terminal_observation"]
                )
    assert ended >= n
    assert ours.get_attr("error_counts")[0] == {}
    assert ours.env_is_wrapped(VecMonitor) == [False] * n
    ours.close()
    ref.close()


def test_episode_info_mode_and_vecmonitor():
    core = RolloutCore(_short_task(5), CoreConfig(num_worlds=2), program=PROGRAM)
    venv = VecMonitor(CoreVecEnv(core, infos="episode"), info_keywords=("is_success",))
    venv.reset()
    episodes = []
    for _ in range(5):
        _, _, done, infos = venv.step(np.zeros((2, 3), dtype=np.float32))
        assert all("reward/progress" not in info for info in infos)
        episodes += [info["episode"] for info in infos if "episode" in info]
    assert done.all() and len(episodes) == 2
    assert episodes[0]["l"] == 5 and "is_success" in episodes[0]


def test_ppo_trains_on_the_core():
    """A short PPO run with VecNormalize, exactly as rewardlab.training builds it."""
    torch.set_num_threads(1)
    core = RolloutCore(
        get_task("mujoco/hopper_forward"), CoreConfig(num_worlds=8, seed=0), program=PROGRAM
    )
    venv = VecNormalize(VecMonitor(CoreVecEnv(core), info_keywords=("is_success",)))
    model = PPO(
        "MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu", verbose=0
    )
    model.learn(total_timesteps=512)
    assert model.num_timesteps == 512
    assert len(model.ep_info_buffer) > 0 and len(model.ep_success_buffer) > 0
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == (8, 3)
    assert core.reward_report.mode == "lifted"
    venv.close()


def test_gymnasium_vector_adapter_same_step_autoreset():
    core = RolloutCore(_short_task(4), CoreConfig(num_worlds=3), program=PROGRAM)
    envs = CoreVectorEnv(core)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (3, 11) and envs.observation_space.shape == (3, 11)
    for _ in range(4):
        obs, rew, term, trunc, infos = envs.step(np.zeros((3, 3), dtype=np.float32))
    assert trunc.all() and "final_obs" in infos and infos["_final_obs"].all()
    assert infos["final_info"]["_is_success"].all()
    assert infos["final_obs"][0].shape == (11,)
    assert not np.array_equal(infos["final_obs"][0], obs[0])  # obs already starts the next episode
    assert infos["reward/progress"].shape == (3,)
    envs.close()
