"""The pre-flight gate: sandboxed evaluation on recorded states (exact replay), finiteness and
scale, constant components, ranking accuracy on MetaWorld demonstrations, and the verdict in
the run directory, the fix prompt and the reflection."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import OmegaConf

from rewardlab.config import GateConfig, RewardLabConfig
from rewardlab.gate import (
    GateReport,
    gate,
    gate_benchmark_reward,
    gate_settings,
    remember_check,
)
from rewardlab.generators.base import GenerationRequest, Reply, extract_code
from rewardlab.generators.loop import generate_reward
from rewardlab.generators.offline import OfflineGenerator
from rewardlab.reference_rollouts import reference_rollouts
from rewardlab.reward.check import check_program
from rewardlab.reward.trajectories import (
    evaluate_on_rollouts,
    load_rollouts,
    record_rollout,
    save_rollouts,
)
from rewardlab.search.reflection import reflect, render_reflection
from rewardlab.tasks import get_task
from rewardlab.tasks.metaworld import MT50, scripted_policy
from rewardlab.wrappers import compile_for_task, make_env

DRAWER = get_task("metaworld/drawer_open")
HOPPER = get_task("mujoco/hopper_forward")


def prog(body: str) -> str:
    return "import math\nimport numpy as np\n\ndef compute_dense_reward(self, action):\n" + "".join(
        f"    {line}\n" for line in body.strip().splitlines()
    )


def offline(task: Any) -> str:
    reply = OfflineGenerator().propose(
        GenerationRequest(task=task, instruction=task.instruction, messages=[])
    )
    source = extract_code(reply.text)
    assert source is not None
    return source


# Pays for the hand moving away from the drawer handle: the planted bad reward.
AWAY = prog(
    "away = float(np.linalg.norm(self.robot.ee_position - self.obj1.position))\nreturn away, {'away': away}"
)
# Finite while the drawer is closed (all the smoke run's random actions reach), NaN once it
# is pulled most of the way toward the goal (only demonstrations get there).
NAN_WHEN_OPEN = prog(
    "gap = abs(float(self.goal_position[1] - self.obj1.position[1]))\n"
    "near = 1.0 - math.tanh(5.0 * gap)\n"
    "return (np.nan if gap < 0.05 else near), {'near': near}"
)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A run config whose gate caches its rollouts in one folder for the whole module."""
    c = OmegaConf.structured(RewardLabConfig)
    c.runs_dir = str(tmp_path_factory.mktemp("runs"))
    c.check.steps = 40
    return c


# ----------------------------------------------------------------------------- replay


def test_recorded_states_replay_exactly_in_the_child(tmp_path: Path) -> None:
    """Rewards computed in the child on restored states equal those computed live."""
    for task, policy in ((DRAWER, scripted_policy(DRAWER)), (HOPPER, None)):
        source = offline(task)
        env = make_env(task, compile_for_task(source, task))
        live: list[list[float]] = []
        rng = np.random.default_rng(0)

        def act(
            obs: np.ndarray, t: int, policy: Any = policy, env: Any = env, rng: Any = rng
        ) -> Any:
            return (
                policy.get_action(obs)
                if policy is not None
                else rng.uniform(-1, 1, env.action_space.shape)
            )

        rollouts = []
        for seed in (3, 4):
            rollout = record_rollout(env, act, seed=seed, steps=60, kind="demo")
            rollouts.append(rollout)
            env.reset(seed=seed)  # replay the actions live for the reference rewards
            live.append([float(env.step(a)[1]) for a in rollout.actions])
        env.close()
        path = save_rollouts(tmp_path / f"{task.name.replace('/', '_')}.npz", rollouts)
        assert [r.length for r in load_rollouts(path)] == [r.length for r in rollouts]
        ev = evaluate_on_rollouts(task, source, path)
        assert ev.ok, ev.findings
        for got, want in zip(ev.rewards, live, strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        assert set(ev.components) >= {"action"} and ev.stats["calls_failed"] == 0


def test_hostile_program_never_runs_in_this_process(tmp_path: Path) -> None:
    env = make_env(HOPPER)
    rollout = record_rollout(env, lambda o, t: np.zeros(3), seed=0, steps=5, kind="zero")
    env.close()
    ev = evaluate_on_rollouts(
        HOPPER, "import os\ndef compute_dense_reward(self, action):\n    return 1.0\n", [rollout]
    )
    assert not ev.ok and "'os'" in str(ev.findings[0]) and ev.rewards == []
    bomb = prog("x = [0] * (10 ** 10)\nreturn 1.0")
    ev = evaluate_on_rollouts(HOPPER, bomb, [rollout], memory_mb=512)
    assert not ev.ok and ev.stats["calls_failed"] == 5  # confined to the limited child


# ----------------------------------------------------------------------------- finite, scale, variation


def test_nan_reached_only_by_demonstrations_is_rejected(cfg: Any) -> None:
    assert check_program(DRAWER, NAN_WHEN_OPEN, steps=40).ok  # random states never open the drawer
    report = gate(DRAWER, NAN_WHEN_OPEN, cfg)
    assert not report.ok
    assert "not finite" in report.findings[0] and "demo rollout" in report.findings[0]


def test_scale_bounds(cfg: Any) -> None:
    big = gate(
        HOPPER, prog("return 5000.0 * self.hopper.top.velocity_x"), cfg
    )  # passes the spine's 1e4 limit
    assert (
        not big.ok
        and big.findings[0].startswith("badly scaled")
        and "within 1000" in big.findings[0]
    )
    huge = gate(HOPPER, prog("return 1e9 * (1.0 + self.hopper.top.position_z)"), cfg)
    assert not huge.ok and "e+09" in huge.findings[0]  # the smoke run already refuses it
    tiny = gate(HOPPER, prog("return 1e-9 * self.hopper.top.velocity_x"), cfg)
    assert not tiny.ok and "~0 everywhere" in tiny.findings[0]
    fine = gate(HOPPER, prog("return 0.5 * self.hopper.top.velocity_x"), cfg)
    assert fine.ok and fine.stats["reward"]["max"] > 0 > fine.stats["reward"]["min"]


def test_constant_component_is_a_warning_constant_total_a_rejection(cfg: Any) -> None:
    source = prog("v = self.hopper.top.velocity_x\nreturn v + 1.0, {'forward': v, 'bonus': 1.0}")
    report = gate(HOPPER, source, cfg)
    assert report.ok
    assert [w for w in report.warnings if "`bonus` is constant" in w] and not [
        w for w in report.warnings if "`forward`" in w
    ]
    assert (
        report.stats["components"]["bonus"]["min"]
        == report.stats["components"]["bonus"]["max"]
        == 1.0
    )
    flat = gate(HOPPER, prog("return 2.0, {'bonus': 2.0}"), cfg)
    assert not flat.ok and "constant" in flat.findings[0]
    ref = reference_rollouts(HOPPER, GateConfig(cache_dir=None), None)
    assert not ref.has_demos and set(ref.kinds()) == {"random", "zero", "perturbed"}


# ----------------------------------------------------------------------------- ranking accuracy


def test_ranking_accuracy_good_offline_reward_and_planted_bad_one(cfg: Any) -> None:
    good = gate(DRAWER, offline(DRAWER), cfg)
    assert good.ok, good.findings
    assert good.ranking_accuracy is not None and good.ranking_accuracy >= 0.9
    assert good.progress_order is not None and good.progress_order > 0.5
    kinds = good.stats["rollouts"]["kinds"]
    assert kinds["demo"] == 6 and kinds["random"] == 4 and kinds.get("truncated_demo", 0) >= 1
    assert good.stats["returns"]["demo"] > max(
        v for k, v in good.stats["returns"].items() if k != "demo"
    )
    bad = gate(DRAWER, AWAY, cfg)
    assert not bad.ok and bad.ranking_accuracy is not None and bad.ranking_accuracy < 0.6
    assert bad.findings[0].startswith("ranking accuracy") and "pairs" in bad.findings[0]
    assert (
        bad.stats["checks"]["preference"] == "reject" and bad.stats["checks"]["progress"] == "warn"
    )
    assert bad.progress_order is not None and bad.progress_order < 0
    lines = "\n".join(bad.feedback_lines())
    assert (
        "ranking accuracy" in lines
        and "component `away`" in lines
        and "mean return per rollout kind" in lines
    )
    assert (
        GateReport.from_dict(json.loads(json.dumps(bad.to_dict()))).feedback_lines()
        == bad.feedback_lines()
    )


def test_rollouts_are_recorded_once_and_cached_on_disk(cfg: Any) -> None:
    settings, cache_dir = gate_settings(cfg)
    assert cache_dir == f"{cfg.runs_dir}/.gate_cache"  # the interpolated default
    ref = reference_rollouts(DRAWER, settings, cache_dir)
    assert ref.path.exists() and ref.path.parent == Path(cfg.runs_dir) / ".gate_cache"
    again = reference_rollouts(DRAWER, settings, cache_dir)
    assert again is ref
    lengths = {r.length for r in ref.rollouts}
    assert (
        lengths == {ref.length} == {DRAWER.horizon}
    )  # whole episodes of equal length: returns compare fairly
    assert all(r.success for r in ref.rollouts if r.kind == "demo")
    assert not any(r.success for r in ref.rollouts if r.kind in ("truncated_demo", "noisy_demo"))
    # actions as the env executes them (the scripted expert asks for up to ~15) ...
    assert max(float(np.abs(r.actions).max()) for r in ref.rollouts) <= 1.0
    assert max(float(np.abs(r.actions).max()) for r in ref.rollouts if r.kind == "demo") == 1.0
    # ... and a neutral-action copy of each, same states, in the same order
    assert [r.kind for r in ref.neutral] == [f"neutral/{r.kind}" for r in ref.rollouts]
    assert all(
        np.array_equal(a.states, b.states) and not b.actions.any()
        for a, b in zip(ref.rollouts, ref.neutral, strict=True)
    )


# ----------------------------------------------------------------------------- where the verdict goes


class Scripted:
    name = "scripted"

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.requests: list[GenerationRequest] = []

    def propose(self, request: GenerationRequest) -> Reply:
        self.requests.append(request)
        return Reply(text=self.answers.pop(0), model="scripted")


def test_gate_rejection_is_sent_back_for_a_fix(cfg: Any, tmp_path: Path) -> None:
    def screen(source: str, report: Any) -> GateReport:
        remember_check(DRAWER, source, cfg, report)
        return gate(DRAWER, source, cfg)

    gen = Scripted(f"```python\n{AWAY}```", f"```python\n{offline(DRAWER)}```")
    result = generate_reward(
        DRAWER,
        DRAWER.instruction,
        gen,
        fix_attempts=2,
        check=cfg.check,
        out_dir=tmp_path,
        screen=screen,
    )
    assert result.ok and result.gate is not None and result.gate.ok and len(result.attempts) == 2
    fix_prompt = gen.requests[1].messages[-1]["content"]
    assert "rejected before training" in fix_prompt and "ranking accuracy" in fix_prompt
    first = json.loads((tmp_path / "llm" / "attempt_0.json").read_text())
    assert (
        first["check"]["ok"]
        and first["gate"]["ok"] is False
        and first["gate"]["ranking_accuracy"] < 0.6
    )


def test_train_path_writes_gate_json_warns_or_blocks(
    cfg: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from rewardlab.pipeline import initial_reward

    caplog.set_level(logging.INFO, logger="rewardlab")

    c = cfg.copy()
    c.task = OmegaConf.structured(DRAWER)
    (tmp_path / "away.py").write_text(AWAY)
    c.reward_file = str(tmp_path / "away.py")
    source, failure = initial_reward(c, DRAWER, tmp_path / "warn")
    assert source == AWAY and failure == ""  # the default (warn) trains anyway ...
    saved = json.loads((tmp_path / "warn" / "rewards" / "v0" / "gate.json").read_text())
    assert saved["ok"] is False and saved["ranking_accuracy"] < 0.6  # ... but records the verdict
    assert any(
        r.getMessage().startswith("pre-flight gate: rejected: ranking accuracy")
        for r in caplog.records
    )
    c.gate.on_train = "block"
    source, failure = initial_reward(c, DRAWER, tmp_path / "block")
    assert (
        source is None and "pre-flight gate rejected" in failure and "ranking accuracy" in failure
    )


def test_reflection_shows_the_gate_numbers(cfg: Any, tmp_path: Path) -> None:
    report = gate(DRAWER, offline(DRAWER), cfg)
    (tmp_path / "gate.json").write_text(json.dumps(report.to_dict()))
    with (tmp_path / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["timesteps", "success_rate", "mean_progress", "mean_reward_return", "mean_env_return"]
        )
        w.writerows([[512, 0.0, 0.1, 1.0, 0.0], [1024, 0.2, 0.4, 2.0, 0.0]])
    text = render_reflection(reflect(tmp_path, label="it0/c0"))
    assert "pre-flight gate evaluated this reward function" in text
    assert f"ranking accuracy {report.ranking_accuracy:.2f}" in text and "progress order" in text


# ----------------------------------------------------------------------------- the benchmark's own reward

MT50_TASKS = [f"metaworld/{name[: -len('-v3')].replace('-', '_')}" for name in MT50]
MT50_DEFAULT = ("metaworld/drawer_open", "metaworld/handle_press")
"""Run in the default suite (a drawer, a press; the drawer's rollouts are shared with the tests above);
the other 48 are marked slow (all 50: `pytest -m 'slow or not slow' tests/test_gate.py -k mt50`)."""


@pytest.mark.parametrize(
    "name",
    [n if n in MT50_DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in MT50_TASKS],
)
def test_expert_reward_of_every_mt50_task_passes_the_gate(name: str, cfg: Any) -> None:
    """MetaWorld's own dense reward is the reference of a reward that trains: the gate must
    accept it on every task, and rank the scripted expert's demonstrations above failures."""
    report = gate_benchmark_reward(get_task(name), cfg)
    assert report.ok, report.findings
    assert report.stats["checks"]["check"] == "skip" and report.stats["checks"]["finite"] == "pass"
    pref = report.stats["preference"]
    assert pref["successful"] >= 1 and report.ranking_accuracy is not None, report.warnings


# ----------------------------------------------------------------------------- calibrated behaviour

# Text2Reward's published style: negative distances and an action-norm penalty on the raw
# action, `(self, action, obs)`, `np` used as their harness bound it (written here, not copied).
T2R_STYLE = """def compute_dense_reward(self, action, obs):
    # distance of the gripper to the handle, and of the handle to where it must go
    handle_dist = np.linalg.norm(self.robot.ee_position - self.obj1.position)
    goal_dist = np.linalg.norm(self.obj1.position - self.goal_position)
    # keep the motion smooth
    action_reg = np.linalg.norm(action)
    return -1.0 * handle_dist - 1.0 * goal_dist - 0.1 * action_reg
"""


def test_action_norm_penalty_does_not_sink_a_text2reward_style_reward(cfg: Any) -> None:
    """Scripted demonstrations act at full effort; compared on the same states with neutral
    actions, a `-w * norm(action)` term no longer makes them lose to doing nothing."""
    report = gate(DRAWER, "import numpy as np\n\n" + T2R_STYLE, cfg)
    assert report.ok, report.findings
    traj = report.stats["preference"]["trajectory"]
    assert traj["neutral"] >= 0.9 and traj["neutral"] >= traj["recorded"]
    assert report.stats["checks"]["action_cost"] == "pass", report.warnings


def test_an_action_cost_that_outweighs_the_task_is_a_warning(cfg: Any) -> None:
    """The same reward with a penalty that makes acting firmly lose to doing little (the
    calibration's ``heavy_action`` programs never learned): accepted, states still ranked right,
    with an ``action_cost`` warning that gives the preference with the actions as executed."""
    heavy = "import numpy as np\n\n" + T2R_STYLE.replace("- 0.1 * action_reg", "- 5.0 * action_reg")
    assert heavy != "import numpy as np\n\n" + T2R_STYLE
    report = gate(DRAWER, heavy, cfg)
    traj = report.stats["preference"]["trajectory"]
    assert report.ok, report.findings
    assert traj["recorded"] < cfg.gate.min_ranking_accuracy <= traj["neutral"]
    assert report.stats["checks"]["action_cost"] == "warn"
    assert any("action cost outweighs the task" in w for w in report.warnings), report.warnings


def test_published_style_program_runs_unchanged(cfg: Any) -> None:
    probe = check_program(DRAWER, T2R_STYLE, steps=5)
    if not probe.ok and any("'np'" in str(f) or "np" in str(f).split() for f in probe.findings):
        pytest.skip(
            "`np` is not bound for programs yet (program conventions: helper contain, issue #13 part 1)"
        )
    assert gate(DRAWER, T2R_STYLE, cfg).ok


KNOWN_BAD = {
    "constant": ("constant", prog("return 1.0")),
    "wrong sign": ("preference", prog(
        "reach = float(np.linalg.norm(self.robot.ee_position - self.obj1.position))\n"
        "goal = float(np.linalg.norm(self.obj1.position - self.goal_position))\n"
        "return reach + 2.0 * goal - 0.01 * float(np.linalg.norm(action))"
    )),
    "pays for leaving the handle": ("preference", AWAY),
    "NaN at the goal": ("finite", NAN_WHEN_OPEN),
    "~0": ("scale", prog("return 1e-9 * float(self.obj1.position[1])")),
    "crashes": ("check", prog("return 1.0 / 0.0")),
}  # fmt: skip


@pytest.mark.parametrize("name", list(KNOWN_BAD))
def test_known_bad_rewards_are_rejected_by_the_right_check(name: str, cfg: Any) -> None:
    check, source = KNOWN_BAD[name]
    report = gate(DRAWER, source, cfg)
    assert not report.ok
    assert report.stats["checks"][check] == "reject", (report.stats["checks"], report.findings)


def test_sparse_reward_is_a_warning_with_its_numbers(cfg: Any) -> None:
    """Paying only at the goal cannot be told from a reward that trains (some do, on easy
    tasks): accepted, with a warning that says where the reward is flat."""
    sparse = prog(
        "gap = abs(float(self.goal_position[1] - self.obj1.position[1]))\nreturn 1.0 if gap < 0.02 else 0.0"
    )
    report = gate(DRAWER, sparse, cfg)
    assert report.ok and report.stats["checks"]["sparse"] == "warn"
    assert any("flat" in w and "never succeed" in w for w in report.warnings)
    assert report.stats["signal"]["failed_span"] == 0.0 < report.stats["signal"]["span"]
    dense = gate(DRAWER, offline(DRAWER), cfg)
    assert dense.stats["checks"]["sparse"] == "pass"
