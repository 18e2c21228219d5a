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
from rewardlab.rollout.support import supports
from rewardlab.tasks import get_task, list_tasks
from rewardlab.wrappers import make_env

N = 4

# (task, engine, steps, obs tolerance). ``loop`` (the default, ``auto``) is gymnasium's own
# call sequence and must be bit-for-bit; ``rollout`` starts the solver cold each env step
# (~1e-14 per step), which a chaotic contact-rich gait amplifies over a long trajectory, so it
# gets fewer steps.
PARITY = [
    ("mujoco/halfcheetah_forward", "auto", 300, 0.0),  # rollout: O(1) apart after ~120 steps
    ("mujoco/hopper_forward", "loop", 150, 0.0),
    ("mujoco/hopper_forward", "rollout", 60, 1e-8),
    ("mujoco/walker_forward", "loop", 150, 0.0),
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


def test_rollout_engine_drifts_from_gymnasium_on_halfcheetah():
    """Why ``loop`` is the default: the cold-started solver of ``rollout`` drifts measurably
    within 200 steps on HalfCheetah (the loop engine stays bit-for-bit, PARITY above)."""
    task = dataclasses.replace(get_task("mujoco/halfcheetah_forward"), horizon=10**6)
    core = RolloutCore(task, CoreConfig(num_worlds=2, seed=7, engine="rollout"))
    core.reset()
    envs, _ = _gym_envs(task, 7)
    rng = np.random.default_rng(0)
    drift = 0.0
    for _ in range(200):
        action = rng.uniform(-1, 1, (N, core.spec.nu)).astype(np.float32)[:2]
        out = core.step(action)
        for i in range(2):
            drift = max(drift, float(np.abs(out.final_obs[i] - envs[i].step(action[i])[0]).max()))
    assert drift > 1e-6


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
    """The runnable examples in the rollout modules' docstrings (and training.algo_kwargs)."""
    import doctest
    import importlib

    for name in [
        "spec",
        "native",
        "proxies",
        "lift",
        "reward",
        "core",
        "sb3",
        "gym_vector",
        "batch",
        "support",
        "record",
    ]:
        module = importlib.import_module(f"rewardlab.rollout.{name}")
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name
    import rewardlab.training

    finder = doctest.DocTestFinder()
    for test in finder.find(
        rewardlab.training.algo_kwargs, "algo_kwargs", globs=vars(rewardlab.training)
    ):
        assert doctest.DocTestRunner().run(test).failed == 0


def test_supports_says_exactly_which_tasks_the_core_runs():
    """``supports`` (the config-time check) agrees with what the core builds, for every task."""
    for task in list_tasks():
        assert supports(task, "dummy") is None
        reason = supports(task, "native")
        if task.benchmark != "mujoco":
            assert reason is not None and "use train.backend=dummy" in reason
            continue
        if reason is None:
            core = RolloutCore(task, CoreConfig(num_worlds=2))
            core.reset()
            core.step(np.zeros((2, core.spec.nu)))
        else:
            assert "use train.backend=dummy" in reason
            with pytest.raises(NotImplementedError):
                RolloutCore(task, CoreConfig(num_worlds=2))
    ant, cheetah = get_task("mujoco/ant_forward"), get_task("mujoco/halfcheetah_forward")
    assert "contact forces" in (supports(ant, "mjx") or "")
    assert supports(cheetah, "mjx") in (
        None,
        "train.backend=mjx needs JAX and MJX: pip install mujoco-mjx==3.3.0 jax==0.5.3 jaxlib==0.5.3",
    )
    assert "expected one of dummy, native, mjx" in (supports(cheetah, "nope") or "")
    assert "needs train.backend=dummy" in (supports(cheetah, "native", shaping="adaptive") or "")
