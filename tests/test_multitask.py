"""Multi-task training pieces on small hand-made envs: the task id in every observation
(terminal ones included), per-task reward normalisation that survives save/load, member
evaluation with intervals, the sets, and warm starts with adapters."""

from __future__ import annotations

import contextlib

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from rewardlab.config import MoEConfig
from rewardlab.evaluation import EpisodeResult
from rewardlab.moe.policies import (
    MoEActorCriticPolicy,
    inherit,
    moe_layers,
    parameter_counts,
    warm_start_kwargs,
)
from rewardlab.multitask import (
    MultiTaskNormalize,
    MultiTaskVecEnv,
    check_members,
    envs_per_member,
    list_sets,
    load_set,
    member_index,
    member_programs,
    member_tasks,
    summarize_members,
)


class Scaled(gym.Env):
    """Observation: a step counter and a constant ``level``; reward ``scale`` (+ noise);
    episodes of ``length`` steps."""

    def __init__(self, scale: float, level: float, length: int = 3) -> None:
        self.scale, self.level, self.length = scale, level, length
        self.observation_space = spaces.Box(-10, 10, (2,), np.float32)
        self.action_space = spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, self.level], np.float32), {}

    def step(self, action):
        self.t += 1
        reward = self.scale * (1.0 + self.np_random.normal())
        return np.array([self.t, self.level], np.float32), reward, self.t >= self.length, False, {}


def _two_tasks() -> MultiTaskVecEnv:
    return MultiTaskVecEnv(
        ["small", "large"],
        [
            DummyVecEnv([lambda: Scaled(0.01, 1.0)] * 2),
            DummyVecEnv([lambda: Scaled(1000.0, -1.0)] * 3),
        ],
    )


def test_task_id_is_appended_to_every_observation_including_terminal_ones() -> None:
    venv = _two_tasks()
    assert venv.num_envs == 5 and venv.observation_space.shape == (4,)
    assert venv.task_index.tolist() == [0, 0, 1, 1, 1]
    obs = venv.reset()
    assert obs[:, 2:].tolist() == [[1, 0]] * 2 + [[0, 1]] * 3
    assert obs[:, 1].tolist() == [1, 1, -1, -1, -1]
    for _ in range(3):
        obs, rewards, dones, infos = venv.step(np.zeros((5, 1), np.float32))
    assert dones.all()
    terminal = np.stack([i["terminal_observation"] for i in infos])
    assert (
        terminal[:, 0].tolist() == [3] * 5
        and terminal[:, 2:].tolist() == [[1, 0]] * 2 + [[0, 1]] * 3
    )
    assert venv.get_attr("level", indices=[1, 2]) == [1.0, -1.0]
    venv.close()


def test_members_must_share_shapes() -> None:
    class Wide(Scaled):
        def __init__(self) -> None:
            super().__init__(1.0, 0.0)
            self.observation_space = spaces.Box(-1, 1, (3,), np.float32)

    with pytest.raises(ValueError, match="same observation shape"):
        MultiTaskVecEnv(["a", "b"], [DummyVecEnv([lambda: Scaled(1.0, 0.0)]), DummyVecEnv([Wide])])


@pytest.mark.parametrize("task_scale", ["return", "step"])
def test_per_task_normalisation_equalises_reward_scales_and_reloads(
    task_scale: str, tmp_path
) -> None:
    norm = MultiTaskNormalize(_two_tasks(), task_scale=task_scale)
    norm.reset()
    scaled = []
    for _ in range(300):
        _, rewards, _, _ = norm.step(np.zeros((5, 1), np.float32))
        scaled.append(rewards)
        assert np.array_equal(norm.get_original_reward(), rewards)  # what SAC would store
    late = np.abs(np.array(scaled[150:]))
    small, large = late[:, :2].mean(), late[:, 2:].mean()
    assert 0.2 < small / large < 5  # raw scales differ by 1e5
    scales = norm.task_scales()
    assert scales[1] / scales[0] > 1e4
    obs = norm.normalize_obs(np.array([[1.0, 1.0, 1.0, 0.0]], np.float32))
    assert obs[0, 2:].tolist() == [1.0, 0.0]  # the task id is not normalised
    norm.save(str(tmp_path / "stats.pkl"))
    loaded = VecNormalize.load(str(tmp_path / "stats.pkl"), _two_tasks())
    assert isinstance(loaded, MultiTaskNormalize)
    assert np.allclose(loaded.task_scales(), scales)
    with pytest.raises(ValueError, match="other members"):
        VecNormalize.load(
            str(tmp_path / "stats.pkl"),
            MultiTaskVecEnv(["a", "b"], [DummyVecEnv([lambda: Scaled(1, 0)])] * 2),
        )


def test_sets_members_and_sources() -> None:
    assert {"multi/mt10", "multi/hopper"} <= set(list_sets())
    mt10 = load_set("multi/mt10")
    names = [t.name for t in member_tasks(mt10)]
    assert len(names) == 10 and "metaworld/peg_insert_side" in names
    assert all(t.horizon == 500 for t in member_tasks(mt10))  # horizon 0: the members' own
    mt10.horizon = 150
    assert all(t.horizon == 150 for t in member_tasks(mt10))
    assert member_index(mt10, "push") == member_index(mt10, "metaworld/push") == 1
    with pytest.raises(KeyError, match="not a member"):
        member_index(mt10, "hopper_forward")
    assert envs_per_member(mt10, 4) == 1 and envs_per_member(load_set("hopper"), 4) == 2
    assert list(member_programs(mt10, None).values()) == [None] * 10
    with pytest.raises(KeyError, match="not members"):
        member_programs(mt10, {"metaworld/pushh": None})
    with pytest.raises(TypeError, match="one program per member"):
        member_programs(mt10, "x = 1")
    mt10.members = ["metaworld/push", "metaworld/push"]
    with pytest.raises(ValueError, match="twice"):
        check_members(mt10)
    mt10.members = ["metaworld/pushh"]
    with pytest.raises(ValueError, match="unknown task"):
        check_members(mt10)
    with pytest.raises(KeyError, match="sets:"):
        load_set("mt11")


def test_member_summary_weighs_members_equally_with_intervals() -> None:
    def episodes(wins: int, n: int, name: str) -> list[EpisodeResult]:
        return [EpisodeResult(i < wins, 0.5, 10, 1.0, 2.0) for i in range(n)]

    summary = summarize_members(
        load_set("hopper"), {"a": episodes(4, 4, "a"), "b": episodes(0, 4, "b")}
    )
    assert summary["success_rate"] == 0.5 and summary["episodes"] == 8
    assert summary["per_task"]["a"]["success_rate"] == 1.0
    low, high = summary["per_task"]["b"]["interval"]
    assert low == 0.0 and 0.4 < high < 0.6  # Wilson 95% for 0/4
    low, high = summary["interval"]
    assert low < 0.5 < high
    assert [e["task"] for e in summary["per_episode"]] == ["a"] * 4 + ["b"] * 4


@pytest.mark.parametrize("mode", ["full", "lora", "lora_moe"])
def test_warm_start_starts_as_the_parent_and_trains_only_the_adapters(mode: str, tmp_path) -> None:
    env = gym.make("Pendulum-v1")
    parent = PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0,
                 policy_kwargs={"net_arch": [16, 16]})  # fmt: skip
    parent.learn(64)
    moe = MoEConfig(router="tsallis", experts=3, lora_rank=2)
    policy, kwargs = warm_start_kwargs(parent, mode, moe)
    model = PPO(policy, env, n_steps=64, batch_size=32, n_epochs=2, seed=1, policy_kwargs=kwargs)
    inherit(model, parent)
    obs = np.stack([env.observation_space.sample() for _ in range(16)])
    assert _same(model, parent, obs)  # LoRA's B starts at 0: the adapted policy is the parent
    counts, full = parameter_counts(model.policy), parameter_counts(parent.policy)
    if mode == "full":
        assert counts["frozen"] == 0 and counts["total"] == full["total"]
        assert moe_layers(model.policy) == {}
    else:
        assert counts["frozen"] == full["total"] - 1  # all but PPO's log-std (1 action)
        trainable = [n for n, p in model.policy.named_parameters() if p.requires_grad]
        assert all(".experts." in n or ".router." in n or n == "log_std" for n in trainable)
        assert set(moe_layers(model.policy)) == {
            "pi",
            "pi.2",
            "vf",
            "vf.2",
            "action_net",
            "value_net",
        }
    base = {k: v.clone() for k, v in model.policy.state_dict().items() if ".base." in k}
    adapters = {k: v.clone() for k, v in model.policy.state_dict().items() if ".experts." in k}
    model.learn(128)
    after = model.policy.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base.items())
    assert mode == "full" or any(not torch.equal(after[k], v) for k, v in adapters.items())
    model.save(tmp_path / "m")
    assert _same(PPO.load(tmp_path / "m", env=env), model, obs)
    expect = pytest.raises(ValueError, match="itself trained under adapters")
    with expect if mode != "full" else contextlib.nullcontext():
        warm_start_kwargs(model, "lora", moe)


def test_sac_warm_start_copies_critics_and_skips_the_random_warm_up() -> None:
    env = gym.make("Pendulum-v1")
    parent = SAC(
        "MlpPolicy",
        env,
        learning_starts=32,
        batch_size=16,
        seed=0,
        policy_kwargs={"net_arch": [16, 16]},
    )
    parent.learn(64)
    policy, kwargs = warm_start_kwargs(parent, "lora", MoEConfig(lora_rank=2))
    model = SAC(policy, env, learning_starts=5000, batch_size=16, seed=1, policy_kwargs=kwargs)
    inherit(model, parent)
    assert model.learning_starts == 16
    assert torch.equal(model.log_ent_coef, parent.log_ent_coef)
    obs = torch.as_tensor(np.stack([env.observation_space.sample() for _ in range(4)]))
    act = torch.zeros(4, 1)
    with torch.no_grad():
        assert torch.allclose(model.critic(obs, act)[0], parent.critic(obs, act)[0])
        assert torch.allclose(model.critic_target(obs, act)[0], parent.critic_target(obs, act)[0])


def _same(a, b, obs) -> bool:
    return bool(
        np.allclose(a.predict(obs, deterministic=True)[0], b.predict(obs, deterministic=True)[0])
    )


def test_moe_policy_class_builds_dense_without_moe() -> None:
    env = gym.make("Pendulum-v1")
    dense = PPO(MoEActorCriticPolicy, env, policy_kwargs={"net_arch": [8]})
    assert moe_layers(dense.policy) == {}
