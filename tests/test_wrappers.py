"""Reward programs inside the env: components in info, failures counted, never a crash."""

from __future__ import annotations

import math

import pytest

from rewardlab.tasks import get_task
from rewardlab.wrappers import RewardFailure, compile_for_task, make_env

TASK = get_task("mujoco/hopper_forward")


def test_components_and_env_reward_in_info() -> None:
    src = (
        "def compute_dense_reward(self, action):\n"
        "    fwd = 2.0 * self.hopper.top.velocity_x\n"
        "    return fwd + 1.0, {'forward': fwd, 'alive': 1.0}\n"
    )
    env = make_env(TASK, compile_for_task(src, TASK))
    env.reset(seed=0)
    _, reward, *_, info = env.step(env.action_space.sample())
    assert reward == pytest.approx(info["reward/forward"] + info["reward/alive"])
    assert info["reward/forward"] == pytest.approx(2.0 * env.unwrapped.data.qvel[0])  # type: ignore[attr-defined]
    assert "reward/env" in info and math.isfinite(info["reward/env"])
    env.close()


def test_occasional_failures_give_zero_and_are_recorded() -> None:
    src = (
        "def compute_dense_reward(self, action):\n"
        "    if self.hopper.top.velocity_x > 0.05:\n"
        "        return float('nan')\n"
        "    return 1.0\n"
    )
    env = make_env(TASK, compile_for_task(src, TASK), max_error_rate=1.0)
    env.reset(seed=0)
    rewards = []
    for _ in range(200):
        _, r, term, trunc, info = env.step(env.action_space.sample())
        rewards.append(r)
        if "reward/error" in info:
            assert r == 0.0
        if term or trunc:
            env.reset()
    wrapper = env
    while not hasattr(wrapper, "errors"):
        wrapper = wrapper.env  # type: ignore[attr-defined]
    assert wrapper.errors, "the NaN was recorded"  # type: ignore[attr-defined]
    (finding,) = wrapper.errors.values()  # type: ignore[attr-defined]
    assert finding.stage == "output" and "not finite" in finding.message
    env.close()


def test_frequent_failures_stop_with_the_reason() -> None:
    src = (
        "def compute_dense_reward(self, action):\n    x = 1.0\n    return x / (self.dt - self.dt)\n"
    )
    env = make_env(TASK, compile_for_task(src, TASK), max_error_rate=0.05)
    env.reset(seed=0)
    with pytest.raises(RewardFailure, match=r"line 3: ZeroDivisionError"):
        for _ in range(500):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                env.reset()
    env.close()
