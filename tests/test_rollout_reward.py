"""Batched reward evaluation: equality with per-world calls, lifting, detection and fallback.

The failure cases of issue 14 (a ``try`` around ``math.sqrt``, reductions over worlds,
errors in the branch not taken) are checked against gymnasium envs evaluating the program
per world: same states (the bit-for-bit ``loop`` engine), same rewards, same failures.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from rewardlab.generators.base import GenerationRequest, extract_code
from rewardlab.generators.offline import OfflineGenerator
from rewardlab.reward import RewardProgram
from rewardlab.rollout import CoreConfig, RolloutCore
from rewardlab.rollout.batch import BatchValue
from rewardlab.rollout.lift import lift_source
from rewardlab.rollout.reward import TRY_REASON
from rewardlab.rollout.sb3 import CoreVecEnv
from rewardlab.rollout.support import supports
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


SUPPORTED = [t.name for t in list_tasks() if supports(t, "native") is None]


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
    assert "truth value of a per-world value" in report.reasons["batched"]
    assert "line 4" in report.reasons["batched"]
    assert report.reasons["lifted"] == "nothing to lift"
    assert "per_world" in report.summary()


def test_reductions_apply_per_world_when_batched():
    """np.sum without an axis sums one world's action, never all worlds': as written."""
    core = run_against_per_world(get_task("mujoco/hopper_forward"), REDUCING_PROGRAM)
    report = core.reward_report
    assert report.mode == "batched" and report.reasons == {}


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
    v = np.array([a, 2.0 * a, 1.0])
    return (1.0 if ok else -1.0) + max(a, 0.5, -1.0) + np.linalg.norm(action) + action.sum() + math.atan2(a, 1.0) + float(v @ v)
""")
    assert {
        "chained comparison -> numpy.logical_and",
        "and -> numpy.where",
        "math.atan2 -> numpy.arctan2",
        "numpy.array([...]) -> numpy.stack",
        "float() -> numpy.positive(dtype=float64)",
    } <= set(changes)
    program = RewardProgram.compile(lifted)
    from types import SimpleNamespace as NS

    values = np.array([-1.0, 0.2, 1.0, 1.7, 2.5])
    action = np.arange(10, dtype=np.float32).reshape(5, 2) / 10.0  # (N, action dim)
    batch = program.entry(NS(r=NS(a=BatchValue(values, weak=True))), BatchValue(action)).values()
    for i, a in enumerate(values.tolist()):  # Python floats, as the per-world proxies give
        ok = 0.0 < a < 2.0 and not a > 1.5
        v = np.array([a, 2.0 * a, 1.0])
        want = (
            (1.0 if ok else -1.0)
            + max(a, 0.5, -1.0)
            + np.linalg.norm(action[i])
            + action[i].sum()
            + math.atan2(a, 1.0)
            + float(v @ v)
        )
        assert batch[i] == pytest.approx(want, rel=1e-12)


# --------------------------------------------------------------------------- issue 14 cases


def against_gymnasium(name, source, *, n=8, steps=200, seed=3, mode="auto"):
    """The core (bit-for-bit ``loop`` engine) and gymnasium envs with ProgramReward, same
    seeds and actions: every world-step's reward, failure flag and components must agree.
    Returns the core, the number of failed world-steps and the post-step observations
    ``(steps, n, obs_dim)`` the rewards were computed on."""
    task = get_task(name)
    config = CoreConfig(num_worlds=n, engine="loop", reward_mode=mode, max_error_rate=1.0)
    core = RolloutCore(task, config, program=source)
    ours = CoreVecEnv(core)
    ref = DummyVecEnv([
        lambda: make_env(task, compile_for_task(source, task), max_error_rate=1.0) for _ in range(n)
    ])  # fmt: skip
    ours.seed(seed)
    ref.seed(seed)
    np.testing.assert_array_equal(ours.reset(), ref.reset())
    rng = np.random.default_rng(seed)
    failures = 0
    seen = []
    for t in range(steps):
        action = rng.uniform(-1, 1, (n, core.spec.nu)).astype(np.float32)
        obs, rew, done, infos = ours.step(action)
        seen.append(ours.last.final_obs.copy())
        r_obs, r_rew, r_done, r_infos = ref.step(action)
        np.testing.assert_array_equal(obs, r_obs)
        np.testing.assert_array_equal(done, r_done)
        np.testing.assert_allclose(rew, r_rew, rtol=1e-6, atol=1e-6, err_msg=f"step {t}")
        for i, (got, want) in enumerate(zip(infos, r_infos, strict=True)):
            assert ("reward/error" in got) == ("reward/error" in want), (t, i)
            failures += "reward/error" in want
            for key, value in want.items():
                if key.startswith("reward/") and key != "reward/error":
                    assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-6), (t, i, key)
    return core, failures, np.array(seen)


TRY_SQRT = """
import math
def compute_dense_reward(self, action):
    z = self.hopper.top.position_z
    try:
        height = math.sqrt(z - 1.2)
    except ValueError:
        height = -1.0
    return height + 0.1 * self.hopper.top.velocity_x
"""


def test_try_except_runs_per_world_with_the_same_rewards_and_no_failures():
    """Issue 14 (1): lifted to np.sqrt this gave NaN rows counted as failures; a program with
    try is never batched, so the except clause does its job in every world."""
    core, failures, _ = against_gymnasium("mujoco/hopper_forward", TRY_SQRT)
    report = core.reward_report
    assert failures == 0 and sum(core.error_counts.values()) == 0
    assert report.mode == "per_world" and report.reasons["lifted"] == TRY_REASON
    with pytest.raises(ValueError, match="try/except"):
        against_gymnasium("mujoco/hopper_forward", TRY_SQRT, steps=1, mode="lifted")


BRANCH_NOT_TAKEN = """
import math
def compute_dense_reward(self, action):
    z = self.hopper.top.position_z
    height = math.sqrt(z - 1.2) if z > 1.2 else -1.0
    return height + 0.1 * self.hopper.top.velocity_x
"""

SQRT_FAILS = """
import math
def compute_dense_reward(self, action):
    return math.sqrt(self.hopper.top.position_z - 1.2) + max(self.hopper.top.velocity_x, 0.0)
"""


def test_errors_in_a_branch_not_taken_and_failing_rows_match_per_world():
    """Lifted, both branches run for every world: math.sqrt of a negative height in the
    branch not taken raises a floating-point error, and that step is evaluated per world
    (same rewards, no spurious failure). Without the branch, the worlds whose sqrt fails are
    re-evaluated per world: the same worlds fail, with the per-world finding."""
    core, failures, _ = against_gymnasium("mujoco/hopper_forward", BRANCH_NOT_TAKEN)
    report = core.reward_report
    assert failures == 0 and report.lift_changes
    assert report.fallback_steps > 0
    assert any("FloatingPointError" in r for r in report.fallback_reasons)
    # once most batched steps fall back, per world is cheaper: the core says so and switches
    assert report.mode == "lifted" or "given up" in report.reasons["lifted"]
    core, failures, _ = against_gymnasium("mujoco/hopper_forward", SQRT_FAILS)
    assert failures > 0 and sum(core.error_counts.values()) == failures
    assert all("ValueError: math domain error" in k for k in core.error_counts)


ANY_LOW = """
import numpy as np
def compute_dense_reward(self, action):
    z = self.hopper.top.position_z
    reward = self.hopper.top.velocity_x
    if np.any(z < 1.2):
        reward -= 1.0
    return reward
"""

REDUCTIONS = """
import numpy as np
def compute_dense_reward(self, action):
    z = self.hopper.top.position_z
    low = 1.0 * np.any(z < 1.2) + np.all(z > 1.2) + np.sum(z) - np.mean(z) + np.max(z)
    parts = [z, self.hopper.top.velocity_x, action[0]]
    return low + 0.1 * len(action) + np.sum(np.abs(action)) + sum(parts) + np.linalg.norm(action), {"low": low}
"""

INDEXING = """
def compute_dense_reward(self, action):
    z = self.hopper.top.position_z
    return z[0] + action[0]
"""


@pytest.mark.parametrize("source", [ANY_LOW, REDUCTIONS])
def test_reductions_never_mix_worlds(source):
    """Issue 14 (2): one low hopper used to penalise every world. Reductions are per world
    (or the program runs per world): the rewards are gymnasium's, at N=8 with falls."""
    core, _, seen = against_gymnasium("mujoco/hopper_forward", source)
    low = seen[:, :, 0] < 1.2  # hopper obs[0] is the torso height
    assert (low.any(axis=1) & ~low.all(axis=1)).sum() >= 5  # steps where only some worlds are low
    report = core.reward_report
    if source is ANY_LOW:
        assert report.mode == "per_world"
        assert "truth value of a per-world value" in report.reasons["batched"]
    else:
        assert report.mode == "batched" and report.fallback_steps == 0
        assert report.verifications == report.batched_calls > 0  # every step re-checked


def test_indexing_a_per_world_scalar_is_refused():
    """z[0] of a float fails per world; batched it would read world 0 for everyone."""
    core, failures, _ = against_gymnasium("mujoco/hopper_forward", INDEXING, steps=5)
    assert core.reward_report.mode in ("undecided", "per_world") and failures == 5 * 8


PER_WORLD_EXPRESSIONS = [
    "z * a[0]", "z - 0.01 * a[0] ** 2", "np.sum(np.square(a))", "a @ a", "np.dot(a, a) * z",
    "np.linalg.norm(q)", "np.linalg.norm(q[:2])", "np.clip(z, -0.5, 0.5)", "np.where(z > 0, z, 0.1 * z)",
    "np.any(z < 1.0)", "np.all(a > 0)", "np.mean(a)", "sum(a)", "len(a) * z", "np.array([1.0, 2.0, 3.0]) @ a",
    "np.max(np.abs(a))", "(z > 0) + (z > 0.5)", "np.exp(-z ** 2) + np.cos(z)", "abs(z) * 2", "a.T[1]",
    "a.mean()", "a.sum() + a.max() - a.min()", "q[-1] * q[0]", "np.hstack([a, np.ones(2)]).sum()", "round(z)",
    "-z // 0.3 + z % 0.3", "np.linalg.norm(a - np.array([0.1, 0.2, 0.3]))", "np.stack([z, 2.0 * z]).sum()",
    "np.concatenate([a, q]).std()", "np.argmax(q)", "a.reshape(3, 1)[2, 0]", "np.cross(a, np.array([0.0, 0.0, 1.0]))",
    "[x * 2 for x in a][1]", "np.diff(q)", "np.median(q)", "np.count_nonzero(a > 0)", "np.interp(z, [0.0, 1.0], [1.0, 0.0])",
]  # fmt: skip


@pytest.mark.parametrize("expr", PER_WORLD_EXPRESSIONS)
def test_batch_values_compute_each_worlds_value(expr):
    """Every operation on batch values gives, per world, what it gives on that world's value
    (Python float leaves, a float32 action, a float64 quaternion), dtype included."""
    rng = np.random.default_rng(0)
    n = 7
    z, a, q = (
        rng.normal(size=n),
        rng.normal(size=(n, 3)).astype(np.float32),
        rng.normal(size=(n, 4)),
    )
    fn = eval(f"lambda z, a, q: {expr}", {"np": np})  # noqa: S307 - test expressions above
    got = np.asarray(fn(BatchValue(z, weak=True), BatchValue(a), BatchValue(q)).values())
    for i in range(n):
        want = np.asarray(fn(float(z[i]), a[i], q[i]))
        assert got[i].dtype == want.dtype, (expr, got.dtype, want.dtype)
        np.testing.assert_allclose(got[i], want, rtol=1e-6, atol=1e-7, err_msg=expr)


@pytest.mark.parametrize(
    "expr",
    ["bool(z > 0)", "float(z)", "math.cos(z)", "len(z)", "np.array([z, z])", "max(a)", "{z: 1}", "int(z)",
     "f'{z}'", "a[np.argmax(a)]", "z.item()", "np.sort(a)"],
)  # fmt: skip
def test_batch_values_refuse_what_needs_one_worlds_value(expr):
    from rewardlab.rollout.batch import NotBatchable

    z, a = BatchValue(np.array([0.5, 1.5]), weak=True), BatchValue(np.ones((2, 3)))
    with pytest.raises((NotBatchable, TypeError)):
        eval(expr, {"np": np, "math": math, "z": z, "a": a})  # noqa: S307 - test expressions above
