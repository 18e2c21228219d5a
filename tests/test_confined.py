"""Generated code runs in confined workers on every path (training on gymnasium envs and on
the rollout core, evaluation, exploration) with the same numbers as in-process evaluation; a
stuck program is killed and replaced by the watchdog and training goes on or stops saying
why; the trusted simulator of an evaluation is out of the program's reach."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize

from rewardlab.config import AlgoConfig, TrainConfig
from rewardlab.evaluation import run_episodes
from rewardlab.generators.offline import offline_reward
from rewardlab.multitask import load_set
from rewardlab.reward import confine
from rewardlab.reward.confine import WallReport, worker_environment
from rewardlab.reward.program import RewardProgram, RewardProgramError, unvetted_program
from rewardlab.tasks import get_task
from rewardlab.training import make_vec_env, record_rollout, train
from rewardlab.workers import confined
from rewardlab.workers.confined import (
    ConfinedCoreVecEnv,
    ConfinedReward,
    ConfinedVecEnv,
    program_env,
)
from rewardlab.wrappers import RewardFailure, compile_for_task, make_env

HOPPER = get_task("mujoco/hopper_forward")

pytestmark = pytest.mark.skipif(confine.confinement_problem() is not None, reason="no OS wall here")

HANGS_ON_EQUAL_ACTIONS = """
def compute_dense_reward(self, action):
    if action[0] == action[1] == action[2] and action[0] > 0.5:
        return float(sum(map(sum, [range(10**6)] * 10**6)))
    return self.hopper.top.velocity_x
"""


def _in_process(
    task: Any, source: str, seed: int, actions: np.ndarray
) -> list[tuple[float, dict[str, float]]]:
    """The program evaluated in this process along ``actions`` from ``reset(seed)``, until the
    episode ends."""
    env = make_env(task, compile_for_task(source, task), max_error_rate=1.0)
    out = []
    try:
        env.reset(seed=seed)
        for a in actions:
            _, r, terminated, truncated, info = env.step(a)
            out.append(
                (
                    float(r),
                    {
                        k: v
                        for k, v in info.items()
                        if k.startswith("reward/") and k != "reward/env"
                    },
                )
            )
            if terminated or truncated:
                break
    finally:
        env.close()
    return out


@pytest.mark.parametrize("task_name", ["mujoco/hopper_forward", "metaworld/drawer_close"])
def test_confined_evaluation_gives_the_in_process_numbers(task_name: str) -> None:
    """The worker's copy replays the trusted env's resets and actions: same rewards and
    components as evaluating the program in this process, and the trusted env's own reward."""
    task = get_task(task_name)
    source = offline_reward(task)
    rng = np.random.default_rng(0)
    env = program_env(task, compile_for_task(source, task), max_error_rate=1.0)
    assert isinstance(env, ConfinedReward)
    actions = rng.uniform(-1, 1, size=(25, *env.action_space.shape)).astype(np.float32)
    got = []
    try:
        env.reset(seed=5)
        for a in actions:
            _, r, terminated, truncated, info = env.step(a)
            got.append(
                (
                    float(r),
                    {
                        k: v
                        for k, v in info.items()
                        if k.startswith("reward/") and k != "reward/env"
                    },
                )
            )
            if terminated or truncated:
                break
    finally:
        env.close()
    want = _in_process(task, source, 5, actions[: len(got)])
    assert [r for r, _ in got] == pytest.approx([r for r, _ in want], rel=1e-12, abs=1e-12)
    assert [sorted(c) for _, c in got] == [sorted(c) for _, c in want] and got[0][1]
    assert env.error_counts == {}


def test_training_vec_env_matches_in_process_and_keeps_the_trainer_clean() -> None:
    source = offline_reward(HOPPER)
    train = TrainConfig(n_envs=3, seed=4)
    venv = make_vec_env(HOPPER, source, train)
    assert isinstance(venv, ConfinedVecEnv)
    report = WallReport(**venv.wall)
    assert report.seccomp and report.no_new_privs and report.rlimits["RLIMIT_FSIZE"] == 0
    assert not report.new_threads
    obs = venv.reset()
    rewards = []
    actions = np.random.default_rng(1).uniform(-1, 1, size=(30, 3, 3)).astype(np.float32)
    for a in actions:
        obs, r, _, infos = venv.step(a)
        rewards.append(r.copy())
    venv.close()
    # env 0 in this process with the same seed and actions, until its first episode ends
    want = [r for r, _ in _in_process(HOPPER, source, 4, actions[:, 0])]
    assert [float(r[0]) for r in rewards][: len(want)] == pytest.approx(want, rel=1e-5)
    assert "reward/progress" in infos[0] and "success" in infos[0]


def test_steps_do_not_depend_on_how_many_workers_hold_the_copies() -> None:
    """3 copies in one worker, in two (2 + 1) and in three: the same observations, rewards,
    dones and components step for step, auto-resets included (each copy keeps its seed)."""
    program = compile_for_task(offline_reward(HOPPER), HOPPER)
    actions = np.random.default_rng(2).uniform(-1, 1, size=(60, 3, 3)).astype(np.float32)
    runs = []
    for workers in (1, 2, 3):
        venv = ConfinedVecEnv(HOPPER, program, n_envs=3, workers=workers)
        assert [len(span) for span in venv.spans] == {1: [3], 2: [2, 1], 3: [1, 1, 1]}[workers]
        venv.seed(7)
        steps, before = [venv.reset()], None
        for a in actions:
            obs, rewards, dones, infos = venv.step(a)
            steps.append((obs, rewards, dones, [i.get("reward/progress") for i in infos]))
            # infos are not deep-copied: each step's dicts must be its own, shared with nothing
            assert before is None or not any(x is y for x in infos for y in before)
            before = infos
            for info in infos:
                info["reward/progress"] = "changed by the caller"
        venv.close()
        runs.append(steps)
    assert any(step[2].any() for step in runs[0][1:])  # an episode ended on the way
    for other in runs[1:]:
        np.testing.assert_array_equal(other[0], runs[0][0])
        for got, want in zip(other[1:], runs[0][1:], strict=True):
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


@pytest.mark.parametrize(
    ("n_envs", "env_workers", "want"), [(3, 2, 2), (6, 3, 3), (6, 6, 6), (6, 1, 3)]
)
def test_rollout_json_counts_the_workers_a_multi_task_set_shares_out(
    n_envs: int, env_workers: int, want: int, tmp_path: Path
) -> None:
    """``train.env_workers`` for one task, and shared out over a set's members (which step
    together), one at least each: ``rollout.json`` says how many held the envs."""
    task = HOPPER if n_envs == 3 else load_set("hopper")
    members = [task] if not task.members else [get_task(m) for m in task.members]
    reward: Any = (
        offline_reward(task) if not task.members else {m.name: offline_reward(m) for m in members}
    )
    config = TrainConfig(n_envs=n_envs, env_workers=env_workers)
    venv = VecNormalize(make_vec_env(task, reward, config))
    try:
        assert record_rollout(venv, config, reward, tmp_path)["workers"] == want
    finally:
        venv.close()


def test_a_program_rejected_in_the_worker_is_rejected_here() -> None:
    """Module-level code first runs in the worker: what it leaves there that cannot be frozen
    rejects the program here, with its line."""
    source = (
        "\nG = (i for i in range(3))\ndef compute_dense_reward(self, action):\n    return 0.0\n"
    )
    program = compile_for_task(source, HOPPER)  # vetted and compiled: nothing ran yet
    with pytest.raises(RewardProgramError) as err:
        ConfinedVecEnv(HOPPER, program, n_envs=1)
    assert err.value.findings[0].line == 2 and "holds a generator" in err.value.findings[0].message


def test_the_trainer_process_never_executes_generated_code(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The program is vetted and compiled once here and travels as an object, but the one
    place that executes generated code (:meth:`RewardProgram._load`) is refused in this
    process: training, its evaluations and the final evaluation still work, so every call
    happened in a confined worker."""

    def refuse(self: RewardProgram) -> None:
        raise AssertionError("generated code executed in the trainer process")

    program = compile_for_task(offline_reward(HOPPER), HOPPER)
    monkeypatch.setattr(RewardProgram, "_load", refuse)
    algo = AlgoConfig(name="ppo", kwargs={"n_steps": 64, "batch_size": 64})
    config = TrainConfig(total_timesteps=256, n_envs=2, eval_freq=128, eval_episodes=1, checkpoint_freq=256,
                         progress_bar=False, video_episodes=0, stop_at_success=0.0)  # fmt: skip
    result = train(HOPPER, program, algo, config, tmp_path)
    assert result.timesteps >= 256 and result.reward_errors == {}
    assert result.rollout["workers"] == min(2, len(os.sched_getaffinity(0)))
    (episode,) = run_episodes(HOPPER, None, episodes=1, seed=0, program=program)
    assert (
        episode.length > 0
        and episode.reward_errors == 0
        and episode.reward_return != episode.env_return
    )


def test_watchdog_replaces_a_stuck_worker_and_training_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A program that gets stuck inside one C call on some states (the budget's clock never
    runs there): the step times out, the worker is replaced, the failure is counted with the
    program's line, the episodes restart and stepping (then PPO) goes on."""
    monkeypatch.setattr(confined, "CALL_TIMEOUT_S", 3.0)
    venv = make_vec_env(
        HOPPER, HANGS_ON_EQUAL_ACTIONS, TrainConfig(n_envs=2, seed=0, max_reward_error_rate=1.0)
    )
    venv.reset()
    for t in range(12):
        a = np.full((2, 3), 0.95 if t in (3, 8) else 0.0, dtype=np.float32)
        obs, rewards, dones, infos = venv.step(a)
        if t in (3, 8):  # every copy's episode ends with a failed call
            assert (
                dones.all()
                and (rewards == 0).all()
                and all(i["reward/error"] == 1.0 for i in infos)
            )
            assert all("terminal_observation" in i for i in infos)
        else:
            assert not any("reward/error" in i for i in infos)
    counts = venv.get_attr("error_counts")[0]
    assert counts == {next(iter(counts)): 4} and next(iter(counts)).startswith("[timeout] line 4: ")
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=64)
    assert model.num_timesteps >= 64
    venv.close()


def test_a_stuck_copy_ends_only_the_episodes_its_worker_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two workers of one copy each: the copy whose action makes the program hang is cut off
    (its worker replaced, a failed call counted); the other copy steps on unharmed."""
    monkeypatch.setattr(confined, "CALL_TIMEOUT_S", 3.0)
    program = compile_for_task(HANGS_ON_EQUAL_ACTIONS, HOPPER)
    venv = ConfinedVecEnv(HOPPER, program, n_envs=2, workers=2, max_error_rate=1.0)
    venv.seed(0)
    venv.reset()
    first = venv.workers[0].pid
    for t in range(6):
        a = np.zeros((2, 3), dtype=np.float32)
        if t == 2:
            a[1] = 0.95
        _, rewards, dones, infos = venv.step(a)
        if t == 2:
            assert dones.tolist() == [False, True] and infos[1]["reward/error"] == 1.0
            assert "reward/error" not in infos[0] and rewards[0] != 0
    assert venv.workers[0].pid == first  # never replaced
    counts = venv.get_attr("error_counts")[0]
    assert list(counts.values()) == [1] and next(iter(counts)).startswith("[timeout] line 4: ")
    venv.close()


def test_training_stops_with_the_reason_when_the_worker_keeps_getting_stuck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(confined, "CALL_TIMEOUT_S", 2.0)
    source = "def compute_dense_reward(self, action):\n    return float(sum(map(sum, [range(10**6)] * 10**6)))\n"
    venv = ConfinedVecEnv(HOPPER, compile_for_task(source, HOPPER), n_envs=1, max_error_rate=1.0)
    venv.seed(0)
    venv.reset()
    with pytest.raises(RewardFailure) as err:
        for _ in range(confined.MAX_REPLACEMENTS + 1):
            venv.step(np.zeros((1, 3), dtype=np.float32))
    assert "replaced 4 times" in str(err.value) and "[timeout] line 2: " in str(err.value)
    venv.close()


def test_rollout_core_in_a_worker_matches_the_in_process_core() -> None:
    from rewardlab.rollout.core import CoreConfig
    from rewardlab.rollout.sb3 import make_core_vec_env

    source = offline_reward(HOPPER)
    train = TrainConfig(n_envs=4, seed=2, backend="native")
    venv = make_vec_env(HOPPER, source, train)
    local = make_core_vec_env(HOPPER, source, n_envs=4, seed=2, config=CoreConfig(backend="native"))
    try:
        assert isinstance(venv.venv, ConfinedCoreVecEnv)  # type: ignore[attr-defined]
        np.testing.assert_array_equal(venv.reset(), local.reset())
        rng = np.random.default_rng(3)
        for _ in range(20):
            a = rng.uniform(-1, 1, size=(4, 3)).astype(np.float32)
            o1, r1, d1, i1 = venv.step(a)
            o2, r2, d2, i2 = local.step(a)
            np.testing.assert_array_equal(o1, o2)
            np.testing.assert_allclose(r1, r2, rtol=1e-6)
            assert i1[0].get("reward/progress") == pytest.approx(i2[0].get("reward/progress"))
    finally:
        venv.close()
        local.close()


def test_writes_into_obs_on_a_one_world_core_do_not_reach_the_agent() -> None:
    source = "def compute_dense_reward(self, action, obs):\n    obs[0] = 9999.0\n    return float(obs[0])\n"
    venv = make_vec_env(
        HOPPER, source, TrainConfig(n_envs=1, seed=0, backend="native", max_reward_error_rate=1.0)
    )
    try:
        obs = venv.reset()
        for _ in range(5):
            obs, reward, _, _ = venv.step(np.zeros((1, 3), dtype=np.float32))
            assert np.abs(obs).max() < 9000.0 and reward[0] == pytest.approx(9999.0)
    finally:
        venv.close()


TAMPER = """
def compute_dense_reward(self, action):
    self.hopper.top._qpos[1] = 3.0   # a view into the worker's MjData: lift the hopper
    return 1.0
"""


def test_an_unvetted_program_cannot_touch_the_trusted_simulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Evaluation's simulator (and its success metric) lives in this process; a program that
    rewrites the state of its worker's copy only makes that copy diverge, which is a counted
    failure (reward 0)."""
    reference = make_env(HOPPER)
    env = program_env(HOPPER, unvetted_program(TAMPER), max_error_rate=1.0)
    try:
        reference.reset(seed=7)
        env.reset(seed=7)
        for t in range(5):
            a = np.full(3, 0.1, dtype=np.float32)
            o_ref, *_ = reference.step(a)
            o, r, _, _, info = env.step(a)
            np.testing.assert_array_equal(o, o_ref)  # the trusted env is untouched
            if t > 0:  # from the second step on the worker's tampered copy shows
                assert r == 0.0 and info["reward/error"] == 1.0
        assert any("diverged from the trusted one" in k for k in env.error_counts)
    finally:
        env.close()
        reference.close()


def test_worker_environment_holds_no_secrets() -> None:
    env = worker_environment({"PATH": "/bin", "OPENAI_API_KEY": "sk-x", "MY_TOKEN": "t", "HOME": "/root",
                              "PYTHONPATH": "/x", "AWS_SECRET_ACCESS_KEY": "a", "MUJOCO_GL": "egl"})  # fmt: skip
    assert (
        env["PATH"] == "/bin" and env["MUJOCO_GL"] == "egl" and env["OPENBLAS_NUM_THREADS"] == "1"
    )
    assert not {"OPENAI_API_KEY", "MY_TOKEN", "AWS_SECRET_ACCESS_KEY"} & set(env)


def test_without_the_wall_rewardlab_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        confine, "confinement_problem", lambda: "seccomp needs Linux, this is Plan9"
    )
    monkeypatch.delenv(confine.ALLOW_UNCONFINED_ENV, raising=False)
    with pytest.raises(confine.ConfinementUnavailable) as err:
        confine.apply_wall(memory_mb=0)
    assert str(err.value).startswith(
        "rewardlab: cannot confine generated reward code on this system"
    )
    assert confine.ALLOW_UNCONFINED_ENV in str(err.value)
    monkeypatch.setenv(confine.ALLOW_UNCONFINED_ENV, "1")
    if os.fork() == 0:  # the opt-out applies the rlimits only, and says so
        report = confine.apply_wall(memory_mb=0)
        os._exit(0 if report.unconfined and not report.seccomp else 1)
    _, status = os.wait()
    assert os.WEXITSTATUS(status) == 0


def test_the_seccomp_program_refuses_what_it_should() -> None:
    prog = confine.seccomp_program("x86_64", 1234, threads=False)
    assert prog[-1] == (0x06, 0, 0, 0x7FFF0000) and len(prog) < 4096
    refused = {k for code, _, _, k in prog if code == 0x15}
    table = confine._ARCHES["x86_64"]["nr"]
    for name in (
        "execve",
        "fork",
        "clone",
        "socket",
        "connect",
        "ptrace",
        "kill",
        "unlink",
        "mount",
        "io_uring_setup",
    ):
        assert table[name] in refused, name


@pytest.mark.parametrize(
    ("body", "phrase"),
    [("return 0.0, {'env': 1e3}", "component name 'env' is reserved"),
     ("return float(10**400)", "OverflowError"), ("return 10**400", "int too large to convert to float")],
)  # fmt: skip
def test_the_rollout_core_checks_outputs_like_every_other_path(body: str, phrase: str) -> None:
    """Batched evaluation of the core falls back per world on such outputs, where they are
    counted failures with their finding; ``reward/env`` stays the benchmark's own reward."""
    from rewardlab.rollout.core import CoreConfig, RolloutCore
    from rewardlab.rollout.sb3 import CoreVecEnv

    source = f"def compute_dense_reward(self, action):\n    {body}\n"
    venv = CoreVecEnv(
        RolloutCore(HOPPER, CoreConfig(num_worlds=4, seed=0, max_error_rate=1.0), program=source)
    )
    venv.reset()
    _, rewards, _, infos = venv.step(np.zeros((4, 3), dtype=np.float32))
    assert (rewards == 0).all() and all(i["reward/error"] == 1.0 for i in infos)
    assert all(abs(i["reward/env"]) < 100 for i in infos)
    assert any(phrase in key for key in venv.get_attr("error_counts")[0]), venv.get_attr(
        "error_counts"
    )[0]
    venv.close()


def test_a_reward_that_crashes_in_training_ends_the_run_failed_with_its_line(
    tmp_path: Path,
) -> None:
    """A program that passes its check and then raises on the states training reaches (the
    hopper falling): every failure is a counted call with its line, training stops with the
    reasons, and the run's ``summary.json`` ends ``failed`` with them (no traceback, no
    ``training`` left behind)."""
    reward = tmp_path / "crashes.py"
    reward.write_text(
        "def compute_dense_reward(self, action):\n"
        "    z = self.hopper.top.position_z\n"
        "    return z // (z - z) if z < 1.15 else z\n"
    )
    runs = tmp_path / "runs"
    res = subprocess.run(
        [sys.executable, "-m", "rewardlab.cli", "train", "task=mujoco/hopper_forward", f"reward_file={reward}",
         "check.steps=1", "gate.on_train=off", "train.total_timesteps=4096", "train.n_envs=2",
         "train.eval_freq=4096", "train.eval_episodes=1", "train.video_episodes=0", "train.progress_bar=false",
         "train.checkpoint_freq=4096", "algo.kwargs.n_steps=512", f"runs_dir={runs}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Traceback" not in res.stdout + res.stderr
    (summary_file,) = [p for p in runs.rglob("summary.json") if p.parent.parent.name != "rewards"]
    summary = json.loads(summary_file.read_text())
    assert summary["status"] == "failed", summary
    assert (
        "reward program failed" in summary["message"]
        and "[runtime] line 3: ZeroDivisionError" in summary["message"]
    )
    version = json.loads((summary_file.parent / "rewards" / "v0" / "summary.json").read_text())
    assert (
        version["status"] == "failed"
        and "[runtime] line 3: ZeroDivisionError" in version["message"]
    )
