"""Continuous-control shaping (rewardlab.shaping.continuous / teacher / adaptive / meta):
potential-based terms telescope and vanish at termination, teachers' values come from their
own critics, adaptive weights follow the outcome signal and are logged (and relabel SAC's
buffer), the meta update climbs its objective with an exact policy kernel, and every kind
trains with PPO and SAC through ``train`` and the CLI."""

from __future__ import annotations

import subprocess
import sys
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from guards import HANG_S

from rewardlab.config import AlgoConfig, ShapingConfig, TrainConfig
from rewardlab.rundir import read_csv
from rewardlab.shaping.adaptive import (
    AdaptiveCallback,
    AdaptiveState,
    EpisodeStats,
    ReweightedReward,
    reward_components,
    update_weights,
)
from rewardlab.shaping.continuous import make_shaper
from rewardlab.shaping.meta import IntrinsicReward, meta_loss, policy_kernel
from rewardlab.shaping.teacher import (
    PotentialShaping,
    TeacherPotential,
    resolve_teacher,
    sniff_algo,
)
from rewardlab.tasks import get_task
from rewardlab.training import train

SOURCE = (
    "def compute_dense_reward(self, action):\n"
    "    fwd = self.hopper.top.velocity_x\n"
    "    return fwd + 1.0, {'forward': fwd, 'alive': 1.0}\n"
)
PPO = AlgoConfig(name="ppo", kwargs={"n_steps": 128, "batch_size": 64, "n_epochs": 2})
SAC = AlgoConfig(
    name="sac",
    normalize_reward=False,
    kwargs={"learning_starts": 64, "buffer_size": 1000, "batch_size": 32},
)


def tiny(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(total_timesteps=512, n_envs=2, eval_freq=512, eval_episodes=1, checkpoint_freq=10**9,
                progress_bar=False, video_episodes=0, stop_at_success=0.0)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


# ------------------------------------------------------------------ potential-based shaping


class Walk(gym.Env):
    """1-D walk: obs = position, +-1 per step, reward 1; terminates at |x| >= 3 (20-step limit)."""

    observation_space = gym.spaces.Box(-10, 10, (1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(
        self, *, seed: int | None = None, options: Any = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.x = 0.0
        return np.array([self.x], dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.x += 1.0 if action == 1 else -1.0
        return np.array([self.x], dtype=np.float32), 1.0, abs(self.x) >= 3, False, {}


def potential(obs: np.ndarray) -> np.ndarray:
    return 1.0 + obs[:, 0] ** 2  # non-zero everywhere, also in the terminal states


@pytest.mark.parametrize("gamma", [0.9, 1.0])
def test_potential_terms_telescope_and_vanish_at_termination(gamma: float) -> None:
    env = PotentialShaping(gym.wrappers.TimeLimit(Walk(), max_episode_steps=20), potential, gamma)
    rng = np.random.default_rng(0)
    endings = set()
    for episode in range(40):
        obs, _ = env.reset(seed=episode)
        phi0, discounted, t = float(potential(obs[None])[0]), 0.0, 0
        while True:
            # mostly alternate (long episodes that hit the time limit), sometimes walk straight
            action = int(rng.random() < 0.5) if episode % 2 else t % 2
            obs, reward, terminated, truncated, info = env.step(action)
            assert reward == pytest.approx(1.0 + info["reward/shaping"])
            discounted += gamma**t * info["reward/shaping"]
            t += 1
            if terminated or truncated:
                break
        phi_end = (
            0.0 if terminated else float(potential(obs[None])[0])
        )  # Phi(s_T) = 0 only if terminal
        assert discounted == pytest.approx(gamma**t * phi_end - phi0, abs=1e-9)
        if terminated:
            assert info["reward/shaping"] == pytest.approx(
                -float(potential(np.array([[obs[0] - np.sign(obs[0])]]))[0])
            )
        endings.add("terminated" if terminated else "truncated")
    assert endings == {"terminated", "truncated"}


# ------------------------------------------------------------------ teachers


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny PPO teacher stored as ``<run>/rewards/v0`` (with checkpoints) and a SAC one,
    both trained on the env's own (expert) reward."""
    root = tmp_path_factory.mktemp("teachers")
    task = get_task("mujoco/hopper_forward")
    ppo_dir, sac_dir = root / "run" / "rewards" / "v0", root / "sac"
    train(task, None, PPO, tiny(checkpoint_freq=256, eval_freq=10**9), ppo_dir)
    train(task, None, SAC, tiny(total_timesteps=128, eval_freq=10**9), sac_dir)
    return {"ppo": ppo_dir, "sac": sac_dir, "run": root / "run"}


def test_teacher_values_come_from_the_teachers_critic(teachers: dict[str, Path]) -> None:
    from stable_baselines3 import SAC as SB3SAC

    obs = np.random.default_rng(0).normal(size=(5, 11)).astype(np.float32)
    for algo in ("ppo", "sac"):
        phi = TeacherPotential.load(teachers[algo], scale=2.0, reward_units=True)
        assert sniff_algo(teachers[algo] / "model.zip") == algo
        assert phi.normalizer is not None
        x = torch.as_tensor(phi.normalizer.normalize_obs(obs))
        with torch.no_grad():
            if algo == "ppo":
                policy: Any = phi.model.policy
                expected = policy.predict_values(x).flatten().numpy()
            else:
                assert isinstance(phi.model, SB3SAC)
                q1, q2 = phi.model.critic(x, phi.model.actor(x, deterministic=True))
                expected = torch.minimum(q1, q2).flatten().numpy()
        unit = (
            np.sqrt(phi.normalizer.ret_rms.var + phi.normalizer.epsilon) if algo == "ppo" else 1.0
        )  # SAC: no reward normalisation
        assert phi.value_unit == pytest.approx(unit)
        np.testing.assert_allclose(phi(obs), 2.0 * unit * expected, rtol=1e-5, atol=1e-6)
        raw = TeacherPotential.load(teachers[algo])  # default: the critic's raw output
        np.testing.assert_allclose(raw(obs), expected, rtol=1e-5, atol=1e-6)


def test_teacher_paths_resolve(teachers: dict[str, Path]) -> None:
    v0 = teachers["ppo"]
    assert resolve_teacher(teachers["run"]) == (v0 / "model.zip", v0 / "vecnormalize.pkl")
    assert resolve_teacher(v0 / "model.zip") == (v0 / "model.zip", v0 / "vecnormalize.pkl")
    ckpt = sorted((v0 / "checkpoints").glob("model_*_steps.zip"))[0]
    model_zip, stats = resolve_teacher(ckpt)
    assert (
        model_zip == ckpt
        and stats is not None
        and stats.name == ckpt.name.replace("model_", "model_vecnormalize_").replace(".zip", ".pkl")
    )
    with pytest.raises(FileNotFoundError):
        resolve_teacher(teachers["run"].parent)


# ------------------------------------------------------------------ adaptive re-weighting


def test_adaptive_weights_follow_the_outcome_signal() -> None:
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(20):
        progress = float(rng.random())
        sums = {
            "good": 10 * progress + rng.normal(0, 0.5),
            "bad": -5 * progress + rng.normal(0, 0.5),
            "const": 100.0,
        }
        episodes.append(EpisodeStats(sums, progress, success=progress > 0.9))
    weights = {"good": 1.0, "bad": 1.0, "const": 1.0}
    for _ in range(3):
        weights, corr = update_weights(
            weights, episodes, step_size=0.5, threshold=0.1, min_weight=0.1, max_weight=3.0
        )
    assert corr["good"] > 0.8 and corr["bad"] < -0.8 and corr["const"] == 0.0
    assert (
        weights["good"] > 2.0
        and weights["const"] == pytest.approx(np.exp(-0.15))
        and weights["bad"] < 0.5
    )
    for _ in range(20):
        weights, _ = update_weights(
            weights, episodes, step_size=0.5, threshold=0.1, min_weight=0.1, max_weight=3.0
        )
    assert weights["good"] == 3.0 and weights["bad"] == 0.1  # clipped to [min, max]
    flat = [EpisodeStats({"good": float(i)}, 0.5, False) for i in range(5)]
    assert update_weights(
        {"good": 2.0}, flat, step_size=0.5, threshold=0.1, min_weight=0.1, max_weight=3.0
    ) == ({"good": 2.0}, {})


class Components(gym.Env):
    """Reward 3 = 1 (a) + 2 (b) + ... as a reward program would report them."""

    observation_space = gym.spaces.Box(-1, 1, (1,), dtype=np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), dtype=np.float32)

    def __init__(self, components: dict[str, float]) -> None:
        self.components = components

    def reset(
        self, *, seed: int | None = None, options: Any = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        info = {
            "reward/env": 7.0,
            "reward_forward": 7.0,
            **{f"reward/{k}": v for k, v in self.components.items()},
        }
        return np.zeros(1, dtype=np.float32), 3.5, False, True, {**info, "task/progress": 0.5}


def test_reweighting_recombines_components_and_passes_through_without_them() -> None:
    state = AdaptiveState(weights={"a": 2.0, "b": 0.5})
    env = ReweightedReward(Components({"a": 1.0, "b": 2.0}), state, from_program=True)
    env.reset()
    _, reward, *_, info = env.step(np.zeros(1))
    assert reward == pytest.approx(3.5 + 1.0 * 1.0 - 0.5 * 2.0)  # remainder 0.5 kept with weight 1
    assert info["shaping/components"] == {"a": 1.0, "b": 2.0} and info[
        "shaping/residual"
    ] == pytest.approx(0.5)
    assert state.episodes[-1].sums == {"a": 1.0, "b": 2.0} and state.episodes[-1].progress == 0.5
    bare = ReweightedReward(Components({}), AdaptiveState(weights={"a": 2.0}), from_program=True)
    bare.reset()
    assert bare.step(np.zeros(1))[1] == 3.5  # a program without components: unchanged
    assert reward_components(
        {"reward_forward": 1.0, "reward_ctrl": -0.1, "reward/env": 0.9}, from_program=False
    ) == {"forward": 1.0, "ctrl": -0.1}


def test_adaptive_callback_relabels_an_off_policy_buffer_and_resumes(tmp_path: Path) -> None:
    buffer = SimpleNamespace(
        buffer_size=4, n_envs=2, pos=0, full=False, rewards=np.zeros((4, 2), dtype=np.float32)
    )
    state = AdaptiveState(weights={"a": 1.0, "b": 1.0}, episodes=deque(maxlen=8))
    cb = AdaptiveCallback(state, ShapingConfig(update_every=1, min_episodes=2), tmp_path)
    cb.model = SimpleNamespace(replay_buffer=buffer)  # type: ignore[assignment]
    for t in range(3):
        infos = [
            {"shaping/components": {"a": float(t), "b": 1.0}, "shaping/residual": 0.5}
            for _ in range(2)
        ]
        cb.locals = {"infos": infos}
        cb._on_step()
        buffer.rewards[buffer.pos] = 0.5 + t + 1.0  # what SB3 stores: the reward at weights 1
        buffer.pos += 1
    state.weights.update({"a": 2.0, "b": 0.0})
    cb.relabel()
    np.testing.assert_allclose(buffer.rewards[:3, 0], [0.5, 2.5, 4.5])
    assert buffer.rewards[3, 0] == 0.0  # not yet filled: untouched

    (tmp_path / "shaping.csv").write_text("timesteps,episodes,weight/a,weight/b\n100,4,1.5,0.25\n")
    resumed = AdaptiveState()
    AdaptiveCallback(resumed, ShapingConfig(), tmp_path)
    assert resumed.weights == {"a": 1.5, "b": 0.25}


# ------------------------------------------------------------------ meta-gradient


def test_policy_kernel_equals_per_sample_gradient_dot_products() -> None:
    torch.manual_seed(0)
    policy = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    log_std = torch.nn.Parameter(torch.zeros(2))
    params = [*policy.parameters(), log_std]
    obs, actions, adv = torch.randn(16, 3), torch.randn(16, 2), torch.randn(16)

    def log_prob(o: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Normal(policy(o), log_std.exp()).log_prob(a).sum(-1)

    k = policy_kernel(log_prob(obs, actions), adv, params)
    per_sample = [
        torch.autograd.grad(log_prob(obs[i : i + 1], actions[i : i + 1]).sum(), params)
        for i in range(16)
    ]
    flat = torch.stack([torch.cat([g.flatten() for g in gs]) for gs in per_sample])
    g = (flat * adv[:, None]).mean(0)
    torch.testing.assert_close(k, flat @ g, rtol=1e-4, atol=1e-5)


def test_meta_update_reduces_its_loss_and_rewards_what_helps_the_task() -> None:
    """Synthetic bandit: the task return is higher for larger actions. With a Gaussian policy
    the exact kernel k_t favours samples with large actions; minimising the meta loss makes
    r_phi(s, a) increase with a, and the loss goes down."""
    torch.manual_seed(0)
    mean = torch.nn.Parameter(torch.zeros(1))
    obs, actions = torch.randn(256, 2), torch.randn(256, 1)
    adv = actions[:, 0] - actions[:, 0].mean()
    log_prob = torch.distributions.Normal(mean, 1.0).log_prob(actions).sum(-1)
    k = policy_kernel(log_prob, adv, [mean])
    assert torch.corrcoef(torch.stack([k, actions[:, 0]]))[0, 1] > 0.99
    net = IntrinsicReward(obs_dim=2, act_dim=1, hidden=16, scale=0.5)
    x = torch.cat([obs, actions], dim=1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = meta_loss(net, x, k, l2=1.0)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert (
        losses[0] == pytest.approx(0.0, abs=1e-6)
        and losses[-1] < -0.1
        and losses[-1] < min(losses[:10])
    )
    with torch.no_grad():
        plus = net(torch.cat([obs, torch.ones(256, 1)], dim=1)).mean()
        minus = net(torch.cat([obs, -torch.ones(256, 1)], dim=1)).mean()
    assert plus > minus + 0.1


# ------------------------------------------------------------------ training with each kind


@pytest.mark.parametrize(
    ("kind", "algo", "source"),
    [
        ("teacher", PPO, SOURCE), ("teacher", SAC, None),
        ("adaptive", PPO, SOURCE), ("adaptive", SAC, None),
        ("meta", PPO, None), ("meta", SAC, SOURCE),
    ],
    ids=["teacher-ppo-generated", "teacher-sac-expert", "adaptive-ppo-generated", "adaptive-sac-expert",
         "meta-ppo-expert", "meta-sac-generated"],
)  # fmt: skip
def test_each_kind_trains_with_ppo_and_sac(
    kind: str, algo: AlgoConfig, source: str | None, teachers: dict[str, Path], tmp_path: Path
) -> None:
    steps = 512 if algo.name == "ppo" else 256  # SAC: a gradient step per env step
    shaping = ShapingConfig(
        kind=kind, teacher=str(teachers[algo.name]), update_every=steps // 2, min_episodes=2
    )
    result = train(
        get_task("mujoco/hopper_forward"),
        source,
        algo,
        tiny(total_timesteps=steps, eval_freq=steps),
        tmp_path,
        shaping=shaping,
    )
    assert result.timesteps >= steps and result.reward_errors == {}
    assert [int(r["timesteps"]) for r in read_csv(tmp_path / "metrics.csv")] == [steps]
    # TensorBoard rows: SB3 dumps PPO's every rollout but SAC's only every 4th episode, so
    # the shaping updates are checked in shaping.csv (every update) and, for PPO, there too.
    logged = {k for row in read_csv(tmp_path / "tb" / "progress.csv") for k, v in row.items() if v}
    rows = read_csv(tmp_path / "shaping.csv") if kind != "teacher" else []
    if kind == "teacher":
        assert "reward/shaping" in logged
    elif kind == "adaptive":
        names = {"forward", "alive"} if source else {"forward", "ctrl", "survive"}
        assert rows and {f"weight/{n}" for n in names} <= set(rows[-1])
        assert any(float(rows[-1][f"weight/{n}"]) != 1.0 for n in names)
        assert algo.name == "sac" or {f"shaping/weight/{n}" for n in names} <= logged
    else:
        assert {"reward/intrinsic", "reward/novelty"} <= logged and (
            tmp_path / "shaping_meta.pt"
        ).exists()
        assert rows and {"meta_loss", "critic_loss", "intrinsic_mean"} <= set(rows[-1])
        assert algo.name == "sac" or {"shaping/meta_loss", "shaping/critic_loss"} <= logged


def test_unknown_kind_and_missing_teacher_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown shaping.kind"):
        make_shaper(ShapingConfig(kind="magic"), PPO, tiny(), tmp_path)
    with pytest.raises(ValueError, match="needs shaping.teacher"):
        make_shaper(ShapingConfig(kind="teacher"), PPO, tiny(), tmp_path)


def test_cli_train_with_a_teacher(teachers: dict[str, Path], tmp_path: Path) -> None:
    args = [
        "train", "task=mujoco/hopper_forward", "reward_file=env", "shaping.kind=teacher",
        f"shaping.teacher={teachers['ppo']}", f"runs_dir={tmp_path / 'runs'}", "train.total_timesteps=512",
        "train.n_envs=2", "train.eval_freq=512", "train.eval_episodes=1", "train.video_episodes=0",
        "train.progress_bar=false", "train.checkpoint_freq=100000", "algo.kwargs.n_steps=128", "algo.kwargs.n_epochs=2",
    ]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "rewardlab.cli", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (vdir,) = (tmp_path / "runs").rglob("rewards/v0")
    assert any(r.get("reward/shaping") for r in read_csv(vdir / "tb" / "progress.csv"))
    saved = (vdir.parents[1] / "config.yaml").read_text()
    assert "kind: teacher" in saved and str(teachers["ppo"]) in saved
