"""The native rollout core against gymnasium: parity, auto-reset, proxies, success metrics."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

from rewardlab.rollout import CoreConfig, RolloutCore
from rewardlab.rollout.native import NativeBackend, rollout_step
from rewardlab.rollout.proxies import build_batch_proxy, build_world_proxies
from rewardlab.rollout.spec import spec_for
from rewardlab.rollout.success import make_batch_metric
from rewardlab.tasks import get_task
from rewardlab.tasks.success import make_metric
from rewardlab.wrappers import make_env

N = 4

# (task, engine, steps, obs tolerance). ``loop`` is gymnasium's own call sequence and must be
# bit-for-bit; ``rollout`` starts the solver cold each env step (~1e-14 per step), which a
# chaotic contact-rich gait amplifies over a long trajectory, so it gets fewer steps.
PARITY = [
    ("mujoco/hopper_forward", "loop", 150, 0.0),
    ("mujoco/hopper_forward", "rollout", 60, 1e-8),
    ("mujoco/walker_forward", "rollout", 60, 1e-8),
    ("mujoco/halfcheetah_forward", "loop", 120, 0.0),
    ("mujoco/halfcheetah_forward", "rollout", 40, 1e-8),
    ("mujoco/ant_forward", "loop", 60, 0.0),
    ("mujoco/hopper_backflip", "rollout", 40, 1e-8),  # terminate_when_unhealthy=False
]


def _gym_envs(task, seed):
    envs = [make_env(task) for _ in range(N)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    return envs, obs


@pytest.mark.parametrize(("name", "engine", "steps", "tol"), PARITY)
def test_trajectories_match_gymnasium(name, engine, steps, tol):
    """Same seeds, same actions: same initial states, observations, env rewards,
    terminations, truncations, success, and auto-reset observations."""
    task = get_task(name)
    if name == "mujoco/hopper_forward":
        task = dataclasses.replace(task, horizon=45)  # exercise time-limit truncation too
    core = RolloutCore(task, CoreConfig(num_worlds=N, seed=7, engine=engine))
    obs = core.reset()
    envs, gym_obs = _gym_envs(task, 7)
    np.testing.assert_array_equal(obs, gym_obs)
    rng = np.random.default_rng(0)
    ends = 0
    for t in range(steps):
        action = rng.uniform(-1, 1, (N, core.spec.nu)).astype(np.float32)
        out = core.step(action)
        for i, env in enumerate(envs):
            o, r, term, trunc, info = env.step(action[i])
            assert (term, trunc) == (out.terminated[i], out.truncated[i]), (t, i)
            np.testing.assert_allclose(out.final_obs[i], o, rtol=0, atol=tol)
            assert out.env_reward[i] == pytest.approx(r, abs=max(tol, 1e-12) * 100)
            assert info["success"] == out.success[i]
            assert info["task/progress"] == pytest.approx(out.progress[i], abs=1e-9)
            if term or trunc:
                ends += 1
                np.testing.assert_allclose(out.obs[i], env.reset()[0], rtol=0, atol=tol)
            else:
                np.testing.assert_array_equal(out.obs[i], out.final_obs[i])
    if name == "mujoco/hopper_forward":
        assert ends >= N  # every world hit the 45-step limit or fell at least once


def test_one_step_from_the_same_state_matches_gymnasium():
    """From arbitrary (not initial) states: one env step agrees to 1e-10 for both engines."""
    for env_id, engine in [
        ("Hopper-v5", "rollout"),
        ("Walker2d-v5", "rollout"),
        ("HalfCheetah-v5", "loop"),
        ("Ant-v5", "loop"),
    ]:
        task = next(
            t
            for t in (
                get_task(n)
                for n in [
                    "mujoco/hopper_forward",
                    "mujoco/walker_forward",
                    "mujoco/halfcheetah_forward",
                    "mujoco/ant_forward",
                ]
            )
            if t.resolved_env_id() == env_id
        )
        env = make_env(task).unwrapped
        env.reset(seed=3)
        spec = spec_for(env_id)
        sim = NativeBackend(spec, 1, engine=engine)
        rng = np.random.default_rng(1)
        for _ in range(20):
            env.step(rng.uniform(-1, 1, spec.nu))  # walk to a non-initial state
            qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
            sim.set_worlds(np.array([0]), qpos[None], qvel[None])
            env.set_state(qpos, qvel)
            a = rng.uniform(-1, 1, spec.nu)
            env.step(a)
            sim.step(a[None])
            np.testing.assert_allclose(sim.qpos[0], env.data.qpos, rtol=0, atol=1e-10)
            np.testing.assert_allclose(sim.qvel[0], env.data.qvel, rtol=0, atol=1e-10)


def test_rollout_step_is_pure():
    spec = spec_for("HalfCheetah-v5")
    s0 = np.zeros((2, 1 + spec.nq + spec.nv))
    s0[:, 1 : 1 + spec.nq] = spec.init_qpos
    ctrl = np.array([[0.5] * 6, [-0.5] * 6])
    s1 = rollout_step(spec.model, s0, ctrl, spec.frame_skip)
    again = rollout_step(spec.model, s0, ctrl, spec.frame_skip)
    assert s0[:, 0].tolist() == [0.0, 0.0]
    np.testing.assert_array_equal(s1, again)
    assert not np.allclose(s1[0], s1[1])


def test_initial_state_distribution_matches_gymnasium():
    """Same per-world seeds -> the very same noisy initial states, also on later resets."""
    task = get_task("mujoco/ant_lie_down")
    core = RolloutCore(task, CoreConfig(num_worlds=3, seed=100))
    envs, gym_obs = _gym_envs(dataclasses.replace(task), 100)
    np.testing.assert_array_equal(core.reset()[:3], gym_obs[:3])
    core._reset_worlds(np.array([True, False, True]))
    np.testing.assert_array_equal(core.obs[0], envs[0].reset()[0])
    np.testing.assert_array_equal(core.obs[2], envs[2].reset()[0])
    assert core.reset(seed=5).shape == (3, 105)


def test_step_requires_reset_and_right_shape():
    core = RolloutCore(get_task("mujoco/hopper_forward"), CoreConfig(num_worlds=2))
    with pytest.raises(RuntimeError, match="reset"):
        core.step(np.zeros((2, 3)))
    core.reset()
    with pytest.raises(ValueError, match="shape"):
        core.step(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="cfrc_ext"):
        NativeBackend(spec_for("Ant-v5"), 2, engine="rollout")


def test_batched_proxies_equal_scalar_proxies():
    """Every card attribute, batched (N,) vs the per-world scalar proxy, on random states."""
    rng = np.random.default_rng(0)
    for card_ref, env_id in [("mujoco/hopper", "Hopper-v5"), ("mujoco/ant", "Ant-v5")]:
        spec = spec_for(env_id)
        qpos = np.tile(spec.init_qpos, (5, 1)) + rng.normal(0, 0.5, (5, spec.nq))
        if env_id == "Ant-v5":
            quat = rng.normal(size=(5, 4))
            qpos[:, 3:7] = quat / np.linalg.norm(quat, axis=1, keepdims=True)
        src = SimpleNamespace(qpos=qpos, qvel=rng.normal(0, 2, (5, spec.nv)))
        from rewardlab.tasks.cards import load_card

        card = load_card(card_ref)
        batch = build_batch_proxy(card, spec.model, src, spec.dt)
        worlds = build_world_proxies(card, spec.model, src, spec.dt)
        robot = getattr(batch, card.robot)
        for part in robot.fields():
            for field in getattr(robot, part).fields():
                values = getattr(getattr(robot, part), field)
                for i, me in enumerate(worlds):
                    want = getattr(getattr(getattr(me, card.robot), part), field)
                    got = values[..., i]
                    np.testing.assert_allclose(
                        got, want, rtol=1e-12, atol=1e-12, err_msg=f"{part}.{field}"
                    )
        with pytest.raises(AttributeError, match="the card defines"):
            _ = robot.nonexistent
        # values are copies: writing them does not touch the state
        leaf = getattr(robot, robot.fields()[0]).position_x
        leaf[:] = 123.0
        assert not np.any(src.qpos == 123.0)


def _random_walk_me(rng, n, steps):
    """Batched and per-world fake proxies over random walks that cross metric thresholds."""
    paths = ["r.x", "r.z", "r.pitch", "r.up", "r.leg"]
    scales = {"r.x": 0.3, "r.z": 0.25, "r.pitch": 0.9, "r.up": 0.3, "r.leg": 0.5}
    series = {p: np.cumsum(rng.normal(0, scales[p], (steps, n)), axis=0) for p in paths}
    series["r.z"] += 1.2
    series["r.up"] = np.clip(series["r.up"] + 0.8, -1, 1)
    series["r.pitch"][:, : n // 2] *= 4.0  # some worlds spin: flips
    return series


@pytest.mark.parametrize(
    ("metric", "params"),
    [
        (
            "displacement",
            {
                "position": "r.x",
                "distance": 1.0,
                "upright": "r.pitch",
                "max_tilt": 2.5,
                "height": "r.z",
                "min_height": 0.2,
            },
        ),
        ("displacement", {"position": "r.x", "distance": -1.0, "up": "r.up", "min_up": -0.5}),
        (
            "flip",
            {
                "angle": "r.pitch",
                "direction": -1,
                "height": "r.z",
                "min_height": 0.5,
                "hold_steps": 2,
                "tolerance": 1.5,
            },
        ),
        (
            "flip",
            {
                "angle": "r.pitch",
                "direction": 1,
                "height": "r.z",
                "min_height": 0.5,
                "hold_steps": 2,
                "tolerance": 1.5,
            },
        ),
        (
            "jump",
            {
                "height": "r.z",
                "min_height": 1.4,
                "position": "r.x",
                "max_drift": 1.5,
                "upright": "r.pitch",
                "max_tilt": 3.0,
                "jumps": 2,
            },
        ),
        (
            "hold_height",
            {"height": "r.z", "max_height": 1.0, "up": "r.up", "min_up": 0.3, "hold_steps": 3},
        ),
        ("hold_height", {"height": "r.z", "min_height": 1.3, "hold_steps": 2}),
        (
            "oscillate",
            {"angle": "r.leg", "amplitude": 0.6, "swings": 3, "up": "r.up", "min_up": 0.2},
        ),
    ],
)
def test_batched_metrics_equal_scalar_trackers(metric, params):
    rng = np.random.default_rng(hash(metric) % 2**32)
    n, steps = 64, 80
    series = _random_walk_me(rng, n, steps)

    def batch_me(t):
        return SimpleNamespace(r=SimpleNamespace(**{p[2:]: series[p][t] for p in series}))

    def world_me(t, i):
        return SimpleNamespace(r=SimpleNamespace(**{p[2:]: float(series[p][t, i]) for p in series}))

    batched = make_batch_metric(metric, params, n)
    scalar = [make_metric(metric, params) for _ in range(n)]
    batched.reset(batch_me(0), np.ones(n, dtype=bool))
    for i, m in enumerate(scalar):
        m.reset(world_me(0, i))
    successes = 0
    for t in range(1, steps):
        if t == steps // 2:  # auto-reset half of the worlds mid-way
            mask = np.arange(n) % 2 == 0
            batched.reset(batch_me(t), mask)
            for i in np.flatnonzero(mask):
                scalar[i].reset(world_me(t, i))
        batched.update(batch_me(t))
        for i, m in enumerate(scalar):
            m.update(world_me(t, i))
        assert batched.success.tolist() == [bool(m.success) for m in scalar], t
        np.testing.assert_allclose(
            batched.progress, [m.progress for m in scalar], rtol=0, atol=1e-12
        )
        successes += int(batched.success.sum())
    assert successes > 0  # the walks do exercise the success branches


def test_unknown_metric_falls_back_to_per_world_trackers():
    from rewardlab.rollout.success import PerWorldMetric
    from rewardlab.tasks import success as success_module

    success_module.METRICS["always"] = lambda: SimpleNamespace(
        reset=lambda me: None, update=lambda me: None, success=True, progress=1.0
    )
    try:
        m = make_batch_metric("always", {}, 2, worlds=[object(), object()])
        assert isinstance(m, PerWorldMetric)
        m.reset(None, np.array([True, True]))
        m.update(None)
        assert m.success.tolist() == [True, True]
    finally:
        del success_module.METRICS["always"]


def test_proxy_state_and_timings():
    core = RolloutCore(get_task("mujoco/walker_forward"), CoreConfig(num_worlds=3))
    core.reset()
    core.step(np.zeros((3, 6)))
    state = core.proxy_state()
    assert state["self.walker.top.position_z"].shape == (3,)
    assert state["self.walker.top_joint.angle"].shape == (3,)
    shares = core.timings.table()
    assert math.isclose(sum(shares.values()), 1.0, rel_tol=1e-6)


def test_docstring_examples_run():
    """The runnable examples in the rollout modules' docstrings."""
    import doctest
    import importlib

    for name in [
        "spec",
        "native",
        "proxies",
        "success",
        "lift",
        "reward",
        "core",
        "sb3",
        "gym_vector",
    ]:
        module = importlib.import_module(f"rewardlab.rollout.{name}")
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name
