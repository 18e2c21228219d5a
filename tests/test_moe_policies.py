"""MoE actors and critics inside SB3's PPO and SAC: they train, log router statistics, and
save/load to the same actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO, SAC

from rewardlab.moe import ROUTERS
from rewardlab.moe.layer import MoELayer
from rewardlab.moe.policies import (
    MoEActorCriticPolicy,
    MoESACPolicy,
    MoEStatistics,
    moe_layers,
    moe_statistics,
    parameter_counts,
)


def _same_actions(model, loaded, env: gym.Env) -> bool:
    obs = np.stack([env.observation_space.sample() for _ in range(8)])
    return bool(
        np.allclose(
            model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
        )
    )


@pytest.mark.parametrize("router", ROUTERS)
def test_ppo_with_each_router_trains_logs_and_reloads(router: str, tmp_path) -> None:
    env = gym.make("Pendulum-v1")
    kwargs = {"moe": {"router": router, "experts": 4, "k": 2, "shared": 1}, "net_arch": [16, 16]}
    model = PPO(
        MoEActorCriticPolicy,
        env,
        n_steps=64,
        batch_size=32,
        n_epochs=1,
        policy_kwargs=kwargs,
        seed=0,
    )
    before = {k: v.clone() for k, v in model.policy.state_dict().items() if "gate" in k}
    model.learn(128, callback=MoEStatistics())
    assert set(moe_layers(model.policy)) == {"pi", "vf"}
    assert any(not (model.policy.state_dict()[k] == v).all() for k, v in before.items())
    model.policy.set_training_mode(False)
    model.predict(env.observation_space.sample())
    live = moe_statistics(model.policy)
    assert sum(live[f"moe/pi/load/{e}"] for e in range(4)) == pytest.approx(1.0)
    model.save(tmp_path / "m")
    assert _same_actions(model, PPO.load(tmp_path / "m"), env)


@pytest.mark.parametrize(
    ("router", "where"), [("sigmoid", "both"), ("expert_choice", "actor"), ("topk", "critic")]
)
def test_sac_moe_actor_and_critic_reload(router: str, where: str, tmp_path) -> None:
    env = gym.make("Pendulum-v1")
    kwargs = {"moe": {"router": router, "experts": 4, "k": 2, "where": where}, "net_arch": [16, 16]}
    model = SAC(MoESACPolicy, env, learning_starts=32, batch_size=16, policy_kwargs=kwargs, seed=0)
    model.learn(64)
    names = set(moe_layers(model.policy))
    assert ("actor" in names) == (where in ("actor", "both"))
    assert ({"qf0", "qf1"} <= names) == (where in ("critic", "both"))
    assert (
        not any(isinstance(m, MoELayer) for m in model.policy.critic_target.modules())
        or where != "actor"
    )
    model.save(tmp_path / "m")
    assert _same_actions(model, SAC.load(tmp_path / "m"), env)


def test_parameter_counts_split_actor_and_critic() -> None:
    env = gym.make("Pendulum-v1")
    dense = PPO("MlpPolicy", env, policy_kwargs={"net_arch": [16, 16]})
    moe = PPO(
        MoEActorCriticPolicy,
        env,
        policy_kwargs={
            "net_arch": [16, 16],
            "moe": {"experts": 2, "hidden": 16, "where": "actor"},
        },
    )
    d, m = parameter_counts(dense.policy), parameter_counts(moe.policy)
    assert d["critic"] == m["critic"]  # the critic stayed a plain MLP
    assert m["actor"] > d["actor"]
    assert d["total"] == sum(p.numel() for p in dense.policy.parameters())
