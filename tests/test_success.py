"""Success metrics that mean the behaviour: scripted cheats fail, honest motions pass.

Trajectories are built in the real MuJoCo models, either **physically** (a state is set and the
simulator runs with zero actions) or **kinematically** (joint positions set step by step; the
metrics read only simulator state, so a kinematic trajectory is judged exactly as a policy
that produced it would be). No trained policy is used: the honest motions here are scripted
stand-ins, said so in each test.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from types import SimpleNamespace

import numpy as np
import pytest

from rewardlab.tasks import get_task
from rewardlab.tasks.proxies import find_wrapper
from rewardlab.tasks.registry import TaskSpec
from rewardlab.tasks.success import (
    TOUCH,
    GroundGeometry,
    SuccessInputs,
    describe_success,
    make_metric,
    success_choices,
)
from rewardlab.wrappers import TaskSuccess, make_env

ROOT_Z = {
    "mujoco/hopper": 1,
    "mujoco/halfcheetah": 1,
    "mujoco/walker2d": 1,
    "mujoco/ant": 2,
    "mujoco/humanoid_standup": 2,
}


class Judge:
    """A task's env with its success metric, driven by states set from outside."""

    def __init__(self, task: TaskSpec | str) -> None:
        self.task = get_task(task) if isinstance(task, str) else task
        self.env = make_env(self.task)
        self.env.reset(seed=0)
        self.base = self.env.unwrapped
        self.wrapper = find_wrapper(self.env, TaskSuccess, "make_env")
        self.ground = GroundGeometry(self.base.model)  # type: ignore[attr-defined]
        self.nv = self.base.model.nv  # type: ignore[attr-defined]

    def grounded(self, qpos: np.ndarray, lowest: float = -0.001) -> np.ndarray:
        """``qpos`` moved vertically so that its lowest geom is ``lowest`` above the floor."""
        q = np.array(qpos, dtype=np.float64)
        q[ROOT_Z[self.task.card]] += lowest - self.ground.clearance(q[None])[0].min()
        return q

    def kinematic(self, poses: Iterable[np.ndarray]) -> tuple[bool, float]:
        """Judge a sequence of joint positions (set one per step, zero velocity); the episode
        starts at the first."""
        poses = list(poses)
        self.base.set_state(np.asarray(poses[0], dtype=np.float64), np.zeros(self.nv))  # type: ignore[attr-defined]
        self.wrapper.metric.reset(self.wrapper.inputs, np.ones(1, dtype=bool))
        for qpos in poses:
            self.base.set_state(np.asarray(qpos, dtype=np.float64), np.zeros(self.nv))  # type: ignore[attr-defined]
            self.wrapper.metric.update(self.wrapper.inputs)
        return bool(self.wrapper.metric.success[0]), float(self.wrapper.metric.progress[0])

    def physical(self, qpos: np.ndarray, qvel: np.ndarray, steps: int) -> tuple[bool, np.ndarray]:
        """Start from ``(qpos, qvel)``, run ``steps`` zero-action steps through the wrapper;
        ``(success, joint positions over time)``."""
        self.env.reset(seed=0)
        self.base.set_state(qpos, qvel)  # type: ignore[attr-defined]
        self.wrapper.metric.reset(self.wrapper.inputs, np.ones(1, dtype=bool))
        trace, info = [], {"success": False}
        for _ in range(steps):
            _, _, terminated, truncated, info = self.env.step(np.zeros(self.env.action_space.shape))
            trace.append(self.base.data.qpos.copy())  # type: ignore[attr-defined]
            if terminated or truncated:
                break
        return bool(info["success"]), np.array(trace)

    def close(self) -> None:
        self.env.close()


def _linspace(a: np.ndarray, b: np.ndarray, steps: int) -> list[np.ndarray]:
    return [a + (b - a) * t for t in np.linspace(0.0, 1.0, steps)]


# --------------------------------------------------------------------------- flips


def _old_flip_criterion(pitch: np.ndarray, height: np.ndarray, direction: int) -> bool:
    """What the flip metric asked before: cumulative pitch of a full turn, then 10 steps
    upright and high (no word about the ground)."""
    turned = np.maximum.accumulate((pitch - pitch[0]) * direction) >= 2 * math.pi
    ok = turned & (np.abs((pitch + math.pi) % (2 * math.pi) - math.pi) < 0.6) & (height >= 0.9)
    run = 0
    for flag in ok:
        run = run + 1 if flag else 0
        if run >= 10:
            return True
    return False


@pytest.mark.parametrize("direction", [-1, 1])
def test_a_roll_over_the_ground_is_not_a_flip(direction: int) -> None:
    """The cheat of the refinement demo (kinematic): the hopper rolls a full turn with its body
    on the floor, then stands up. The old criterion accepted it; the metric does not."""
    judge = Judge("mujoco/hopper_backflip" if direction < 0 else "mujoco/hopper_frontflip")
    stand = judge.grounded(judge.base.init_qpos)  # type: ignore[attr-defined]
    poses = [stand] * 5
    for angle in np.linspace(0.0, 2 * math.pi * direction, 80):
        q = stand.copy()
        q[2] = angle
        poses.append(judge.grounded(q))  # rolling: always touching the floor somewhere
    end = stand.copy()
    end[2] = 2 * math.pi * direction
    poses += [end] * 20
    trace = np.array(poses)
    assert _old_flip_criterion(trace[:, 2], trace[:, 1], direction), (
        "the old metric accepted this roll"
    )
    touching = [judge.ground.clearance(q[None])[0][:3].min() < TOUCH for q in poses[5:85]]
    assert sum(touching) > 30, (
        "the body (not only the foot) is on the ground through much of the roll"
    )
    success, progress = judge.kinematic(poses)
    assert not success and progress < 0.5
    judge.close()


@pytest.mark.parametrize("direction", [-1, 1])
def test_an_airborne_flip_with_a_landing_passes(direction: int) -> None:
    """Honest flip (kinematic stand-in, no trained policy reaches it): take off, a full turn
    in the air on a ballistic arc, land on the foot and stand."""
    judge = Judge("mujoco/hopper_backflip" if direction < 0 else "mujoco/hopper_frontflip")
    stand = judge.grounded(judge.base.init_qpos)  # type: ignore[attr-defined]
    flight = 60
    poses = [stand] * 5
    for k in range(flight + 1):
        t = k / flight
        q = stand.copy()
        q[1] += 4.0 * 1.2 * t * (1 - t)  # peak 1.2 m above standing
        q[2] = 2 * math.pi * direction * t
        poses.append(q)
    air = [judge.ground.clearance(q[None])[0][:3].min() for q in poses[6:-1]]
    assert min(air) > TOUCH, "nothing but the foot touches during the turn"
    land = stand.copy()
    land[2] = 2 * math.pi * direction
    success, _ = judge.kinematic([*poses, *[land] * 5])
    assert not success, "5 steps on the foot are not yet a landing (hold_steps=10)"
    success, progress = judge.kinematic([*poses, *[land] * 12])
    assert success and progress == 1.0
    # the same flight ending on the back (a crash, not a landing) fails
    crash = judge.grounded(np.array([*land[:2], land[2] + 3.0 * direction, *land[3:]]))
    assert judge.ground.clearance(crash[None])[0][:3].min() < TOUCH, "head first"
    assert not judge.kinematic([*poses, *[crash] * 5, *[land] * 12])[0]
    # a back flip is not a front flip
    other = Judge("mujoco/hopper_frontflip" if direction < 0 else "mujoco/hopper_backflip")
    assert not other.kinematic([*poses, *[land] * 12])[0]
    judge.close()
    other.close()


def test_a_physical_ground_roll_fails_the_back_flip() -> None:
    """Physical cheat: the hopper is thrown onto its back spinning backwards and rolls."""
    judge = Judge("mujoco/hopper_backflip")
    qpos = judge.base.init_qpos.copy()  # type: ignore[attr-defined]
    qpos[2] = -1.2
    qpos = judge.grounded(qpos, 0.02)
    qvel = np.zeros(judge.nv)
    qvel[0], qvel[2] = -2.0, -14.0
    success, trace = judge.physical(qpos, qvel, 300)
    assert trace[:, 2].min() - qpos[2] < -math.pi, "it did roll over"
    assert not success
    judge.close()


# --------------------------------------------------------------------------- locomotion


def test_a_dive_that_lands_beyond_the_distance_is_not_forward_motion() -> None:
    """Physical cheat: thrown forward, the hopper covers more than the task's 3 m and lands on
    the ground (termination off so the episode goes on after the fall)."""
    task = get_task("mujoco/hopper_forward")
    task = dataclasses.replace(
        task, env_kwargs={**task.env_kwargs, "terminate_when_unhealthy": False}
    )
    judge = Judge(task)
    qvel = np.zeros(judge.nv)
    qvel[0], qvel[1], qvel[2] = 6.0, 4.0, 1.0
    success, trace = judge.physical(judge.base.init_qpos.copy(), qvel, 300)  # type: ignore[attr-defined]
    assert trace[-1, 0] > 3.0, "the dive covers the distance"
    assert not success
    judge.close()


def test_sliding_on_the_body_is_not_running() -> None:
    """Kinematic cheats the old limits allowed: the half cheetah scoots 21 m nose-down with its
    head on the ground (tilt 0.9 < 1.2), the ant slides 6 m on its belly (right side up)."""
    judge = Judge("mujoco/halfcheetah_forward")
    q = judge.base.init_qpos.copy()  # type: ignore[attr-defined]
    q[2], q[6], q[7], q[8] = 0.8, 0.7, 0.87, 0.5  # nose down, front leg folded back
    q = judge.grounded(q)
    cols = judge.ground.columns(["head", "torso"])
    assert judge.ground.clearance(q[None])[0][cols].min() < TOUCH, "the head is on the ground"
    poses = [np.array([x, *q[1:]]) for x in np.linspace(0.0, 21.0, 200)]
    assert not judge.kinematic(poses)[0]
    upright = judge.grounded(judge.base.init_qpos)  # type: ignore[attr-defined]
    assert judge.kinematic([np.array([x, *upright[1:]]) for x in np.linspace(0.0, 21.0, 200)])[0], (
        "the same glide on the feet passes (a kinematic stand-in for running)"
    )
    judge.close()

    ant = Judge("mujoco/ant_forward")
    q = ant.base.init_qpos.copy()  # type: ignore[attr-defined]
    q[8], q[10], q[12], q[14] = 0.0, 0.0, 0.0, 0.0  # legs straight out: the belly touches
    q = ant.grounded(q)
    assert ant.ground.clearance(q[None])[0][ant.ground.columns(["torso_geom"])].min() < TOUCH
    assert not ant.kinematic([np.array([x, *q[1:]]) for x in np.linspace(0.0, 6.0, 100)])[0]
    ant.close()


def test_honest_forward_and_backward_motion_pass() -> None:
    """Kinematic stand-ins for a gait: upright on the feet over the distance passes, in the
    asked direction only."""
    for name, distance in [
        ("mujoco/hopper_forward", 3.5),
        ("mujoco/hopper_backward", -3.5),
        ("mujoco/walker_forward", 3.5),
    ]:
        judge = Judge(name)
        stand = judge.grounded(judge.base.init_qpos)  # type: ignore[attr-defined]
        poses = [np.array([x, *stand[1:]]) for x in np.linspace(0.0, distance, 100)]
        assert judge.kinematic(poses)[0], name
        assert not judge.kinematic([np.array([-p[0], *p[1:]]) for p in poses])[0], name
        judge.close()


# --------------------------------------------------------------------------- jumps


def test_jumps_need_the_body_off_the_ground() -> None:
    """Honest jumps (physical: the standing hopper launched upward twice) pass; stretching up
    on the toe as high as the foot allows, twice, does not."""
    judge = Judge("mujoco/hopper_jump")
    stand = judge.grounded(judge.base.init_qpos)  # type: ignore[attr-defined]
    qvel = np.zeros(judge.nv)
    qvel[1] = 3.0
    judge.env.reset(seed=0)
    judge.base.set_state(stand, qvel)  # type: ignore[attr-defined]
    judge.wrapper.metric.reset(judge.wrapper.inputs, np.ones(1, dtype=bool))
    info: dict = {}
    for launch in range(2):
        for _ in range(120):
            _, _, _, _, info = judge.env.step(np.zeros(3))
        if launch == 0:  # landed: launch again from where it stands
            judge.base.set_state(judge.base.data.qpos.copy(), qvel)  # type: ignore[attr-defined]
    assert info["success"], "two launched jumps (physical)"

    tiptoe = stand.copy()
    tiptoe[5] = -0.785  # foot joint at its limit: on the toe
    tiptoe = judge.grounded(tiptoe)
    assert tiptoe[1] > stand[1] + 0.1, "the stretch raises the torso"
    assert not judge.kinematic([stand, tiptoe, stand, tiptoe, stand, tiptoe])[0]
    judge.close()


# --------------------------------------------------------------------------- stand up / lie down


def test_a_lying_humanoid_does_not_stand_and_a_standing_one_does() -> None:
    judge = Judge("mujoco/humanoid_standup")
    lying = judge.base.init_qpos.copy()  # type: ignore[attr-defined]
    success, _ = judge.physical(lying, np.zeros(judge.nv), 200)
    assert not success, "lying on the ground (physical, zero actions)"

    standing_pose = lying.copy()
    standing_pose[3:7] = [
        math.cos(math.pi / 4),
        0.0,
        math.sin(math.pi / 4),
        0.0,
    ]  # the model lies along x
    stand = judge.grounded(standing_pose)
    assert judge.wrapper.me.humanoid.torso.up_z < 0.1  # type: ignore[attr-defined]
    assert judge.kinematic([stand] * 25)[0], "standing on the feet (kinematic stand-in)"
    kneel = standing_pose.copy()
    kneel[13] = kneel[17] = -2.0  # kneeling upright: the shins on the floor (torso ~0.81 m)
    kneel = judge.grounded(kneel)
    cols = judge.ground.columns(["right_shin1", "left_shin1"])
    assert judge.ground.clearance(kneel[None])[0][cols].min() < TOUCH, "kneeling on the shins"
    assert not judge.kinematic([kneel] * 25)[0]
    judge.close()


def test_lying_down_means_right_side_up_on_the_ground() -> None:
    judge = Judge("mujoco/ant_lie_down")
    q = judge.base.init_qpos.copy()  # type: ignore[attr-defined]
    q[8], q[10], q[12], q[14] = 0.0, 0.0, 0.0, 0.0  # legs flat
    flat = judge.grounded(q)
    assert judge.kinematic([flat] * 25)[0], "lying flat (kinematic stand-in)"
    upside = flat.copy()
    upside[3:7] = [0.0, 1.0, 0.0, 0.0]  # rolled over onto its back
    assert not judge.kinematic([judge.grounded(upside)] * 25)[0]
    assert not judge.kinematic([_ant_pose(judge, 0.0, lifted=False)] * 25)[0], "standing"
    judge.close()


# --------------------------------------------------------------------------- waving


def _ant_pose(judge: Judge, hip: float, lifted: bool, x: float = 0.0) -> np.ndarray:
    q = judge.base.init_qpos.copy()  # type: ignore[attr-defined]
    q[8], q[12], q[14] = 1.2, -1.2, 1.2  # the other three legs stand, reaching down
    q[10] = -0.52 if lifted else -1.22  # the front right lower leg: raised, or reaching down
    q[9] = hip
    q = judge.grounded(q)
    q[0] = x
    return q


def test_waving_needs_the_leg_in_the_air() -> None:
    judge = Judge("mujoco/ant_wave_leg")
    cols = judge.ground.columns(["right_ankle_geom"])
    hips = 0.45 * np.sin(np.linspace(0.0, 6 * math.pi, 90))  # three full waves of 0.9 rad
    up = [_ant_pose(judge, h, lifted=True) for h in hips]
    assert judge.ground.clearance(up[0][None])[0][cols].min() > 0.05, "the leg is in the air"
    assert judge.kinematic(up)[0], "waving in the air (kinematic stand-in)"
    down = [_ant_pose(judge, h, lifted=False) for h in hips]
    assert judge.ground.clearance(down[0][None])[0][cols].min() < TOUCH
    assert not judge.kinematic(down)[0], "the same hip swings with the foot on the ground (walking)"
    away = [_ant_pose(judge, h, lifted=True, x=3.0 * k / len(hips)) for k, h in enumerate(hips)]
    assert not judge.kinematic(away)[0], "waving while walking away"
    judge.close()


# --------------------------------------------------------------------------- one code for 1 and N worlds


class FakeInputs(SuccessInputs):
    """Inputs over fake proxies with a given clearance per geom (two geoms: foot, body)."""

    def __init__(self, me: object, n: int, clearance: np.ndarray) -> None:
        super().__init__(me, n)
        self._clear = clearance
        self._ground = SimpleNamespace(
            columns=lambda names: np.array([0 if nm == "foot" else 1 for nm in names])
        )  # type: ignore[assignment]

    def clearance(self) -> np.ndarray:
        return self._clear


METRIC_CASES = [
    ("displacement", {"position": "r.x", "distance": 0.8, "upright": "r.pitch", "max_tilt": 2.5,
                      "height": "r.z", "min_height": -1.0, "allowed_contacts": ["foot"]}),
    ("displacement", {"position": "r.x", "distance": -1.0, "up": "r.up", "min_up": -0.5}),
    ("flip", {"angle": "r.pitch", "direction": -1, "height": "r.z", "min_height": 0.5, "hold_steps": 2,
              "tolerance": 1.5, "feet": ["foot"]}),
    ("jump", {"height": "r.z", "min_height": 1.4, "position": "r.x", "max_drift": 1.5, "upright": "r.pitch",
              "max_tilt": 3.0, "jumps": 2, "clearance": 0.0}),
    ("hold_height", {"height": "r.z", "min_height": 1.3, "hold_steps": 2, "allowed_contacts": ["foot"]}),
    ("oscillate", {"angle": "r.leg", "amplitude": 0.6, "swings": 3, "up": "r.up", "min_up": 0.2,
                   "lifted": ["foot"], "lift": -0.3}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("metric", "params"), METRIC_CASES, ids=lambda v: v if isinstance(v, str) else ""
)
def test_n_worlds_equal_n_single_worlds(metric: str, params: dict) -> None:
    """The same metric code over N worlds (the rollout core) and over one world N times (the
    gymnasium wrapper) agrees step for step, including partial resets."""
    rng = np.random.default_rng(abs(hash(metric)) % 2**32)
    n, steps = 32, 80
    paths = {"x": 0.3, "z": 0.25, "pitch": 0.9, "up": 0.3, "leg": 0.5}
    series = {p: np.cumsum(rng.normal(0, s, (steps, n)), axis=0) for p, s in paths.items()}
    series["z"] += 1.2
    series["up"] = np.clip(series["up"] + 0.8, -1, 1)
    series["pitch"][:, : n // 2] *= 4.0
    clear = rng.uniform(-0.2, 0.5, (steps, n, 2))
    clear[:, ::3, 1] += 0.6  # in a third of the worlds the body stays off the ground

    def inputs(t: int, i: int | None = None) -> FakeInputs:
        if i is None:
            return FakeInputs(
                SimpleNamespace(r=SimpleNamespace(**{p: v[t] for p, v in series.items()})),
                n,
                clear[t],
            )
        return FakeInputs(
            SimpleNamespace(r=SimpleNamespace(**{p: float(v[t, i]) for p, v in series.items()})),
            1,
            clear[t, i : i + 1],
        )

    many = make_metric(metric, params, n)
    ones = [make_metric(metric, params, 1) for _ in range(n)]
    many.reset(inputs(0), np.ones(n, dtype=bool))
    for i, m in enumerate(ones):
        m.reset(inputs(0, i), np.ones(1, dtype=bool))
    successes = 0
    for t in range(1, steps):
        if t == steps // 2:
            mask = np.arange(n) % 2 == 0
            many.reset(inputs(t), mask)
            for i in np.flatnonzero(mask):
                ones[i].reset(inputs(t, i), np.ones(1, dtype=bool))
        many.update(inputs(t))
        for i, m in enumerate(ones):
            m.update(inputs(t, i))
        assert many.success.tolist() == [bool(m.success[0]) for m in ones], t
        np.testing.assert_allclose(many.progress, [m.progress[0] for m in ones], rtol=0, atol=0)
        successes += int(many.success.sum())
    assert successes > 0, "the walks exercise the success branches"


def test_core_and_wrapper_use_the_same_metric_code() -> None:
    import rewardlab.rollout.core as core
    import rewardlab.tasks.envs as envs

    assert core.make_metric is envs.make_metric


# --------------------------------------------------------------------------- naming and choices


def test_choices_and_descriptions() -> None:
    hopper = get_task("mujoco/hopper_forward")
    choices = success_choices(hopper)
    assert {"hopper_backward", "backward", "backflip", "jump"} <= set(choices)
    assert float(choices["backward"].params["distance"]) < 0
    assert "ant_forward" not in choices
    assert "backward" in describe_success(choices["backward"])
    assert "in the air" in describe_success(get_task("mujoco/hopper_backflip").success)
    with pytest.raises(KeyError, match="unknown success metric"):
        make_metric("nope", {})
    with pytest.raises(TypeError, match="flip"):
        make_metric("flip", {"angle": "a"})
