"""Batched reward evaluation: equality with per-world calls, lifting, detection and fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rewardlab.generators.base import GenerationRequest, extract_code
from rewardlab.generators.offline import OfflineGenerator
from rewardlab.reward import RewardProgram
from rewardlab.rollout import CoreConfig, RolloutCore
from rewardlab.rollout.lift import lift_source
from rewardlab.tasks import get_task, list_tasks
from rewardlab.wrappers import ProgramReward, RewardFailure, compile_for_task, make_env

N = 6


def offline_source(task) -> str:
    reply = OfflineGenerator().propose(
        GenerationRequest(task=task, instruction=task.instruction, messages=[])
    )
    source = extract_code(reply.text)
    assert source is not None
    return source


def run_against_per_world(task, source, steps=30, mode="auto", seed=0):
    """Step a core with ``source``; after every step, compare with a per-world evaluation of
    the original program on the same states (ProgramReward's own path)."""
    core = RolloutCore(task, CoreConfig(num_worlds=N, seed=seed, reward_mode=mode), program=source)
    core.reset()
    program = compile_for_task(source, task)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        action = rng.uniform(-1, 1, (N, core.spec.nu)).astype(np.float32)
        out = core.step(action)
        # finished worlds are already reset: compare on the worlds that go on
        for i in np.flatnonzero(~out.done):
            want, comps = program(
                core.worlds[i], action[i], out.final_obs[i] if program.takes_obs else None
            )
            assert out.reward[i] == pytest.approx(want, rel=1e-6, abs=1e-9)
            for name, value in comps.items():
                assert out.components[name][i] == pytest.approx(value, rel=1e-6, abs=1e-9)
    return core


SUPPORTED = [t.name for t in list_tasks() if t.benchmark == "mujoco" and "humanoid" not in t.card]


@pytest.mark.parametrize("name", SUPPORTED)
def test_offline_programs_batch_by_lifting_and_match_per_world(name):
    """Every offline-synthesized program (min/max, conditionals, math.cos, float(np.dot))
    runs batched after lifting, with the same values as the per-world program."""
    task = get_task(name)
    core = run_against_per_world(task, offline_source(task), steps=15)
    report = core.reward_report
    assert report is not None and report.mode == "lifted", report.summary()
    assert "batched" in report.reasons  # as written it cannot run over arrays
    assert report.fallback_steps == 0


NUMPY_PROGRAM = """
import numpy as np
def compute_dense_reward(self, action):
    vx = self.hopper.top.velocity_x
    upright = np.cos(self.hopper.top_joint.angle)
    effort = np.square(action[0]) + np.square(action[1]) + np.square(action[2])
    speed = np.clip(vx, -1.0, 3.0)
    return speed + 0.5 * upright - 0.001 * effort, {"speed": speed, "upright": upright}
"""

BRANCHING_PROGRAM = """
def compute_dense_reward(self, action):
    vx = self.hopper.top.velocity_x
    if vx > 0:
        return vx
    return 0.1 * vx
"""

REDUCING_PROGRAM = """
import numpy as np
def compute_dense_reward(self, action):
    return self.hopper.top.velocity_x - 0.01 * np.sum(np.square(action))
"""

OBS_PROGRAM = """
def compute_dense_reward(self, action, obs):
    return obs[5] - 0.1 * abs(obs[1]) + 0.0 * action[0]
"""


def test_array_style_program_runs_batched_as_written():
    core = run_against_per_world(get_task("mujoco/hopper_forward"), NUMPY_PROGRAM)
    assert core.reward_report.mode == "batched"
    assert core.reward_report.reasons == {}


def test_branching_program_is_detected_and_falls_back_to_per_world():
    core = run_against_per_world(get_task("mujoco/hopper_forward"), BRANCHING_PROGRAM)
    report = core.reward_report
    assert report.mode == "per_world"
    assert "truth value of an array" in report.reasons["batched"]
    assert "line 4" in report.reasons["batched"]
    assert report.reasons["lifted"] == "nothing to lift"
    assert "per_world" in report.summary()


def test_program_reducing_over_the_batch_is_caught_by_the_check():
    """np.sum without an axis silently sums all worlds' actions: the per-world comparison
    rejects it as written, and the lifted version (axis=0) is used instead."""
    core = run_against_per_world(get_task("mujoco/hopper_forward"), REDUCING_PROGRAM)
    report = core.reward_report
    assert "differs from per-world" in report.reasons["batched"]
    assert report.mode == "lifted"
    assert "numpy.sum -> axis=0" in report.lift_changes


def test_programs_reading_obs_get_batch_last_obs():
    core = run_against_per_world(get_task("mujoco/hopper_forward"), OBS_PROGRAM)
    assert core.reward_report.mode == "batched"


def test_forced_modes():
    task = get_task("mujoco/hopper_forward")
    assert (
        run_against_per_world(task, NUMPY_PROGRAM, mode="per_world", steps=3).reward_report.mode
        == "per_world"
    )
    with pytest.raises(ValueError, match="cannot run in mode 'batched'"):
        run_against_per_world(task, BRANCHING_PROGRAM, mode="batched", steps=1)


def test_batched_errors_are_attributed_per_world_like_program_reward():
    """math.log of a negative value: per world a ValueError, batched a NaN; either way the
    same worlds get reward 0 and an error, and too many errors stop training."""
    source = """
import math
def compute_dense_reward(self, action):
    return math.log(self.hopper.top.velocity_x + 0.3)
"""
    task = get_task("mujoco/hopper_forward")
    core = RolloutCore(task, CoreConfig(num_worlds=N, seed=1, max_error_rate=1.0), program=source)
    core.reset()
    env = ProgramReward(make_env(task), task, compile_for_task(source, task), max_error_rate=1.0)
    program = compile_for_task(source, task)
    rng = np.random.default_rng(0)
    errors = 0
    for _ in range(10):
        out = core.step(rng.uniform(-1, 1, (N, 3)).astype(np.float32))
        for i in np.flatnonzero(~out.done):
            try:
                program(core.worlds[i], None)
                assert not out.reward_error[i]
            except Exception:
                assert out.reward_error[i] and out.reward[i] == 0.0
        errors += int(out.reward_error.sum())
    assert errors > 0 and core.reward_report.mode == "lifted"
    assert sum(core.error_counts.values()) == errors
    env.close()
    strict = RolloutCore(
        task, CoreConfig(num_worlds=N, seed=1, max_error_rate=0.0, error_window=10), program=source
    )
    strict.reset()
    with pytest.raises(RewardFailure, match="failed on"):
        for _ in range(10):
            strict.step(rng.uniform(-1, 1, (N, 3)).astype(np.float32))


def test_recheck_switches_to_per_world_on_mismatch():
    core = RolloutCore(
        get_task("mujoco/hopper_forward"),
        CoreConfig(num_worlds=N, verify_every=1),
        program=NUMPY_PROGRAM,
    )
    core.reset()
    core.step(np.zeros((N, 3), dtype=np.float32))
    assert core.reward_report.mode == "batched"
    # a batched program that drifts from the per-world one (as a wrong lift would)
    core.evaluator._active = compile_for_task(
        NUMPY_PROGRAM.replace("return speed +", "return 1.0 + speed +"), core.task
    )
    core.step(np.zeros((N, 3), dtype=np.float32))
    assert core.reward_report.mode == "per_world"
    assert "re-check failed" in core.reward_report.reasons["batched"]


def test_lift_leaves_statement_branches_and_keeps_semantics():
    src, changes = lift_source(BRANCHING_PROGRAM)
    assert changes == [] and src == BRANCHING_PROGRAM
    lifted, changes = lift_source("""
import math
import numpy as np
def compute_dense_reward(self, action):
    a = self.r.a
    ok = 0.0 < a < 2.0 and not a > 1.5
    return (1.0 if ok else -1.0) + max(a, 0.5, -1.0) + np.linalg.norm(action) + action.sum() + math.atan2(a, 1.0)
""")
    assert {
        "chained comparison -> numpy.logical_and",
        "and -> numpy.where",
        "numpy.linalg.norm -> axis=0",
        ".sum() -> axis=0",
        "math.atan2 -> numpy.arctan2",
    } <= set(changes)
    program = RewardProgram.compile(lifted)
    from types import SimpleNamespace as NS

    values = np.array([-1.0, 0.2, 1.0, 1.7, 2.5])
    action = np.arange(10, dtype=np.float64).reshape(2, 5) / 10.0  # (action dim, N)
    batch = program._fn(NS(r=NS(a=values)), action)
    for i, a in enumerate(values):
        ok = 0.0 < a < 2.0 and not a > 1.5
        want = (
            (1.0 if ok else -1.0)
            + max(a, 0.5, -1.0)
            + np.linalg.norm(action[:, i])
            + action[:, i].sum()
            + math.atan2(a, 1.0)
        )
        assert batch[i] == pytest.approx(want)
