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


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_route_on_task_routes_every_layer_by_the_task_id_alone(algo: str, tmp_path) -> None:
    """``moe.route_on=task``: every router (PPO's actor and critic, SAC's actor and both
    critics, whose input also holds the action) reads only the one-hot task id at the end of
    the observation, so observations of one task share their experts; it survives save/load."""
    import torch

    from rewardlab.moe.toy import OppositeTasks, observation

    env = OppositeTasks()
    moe = {"router": "topk", "experts": 2, "k": 1, "route_on": "task"}
    kwargs = {"moe": moe, "net_arch": [8], "task_count": 2}
    if algo == "ppo":
        model = PPO(MoEActorCriticPolicy, env, n_steps=64, batch_size=32, n_epochs=1,
                    policy_kwargs=kwargs, seed=0)  # fmt: skip
    else:
        model = SAC(MoESACPolicy, env, learning_starts=32, batch_size=16, policy_kwargs=kwargs,
                    seed=0)  # fmt: skip
    model.learn(64)
    layers = moe_layers(model.policy)
    assert set(layers) == ({"pi", "vf"} if algo == "ppo" else {"actor", "qf0", "qf1"})
    xs = np.linspace(-1, 1, 9)
    for name, layer in layers.items():
        assert layer.router.gate.in_features == 2 and layer.route == (1, 3), name
        with torch.no_grad():
            for task in (0, 1):
                obs = torch.as_tensor(np.stack([observation(x, task) for x in xs]))
                inputs = obs if name in ("pi", "vf", "actor") else torch.cat([obs, obs[:, :1]], 1)
                layer(inputs)
                assert layer.last is not None
                w = layer.last.weights
                assert torch.equal(w, w[:1].expand_as(w)), (name, task)  # x does not move it
    model.save(tmp_path / "m")
    loaded = (PPO if algo == "ppo" else SAC).load(tmp_path / "m")
    assert all(lay.route == (1, 3) for lay in moe_layers(loaded.policy).values())
    assert _same_actions(model, loaded, env)


def test_route_on_task_needs_a_task_id_and_ppo_experts_start_like_sb3_layers() -> None:
    env = gym.make("Pendulum-v1")
    with pytest.raises(ValueError, match="moe.route_on=task routes by the one-hot task id"):
        PPO(MoEActorCriticPolicy, env, policy_kwargs={"moe": {"route_on": "task"}})
    model = PPO(MoEActorCriticPolicy, env, policy_kwargs={"moe": {"experts": 2, "hidden": 8},
                                                          "net_arch": [4]})  # fmt: skip
    experts = moe_layers(model.policy)["pi"].experts
    import torch

    for e in range(2):  # orthogonal with SB3's gain sqrt(2), zero biases, like its MLP layers
        w1 = experts.w1[e].detach()  # (3 inputs, 8 hidden): orthogonal rows
        assert torch.allclose(w1 @ w1.T, 2 * torch.eye(3), atol=1e-5)
        w2 = experts.w2[e].detach()  # (8 hidden, 4 out): orthogonal columns
        assert torch.allclose(w2.T @ w2, 2 * torch.eye(4), atol=1e-5)
    assert float(experts.b1.detach().abs().sum()) == 0.0


def _first_routing(policy, tasks: int) -> dict[str, list[list[float]]]:
    """Every MoE layer's combine weights for one observation of each task (``x = 0.3``; SAC's
    critics get a zero action after it), after checking the layer's router is a top-1
    straight-through ``topk`` router."""
    import torch

    from rewardlab.moe.routers import TopKRouter
    from rewardlab.moe.toy import observation

    obs = torch.as_tensor(np.stack([observation(0.3, t, tasks) for t in range(tasks)]))
    out = {}
    for name, layer in moe_layers(policy).items():
        assert isinstance(layer.router, TopKRouter) and layer.router.straight_through, name
        d_in = layer.experts.w1.shape[1]
        inputs = torch.cat([obs, torch.zeros(tasks, d_in - obs.shape[1])], 1)
        with torch.no_grad():
            layer(inputs)
        assert layer.last is not None
        out[name] = layer.last.weights.tolist()
    return out


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_straight_through_and_spread_tasks_from_the_config_survive_save_and_resume(
    algo: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``moe.straight_through`` and ``moe.spread_tasks`` as ``rewardlab train`` builds the
    policy (:func:`rewardlab.training.build_model`, 4 tasks, 3 experts): every router is a
    straight-through top-1 ``topk`` router and task ``t``'s first routing picks expert
    ``t mod 3`` with weight exactly 1. After some training, the checkpoint that resume loads
    routes the same (regression: the flag was set on the built policy and a reload lost it,
    weighing the chosen expert by its gate probability again)."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rewardlab import trust
    from rewardlab.checkpoints import save_model
    from rewardlab.config import AlgoConfig, MoEConfig, TrainConfig
    from rewardlab.moe.toy import OppositeTasks
    from rewardlab.training import build_model

    monkeypatch.setenv(trust.KEY_ENV, str(tmp_path / "trust.key"))
    venv = DummyVecEnv([lambda: OppositeTasks(scales=(1.0,) * 4)] * 2)
    venv.task_count = 4  # type: ignore[attr-defined]  # as MultiTaskVecEnv says it
    moe = MoEConfig(router="topk", experts=3, k=1, hidden=4, route_on="task",
                    straight_through=True, spread_tasks=True)  # fmt: skip
    kwargs = ({"n_steps": 32, "batch_size": 32, "n_epochs": 1} if algo == "ppo"
              else {"learning_starts": 16, "batch_size": 16, "buffer_size": 1000})  # fmt: skip
    algo_cfg = AlgoConfig(name=algo, policy="moe", normalize_obs=False, normalize_reward=False,
                          kwargs={**kwargs, "policy_kwargs": {"net_arch": [4]}})  # fmt: skip
    train = TrainConfig(device="cpu")
    model, start = build_model(algo_cfg, train, venv, tmp_path, moe=moe)
    assert start.steps == 0
    spread = [[1.0 if e == t % 3 else 0.0 for e in range(3)] for t in range(4)]
    first = _first_routing(model.policy, 4)
    assert set(first) == ({"pi", "vf"} if algo == "ppo" else {"actor", "qf0", "qf1"})
    assert all(weights == spread for weights in first.values()), first
    model.learn(64)
    trained = _first_routing(model.policy, 4)
    save_model(model, tmp_path / "checkpoints" / f"model_{model.num_timesteps}_steps.zip")
    resumed, info = build_model(algo_cfg, train, venv, tmp_path, moe=moe)
    assert info.steps == model.num_timesteps > 0
    assert resumed.policy.moe == moe
    after = _first_routing(resumed.policy, 4)
    assert after == trained
    assert all(w in (0.0, 1.0) for rows in after.values() for row in rows for w in row), after


def test_moe_options_are_validated_and_listed_in_the_hydra_defaults() -> None:
    """``moe.straight_through`` needs ``topk`` with ``k=1`` and ``moe.spread_tasks`` needs
    ``route_on=task`` (a ``ConfigError``, one line: the CLI's exit 2, also in
    ``tests/test_cli_validation.py``); the command line of the README composes; every
    ``MoEConfig`` field is listed in ``conf/moe/default.yaml`` with the schema's default."""
    from dataclasses import fields

    from omegaconf import OmegaConf

    from rewardlab.cli import compose
    from rewardlab.config import ConfigError, MoEConfig, to_schema
    from rewardlab.paths import data_dir

    bad = [
        ({"straight_through": True}, "needs moe.router=topk and moe.k=1, got moe.router=topk and moe.k=2"),
        ({"straight_through": True, "router": "sigmoid", "k": 1}, "got moe.router=sigmoid"),
        ({"spread_tasks": True, "k": 1}, "moe.spread_tasks starts task t on expert t mod E: it needs moe.route_on=task"),
    ]  # fmt: skip
    for moe, message in bad:
        with pytest.raises(ConfigError, match=message):
            to_schema({"task": {}, "moe": moe})
    cfg = to_schema(compose(["task=multi/hopper", "algo.policy=moe", "moe.router=topk", "moe.k=1",
                             "moe.route_on=task", "moe.straight_through=true",
                             "moe.spread_tasks=true"]))  # fmt: skip
    assert cfg.moe.straight_through and cfg.moe.spread_tasks and cfg.moe.k == 1
    defaults = OmegaConf.to_container(OmegaConf.load(data_dir("conf") / "moe" / "default.yaml"))
    assert isinstance(defaults, dict)
    schema = MoEConfig().to_dict()
    assert list(defaults) == [f.name for f in fields(MoEConfig)]
    assert defaults == schema
