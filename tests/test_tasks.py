"""Every registered task builds, steps, passes gymnasium's checker and reports its metric;
proxies read the simulator's true values; cards and proxies agree."""

from __future__ import annotations

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rewardlab.tasks import get_task, list_tasks, load_card, render_card
from rewardlab.tasks.cards import TYPE_DOCS
from rewardlab.tasks.proxies import HingeJoint, Proxy, Slider
from rewardlab.tasks.success import SuccessInputs, make_metric
from rewardlab.wrappers import env_proxy, make_env

# ManiSkill tasks need a Vulkan device and ManiSkill's own checks: tests/test_maniskill.py.
TASKS = [t.name for t in list_tasks() if t.benchmark != "maniskill"]


def test_registry_covers_required_behaviours() -> None:
    required = {
        "mujoco/hopper_forward", "mujoco/hopper_backward", "mujoco/hopper_frontflip",
        "mujoco/hopper_backflip", "mujoco/hopper_jump", "mujoco/ant_forward",
        "mujoco/ant_lie_down", "mujoco/ant_wave_leg", "mujoco/halfcheetah_forward",
        "mujoco/halfcheetah_backward", "mujoco/walker_forward", "mujoco/humanoid_standup",
        "mujoco/humanoid_forward",
    }  # fmt: skip
    assert required <= set(TASKS)


def test_unknown_task_suggests_close_names() -> None:
    with pytest.raises(KeyError, match="hopper_backflip"):
        get_task("mujoco/hopper_backflp")


@pytest.mark.parametrize("name", TASKS)
def test_task_builds_steps_reports_success_and_reads_its_card(name: str) -> None:
    """Every registered task, built once (building a MetaWorld env is most of the cost):
    gymnasium's env checker; the card text lists every proxy attribute and each reads a finite
    value after a reset; a random episode reports success and progress until the horizon ends
    it."""
    task = get_task(name)
    card = task.load_card()
    text = task.card_text()
    env = make_env(task)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert info["success"] is False and info["task/progress"] == 0.0
    robot = getattr(env_proxy(env, task), card.robot)
    for part, spec in card.parts.items():
        assert f"self.{part} : {spec['type']}" in text
        proxy = getattr(robot, part)
        assert set(proxy.fields()) == set(TYPE_DOCS[spec["type"]])
        for field in proxy.fields():
            assert np.all(np.isfinite(getattr(proxy, field)))
    env.action_space.seed(0)
    steps, done = 0, False
    while not done and steps < task.horizon + 1:
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        done = terminated or truncated
        steps += 1
        assert isinstance(info["success"], bool) and 0.0 <= info["task/progress"] <= 1.0
    assert done and steps <= task.horizon, "the horizon ends every episode"
    assert "is_success" in info
    env.close()


def test_one_joint_proxies_read_their_joint_at_every_access() -> None:
    """``Slider`` (no shipped card uses it yet; custom cards may) and ``HingeJoint`` read the
    joint's coordinate and rate live from ``MjData``, not a copy taken when they were built."""
    env = make_env(get_task("mujoco/hopper_forward"))
    env.reset(seed=5)
    model, data = env.unwrapped.model, env.unwrapped.data  # type: ignore[attr-defined]
    cart, hinge = Slider("x", model, data, "rootx"), HingeJoint("pitch", model, data, "rooty")
    assert cart.fields() == ("position", "velocity") and hinge.fields() == (
        "angle",
        "angular_velocity",
    )
    for _ in range(15):
        env.step(env.action_space.sample())
        assert (cart.position, cart.velocity) == (data.qpos[0], data.qvel[0])
        assert (hinge.angle, hinge.angular_velocity) == (data.qpos[2], data.qvel[2])
    assert cart.position != 0.0 and cart.velocity != 0.0
    with pytest.raises(KeyError, match="not in model"):
        Slider("y", model, data, "rooty_typo")
    env.close()


def test_proxies_read_true_simulator_values() -> None:
    env = make_env(get_task("mujoco/hopper_forward"))
    env.reset(seed=3)
    for _ in range(20):
        env.step(env.action_space.sample())
    data = env.unwrapped.data  # type: ignore[attr-defined]
    me = env_proxy(env, get_task("mujoco/hopper_forward"))
    h = me.hopper
    assert h.top.position_x == data.qpos[0] and h.top.position_z == data.qpos[1]
    assert h.top.velocity_x == data.qvel[0] and h.top.velocity_z == data.qvel[1]
    assert h.top_joint.angle == data.qpos[2] and h.top_joint.angular_velocity == data.qvel[2]
    assert (h.thigh_joint.angle, h.leg_joint.angle, h.foot_joint.angle) == tuple(data.qpos[3:6])
    assert me.dt == pytest.approx(0.008)
    env.close()

    ant_task = get_task("mujoco/ant_forward")
    env = make_env(ant_task)
    env.reset(seed=1)
    for _ in range(10):
        env.step(env.action_space.sample())
    data = env.unwrapped.data  # type: ignore[attr-defined]
    ant = env_proxy(env, ant_task).ant
    assert [ant.torso.position_x, ant.torso.position_y, ant.torso.position_z] == list(data.qpos[:3])
    assert [ant.torso.velocity_x, ant.torso.velocity_y, ant.torso.velocity_z] == list(data.qvel[:3])
    # world-frame angular velocity = R(qpos quaternion) @ body-frame angular velocity
    w, x, y, z = data.qpos[3:7] / np.linalg.norm(data.qpos[3:7])
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])  # fmt: skip
    world = rot @ data.qvel[3:6]
    assert [
        ant.torso.angular_velocity_x,
        ant.torso.angular_velocity_y,
        ant.torso.angular_velocity_z,
    ] == pytest.approx(list(world))
    names = ["front_left_leg", "front_left_ankle", "front_right_leg", "front_right_ankle",
             "back_left_leg", "back_left_ankle", "back_right_leg", "back_right_ankle"]  # fmt: skip
    assert [getattr(ant, f"{n}_joint").angle for n in names] == list(data.qpos[7:15])
    w, x, y, _ = data.qpos[3:7]
    assert ant.torso.up_z == pytest.approx(
        1 - 2 * (x * x + y * y) / float(np.sum(data.qpos[3:7] ** 2))
    )
    env.close()


def test_missing_attribute_names_the_path_and_the_alternatives() -> None:
    env = make_env(get_task("mujoco/hopper_forward"))
    me = env_proxy(env, get_task("mujoco/hopper_forward"))
    with pytest.raises(
        AttributeError, match=r"self\.hopper has no attribute 'tpo'.*top, top_joint"
    ):
        _ = me.hopper.tpo
    with pytest.raises(AttributeError, match="read-only"):
        me.hopper.top = 1  # type: ignore[misc]
    env.close()


def test_render_card_matches_text2reward_hopper_names() -> None:
    text = render_card(load_card("mujoco/hopper"), 0.008)
    for name in ("self.hopper : HopperRobot", "self.top : SlideJoint", "self.top_joint : HingeJoint",
                 "self.thigh_joint : HingeJoint", "self.leg_joint : HingeJoint",
                 "self.foot_joint : HingeJoint", "self.position_x", "self.velocity_z",
                 "self.angular_velocity"):  # fmt: skip
        assert name in text


def _inputs(**values: float) -> SuccessInputs:
    """One world of fake proxy values ``r.<name>`` (metrics without ground contact)."""
    return SuccessInputs(SimpleNamespace(r=SimpleNamespace(**values)), 1)


ONE = np.ones(1, dtype=bool)


def test_hold_height_jump_and_oscillate_on_values() -> None:
    """The value logic of the metrics (ground contact: tests/test_success.py)."""
    lie = make_metric(
        "hold_height",
        {"height": "r.z", "max_height": 0.3, "hold_steps": 2, "up": "r.u", "min_up": 0.7},
    )
    lie.reset(_inputs(z=0.7, u=1.0), ONE)
    lie.update(_inputs(z=0.2, u=1.0))
    lie.update(_inputs(z=0.2, u=0.0))  # upside down: the hold restarts
    lie.update(_inputs(z=0.2, u=1.0))
    assert not lie.success[0]
    lie.update(_inputs(z=0.2, u=1.0))
    assert lie.success[0]

    wave = make_metric("oscillate", {"angle": "r.a", "amplitude": 0.5, "swings": 3})
    wave.reset(_inputs(a=0.0), ONE)
    for a in (0.6, 0.0, 0.6, 0.0):
        wave.update(_inputs(a=a))
    assert wave.success[0]
    with pytest.raises(KeyError, match="unknown success metric"):
        make_metric("nope", {})


def test_env_ids_are_gymnasium_mujoco() -> None:
    for t in list_tasks():
        assert t.resolved_env_id() in gym.registry
    assert isinstance(Proxy, type)


def test_displacement_fails_on_a_fall_even_after_the_distance() -> None:
    walk = make_metric("displacement", {"position": "r.x", "distance": 3.0, "upright": "r.a", "max_tilt": 0.2,
                                        "height": "r.z", "min_height": 0.7})  # fmt: skip
    walk.reset(_inputs(x=0.0, a=0.0, z=1.2), ONE)
    walk.update(_inputs(x=3.5, a=0.1, z=1.2))
    assert walk.success[0]
    walk.update(_inputs(x=3.6, a=0.1, z=0.5))  # the lunge ends on the ground
    assert not walk.success[0] and walk.progress[0] == 1.0
    back = make_metric("displacement", {"position": "r.x", "distance": -1.0})
    back.reset(_inputs(x=0.0), ONE)
    back.update(_inputs(x=2.0))
    assert not back.success[0] and back.progress[0] == 0.0
    back.update(_inputs(x=-1.5))
    assert back.success[0]
