"""E2CL: planted reward errors are found with evidence that really shows them, feedback lines
are edits the offline writer applies, and the correction loop accepts a fix and refuses a
correction that leaves the error in place (real envs, tiny budgets)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_llm_server import FakeLLMServer, dynamic
from guards import HANG_S
from omegaconf import OmegaConf

from rewardlab.config import E2CLConfig, RewardLabConfig, to_schema
from rewardlab.e2cl.detect import (
    detect_action_saturation,
    detect_components,
    detect_expert_disagreement,
    detect_hacking,
    detect_program_failures,
    detect_regressions,
    detect_rewards_failure,
    terms_at_line,
)
from rewardlab.e2cl.explore import (
    Exploration,
    Trajectory,
    body_limits,
    explore,
    explore_branches,
    explore_free,
    random_actor,
    scripted_actor,
    teacher_demos,
)
from rewardlab.e2cl.feedback import feedback_line
from rewardlab.e2cl.findings import (
    ACTION_SATURATION,
    CONSTANT_COMPONENT,
    EXPERT_DISAGREEMENT,
    IGNORES_OBJECT,
    PROGRAM_FAILURE,
    REGRESSION,
    REWARD_HACKING,
    REWARDS_FAILURE,
    Finding,
    load_findings,
    triggering,
)
from rewardlab.e2cl.memory import Memory, MemoryRecord, choose_action, guidance_lines, refused_here
from rewardlab.generators.base import GenerationRequest, extract_code
from rewardlab.generators.offline import OfflineGenerator, feedback_edits, parse_terms
from rewardlab.paths import data_dir
from rewardlab.rundir import RunDir, read_json, write_json
from rewardlab.tasks import get_task
from rewardlab.tasks.registry import TaskSpec
from rewardlab.wrappers import compile_for_task, make_env

HOPPER, DRAWER = "mujoco/hopper_forward", "metaworld/drawer_open"
CFG = E2CLConfig()

PAYS_FOR_FALLING = """
def compute_dense_reward(self, action):
    z = self.hopper.top.position_z
    components = {
        "height": 1.0 * (-z),
    }
    return sum(components.values()), components
"""
RAISES_LOW = """
import math


def compute_dense_reward(self, action):
    z = self.hopper.top.position_z
    components = {
        "progress": 1.0 * (self.hopper.top.velocity_x),
        "up": 1.0 * (math.sqrt(z - 1.2)),
    }
    return sum(components.values()), components
"""
IGNORES_OBJ = '''
def compute_dense_reward(self, action):
    """Planted errors: pays for the gripper's height only, plus a constant."""
    ee = self.robot.ee_position
    components = {
        "height": 1.0 * (float(ee[2])),
        "bias": 0.5 * (1.0),
    }
    return sum(components.values()), components
'''


def offline_source(
    task_name: str, previous_source: str | None = None, feedback: list[str] | None = None
) -> str:
    task = get_task(task_name)
    request = GenerationRequest(
        task, task.instruction, [], previous_source=previous_source, feedback=feedback or []
    )
    reply = OfflineGenerator().propose(request)
    source = extract_code(reply.text)
    assert source is not None
    return source


def random_free(task_name: str, source: str, episodes: int = 3) -> list[Trajectory]:
    task = get_task(task_name)
    env = make_env(task)
    space = env.action_space
    env.close()
    return explore_free(task, compile_for_task(source, task), random_actor(space, 0), episodes=episodes, seed=0,
                        perturbations=["none"])  # fmt: skip


# --------------------------------------------------------------------------- detectors


def test_a_reward_that_pays_for_falling_is_found_at_the_fall() -> None:
    free = random_free(HOPPER, PAYS_FOR_FALLING)
    limits = body_limits(get_task(HOPPER))
    assert [limit.name for limit in limits] == ["height", "tilt"]
    (finding,) = detect_rewards_failure(free, limits, th=CFG)
    assert (
        finding.kind == REWARDS_FAILURE
        and finding.severity == "error"
        and finding.subject == "height"
    )
    assert finding.evidence.stats["correlation"] <= CFG.failure_correlation
    t = next(x for x in free if x.id == finding.evidence.trajectory)
    near, far = finding.evidence.steps[:3], finding.evidence.steps[3:]
    z = t.probes["height"]
    assert max(z[near]) < min(z[far]), "the first steps are the ones nearest the height limit"
    assert min(t.rewards[near]) > max(t.rewards[far]), "and the reward is highest exactly there"
    assert finding.evidence.values["height"] == pytest.approx(
        list(z[finding.evidence.steps]), abs=1e-5
    )
    assert finding.actions[0] == "drop height"
    # the offline reward for the same task under the same random actions pays for staying up
    assert detect_rewards_failure(random_free(HOPPER, offline_source(HOPPER)), limits, th=CFG) == []


def test_a_program_that_raises_on_some_states_is_found_on_exactly_those_states() -> None:
    free = random_free(HOPPER, RAISES_LOW)
    exploration = Exploration(free=free)
    (finding,) = detect_program_failures(exploration, RAISES_LOW)
    assert (
        finding.kind == PROGRAM_FAILURE
        and "ValueError" in finding.message
        and "line 9" in finding.message
    )
    assert finding.subject == "up" and finding.actions == ["drop up"]
    t = exploration.get(finding.evidence.trajectory)
    low = [i for i, z in enumerate(t.probes["height"]) if z < 1.2]
    assert low and finding.evidence.steps == low[:12], (
        "errors exactly where the square root's argument is negative"
    )
    assert all(t.errors[i] is None for i in range(t.length) if t.probes["height"][i] >= 1.2)
    assert finding.evidence.stats["count"] == sum(e is not None for x in free for e in x.errors)
    assert terms_at_line(RAISES_LOW, 6) == ["up"], (
        "an assignment taints the terms that use its variable"
    )
    # the edit removes the failing term; exploring the corrected program finds no failure
    refined = offline_source(
        HOPPER, previous_source=RAISES_LOW, feedback=[feedback_line(finding, finding.actions[0])]
    )
    assert [t.name for t in parse_terms(refined) or []] == ["progress"]
    assert detect_program_failures(Exploration(free=random_free(HOPPER, refined)), refined) == []


def test_a_constant_component_is_found_where_episodes_cannot_end_early() -> None:
    task = get_task(DRAWER)
    config = E2CLConfig(episodes=1, random_episodes=1, random_steps=50, demos=1, branch_steps=0)
    actor = random_actor(make_env(task).action_space, 0)
    exploration = explore(task, compile_for_task(IGNORES_OBJ, task), actor, config)
    assert (
        not exploration.can_terminate
        and len(exploration.demos) == 1
        and exploration.demos[0].succeeded
    )
    (finding,) = [
        f
        for f in detect_components(exploration, can_terminate=False, th=config)
        if f.kind == CONSTANT_COMPONENT
    ]
    assert (
        finding.subject == "bias"
        and finding.severity == "warning"
        and finding.actions == ["drop bias"]
    )
    assert finding.evidence.values["component:bias"] == [0.5] * len(finding.evidence.steps)
    assert finding.evidence.stats["explored_steps"] == sum(t.length for t in exploration.all())
    # hopper's constant "alive" bonus pays for not falling (episodes end at a fall): not reported
    hopper = Exploration(free=random_free(HOPPER, offline_source(HOPPER)))
    assert not [
        f for f in detect_components(hopper, can_terminate=True, th=config) if f.subject == "alive"
    ]


def test_a_reward_that_ignores_the_object_is_found_along_the_demonstrations() -> None:
    task = get_task(DRAWER)
    demos = teacher_demos(task, compile_for_task(IGNORES_OBJ, task), episodes=2, seed=0)
    assert len(demos) == 2 and all(d.succeeded for d in demos)
    findings = {f.kind: f for f in detect_expert_disagreement(demos, th=CFG)}
    ignores = findings[IGNORES_OBJECT]
    d = next(x for x in demos if x.id == ignores.evidence.trajectory)
    steps = ignores.evidence.steps
    progress = d.probes["goal_progress"][steps]
    assert progress[-1] - progress[0] > 0.5, "the evidence spans the expert pulling the drawer open"
    assert d.probes["object_moved"][steps[0]] > 0.005
    spread = ignores.evidence.stats["reward_spread"]
    assert abs(d.rewards[steps[-1]] - d.rewards[steps[0]]) < CFG.object_min_effect * spread, (
        "while the reward stays put"
    )
    disagree = findings[EXPERT_DISAGREEMENT]
    d = next(x for x in demos if x.id == disagree.evidence.trajectory)
    first, peak, last = disagree.evidence.steps
    assert (
        first == 0 and last == d.length - 1 and d.rewards[peak] == max(d.rewards) > d.rewards[last]
    )
    assert disagree.evidence.stats["correlation"] < CFG.expert_min_correlation
    assert disagree.actions == ["drop height"]
    # the offline reward for the task rises along the same demonstrations
    good = teacher_demos(task, compile_for_task(offline_source(DRAWER), task), episodes=2, seed=0)
    assert detect_expert_disagreement(good, th=CFG) == []


def test_branches_restore_the_expert_state_and_the_expert_finishes_from_there() -> None:
    task = get_task(DRAWER)
    demos = teacher_demos(task, None, episodes=1, seed=0)
    expert = scripted_actor(task)
    assert expert is not None
    (b,) = explore_branches(task, None, expert, demos, fractions=[0.5], steps=60)
    d = demos[0]
    t = b.start
    assert b.id == f"branch/0@{t}" and t == round(0.5 * d.length)
    k = d.length - t  # the expert taking over from its own state replays the demonstration
    np.testing.assert_allclose(b.actions[:k], np.clip(d.actions[t:], -1, 1), atol=1e-5)
    np.testing.assert_allclose(
        b.probes["object_goal_distance"][:k], d.probes["object_goal_distance"][t:], atol=1e-5
    )
    assert b.succeeded and d.succeeded
    stuck = explore_branches(task, None, lambda obs: np.zeros(4), demos, fractions=[0.5], steps=60)[
        0
    ]
    assert not stuck.succeeded and stuck.task_progress()[-1] < d.task_progress()[-1]


def test_action_saturation_and_training_curve_findings(tmp_path: Path) -> None:
    task = get_task(HOPPER)
    env = make_env(task)
    low, high = env.action_space.low, env.action_space.high  # type: ignore[attr-defined]
    env.close()
    rng = np.random.default_rng(0)
    bang = explore_free(
        task, None, lambda obs: np.where(rng.random(3) < 0.5, low, high), episodes=1, seed=0
    )
    (finding,) = detect_action_saturation(bang, low, high, th=CFG)
    assert finding.kind == ACTION_SATURATION and finding.evidence.stats["fraction"] == 1.0
    t = bang[0]
    assert all(np.all(np.abs(np.abs(t.actions[s]) - 1.0) < 1e-6) for s in finding.evidence.steps)
    assert (
        detect_action_saturation(random_free(HOPPER, offline_source(HOPPER), 1), low, high, th=CFG)
        == []
    )
    # training curves: success lost between evaluations; return up while success stays flat
    rows = [
        (10_000, 0.8, 5.0, 0.0),
        (20_000, 0.8, 9.0, 0.0),
        (30_000, 0.2, 20.0, 0.0),
        (40_000, 0.2, 40.0, 0.0),
    ]
    path = tmp_path / "metrics.csv"
    path.write_text("timesteps,success_rate,mean_reward_return,mean_progress\n"
                    + "".join(f"{s},{r},{g},{p}\n" for s, r, g, p in rows))  # fmt: skip
    (regression,) = detect_regressions([], path, [], th=CFG)
    assert regression.kind == REGRESSION and regression.evidence.steps == [10_000, 40_000]
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "metrics.csv").write_text("timesteps,success_rate,mean_reward_return,mean_progress\n"
                                      + "".join(f"{s},0.0,{g},0.0\n" for s, _, g, _ in rows))  # fmt: skip
    (hacking,) = detect_hacking(flat, [], [])
    assert hacking.kind == REWARD_HACKING and hacking.evidence.values["mean_reward_return"] == [
        5.0,
        40.0,
    ]
    (flat / "metrics.csv").write_text("timesteps,success_rate,mean_reward_return,mean_progress\n"
                                      + "".join(f"{s},{i / 4},{g},0.0\n" for i, (s, _, g, _) in enumerate(rows)))  # fmt: skip
    assert detect_hacking(flat, [], []) == [], "return and success rising together is learning"


# --------------------------------------------------------------------------- feedback and memory


def test_feedback_lines_are_exactly_the_chosen_edits_for_the_offline_writer() -> None:
    tricky = "the hopper falls; more speed and drop the action [at step 5]; balance"
    finding = Finding(CONSTANT_COMPONENT, "warning", tricky, subject="bias", actions=["drop bias"])
    line = feedback_line(finding, "drop bias")
    assert line.startswith(
        "[the hopper falls; more speed and drop the action (at step 5); balance]"
    )
    edits, unknown = feedback_edits([line], {"bias", "progress", "action", "upright"})
    assert edits == [("drop", "bias")] and unknown == []
    edits, _ = feedback_edits([feedback_line(finding, "ignores the object")], {"reach", "move"})
    assert edits == [("up", "reach"), ("up", "grasp"), ("up", "move")]
    assert feedback_edits([feedback_line(finding, None)], {"bias"})[0] == []
    errors = Finding(PROGRAM_FAILURE, "error", "x")
    assert triggering([finding, errors, Finding(CONSTANT_COMPONENT, "info", "y")]) == [errors]
    assert triggering([finding, Finding(CONSTANT_COMPONENT, "info", "y")]) == [finding]


def test_memory_retrieves_similar_tasks_and_steers_edit_choice(tmp_path: Path) -> None:
    from rewardlab.generators.fewshot import task_tokens

    memory = Memory(tmp_path / "memory.jsonl")
    walker, drawer = get_task("mujoco/walker_forward"), get_task("metaworld/drawer_close")

    def record(task: TaskSpec, action: str, outcome: str) -> MemoryRecord:
        words = task_tokens(task, task.instruction)
        return MemoryRecord(
            task.name, task.instruction, "no_success", "", "never", action, outcome, words=words
        )

    memory.add([record(drawer, "more move", "accepted"), record(walker, "more progress", "refused"),
                record(walker, "more alive", "accepted")])  # fmt: skip
    with (tmp_path / "memory.jsonl").open("a") as out:
        out.write("not json\n")
    hopper = get_task(HOPPER)
    found = memory.similar(hopper, hopper.instruction, {"no_success"})
    assert [r.task for r, _ in found][:2] == ["mujoco/walker_forward"] * 2, (
        "the locomotion task ranks first"
    )
    assert found[0][1] > found[-1][1]
    f = Finding(
        "no_success", "warning", "never", actions=["more progress", "more alive", "more upright"]
    )
    assert choose_action(f, found) == "more alive"
    assert choose_action(f, []) == "more progress"
    here = MemoryRecord(
        HOPPER, "", "no_success", "", "", "more alive", "refused", run="r", parent=3
    )
    assert (
        refused_here([here], "r", 3, f) == ["more alive"] and refused_here([here], "r", 2, f) == []
    )
    assert choose_action(f, found, tried=["more alive"]) == "more upright", (
        "never the same edit twice"
    )
    lines = guidance_lines(found, 2)
    assert len(lines) == 2 and all(
        line.startswith("[memory: on mujoco/walker_forward") for line in lines
    )
    assert feedback_edits(lines, {"progress", "alive"})[0] == [], (
        "guidance is evidence, not an edit"
    )


# --------------------------------------------------------------------------- the loop

# Tiny budgets: one PPO update per training (the loop's verdicts rest on the exploration's
# findings, not on learning) and no random-action episodes in the loop's explorations (each
# exploration part starts its own confined worker; explore() with random episodes:
# test_a_constant_component_is_found_where_episodes_cannot_end_early).
TINY = {
    "train": {"total_timesteps": 512, "n_envs": 2, "eval_freq": 512, "eval_episodes": 1, "video_episodes": 0,
              "progress_bar": False, "checkpoint_freq": 512},
    "algo": {"kwargs": {"n_steps": 256}},
    "check": {"steps": 30},
    "e2cl": {"rounds": 1, "episodes": 1, "random_episodes": 0, "demos": 1,
             "branch_fractions": [0.5], "branch_steps": 30, "frames": 2, "clips": False, "media_findings": 2},
}  # fmt: skip
LOOP_HORIZON = 200
"""The drawer's episodes in the loop's run (``task.horizon``, 500 by default): the scripted expert
opens the drawer in about 100 steps, so demonstrations are whole; every evaluation, free
exploration and gate rollout is shorter."""


def make_cfg(task: TaskSpec, runs_dir: Path, **more: Any) -> RewardLabConfig:
    """The composed config of a run (schema + PPO preset + tiny budgets), without Hydra."""
    cfg = OmegaConf.merge(
        OmegaConf.structured(RewardLabConfig), {"task": asdict(task), "runs_dir": str(runs_dir)},
        {"algo": OmegaConf.load(data_dir("conf") / "algo" / "ppo.yaml")}, TINY, more,
    )  # fmt: skip
    return to_schema(cfg)


@pytest.fixture(scope="module")
def corrected_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained on the planted drawer reward, then one E2CL round with the offline writer."""
    from rewardlab.e2cl.loop import run_e2cl
    from rewardlab.pipeline import initial_reward, record_run, train_version

    root = tmp_path_factory.mktemp("e2cl")
    run_dir = root / "runs" / "metaworld" / "drawer_open" / "run"
    run_dir.mkdir(parents=True)
    (root / "planted.py").write_text(IGNORES_OBJ)
    task = replace(get_task(DRAWER), horizon=LOOP_HORIZON)
    cfg = make_cfg(task, root / "runs", reward_file=str(root / "planted.py"))
    RunDir(run_dir).save_config(cfg)
    source, failure = initial_reward(cfg, task, run_dir)
    assert source is not None, failure
    train_version(cfg, task, run_dir, 0, source)
    record_run(run_dir, cfg, task, "done")
    assert run_e2cl(cfg, task, run_dir) == 0
    return run_dir


def test_a_correction_that_fixes_the_triggers_is_accepted(corrected_run: Path) -> None:
    v0, v1 = corrected_run / "rewards" / "v0", corrected_run / "rewards" / "v1"
    before = {f.key: f for f in load_findings(v0 / "findings.json")}
    assert {"ignores_object:object", "expert_disagreement"} <= set(before)
    verdict = read_json(v1 / "verification.json")
    assert verdict["outcome"] == "accepted" and verdict["remaining"] == []
    assert set(verdict["triggers"]) == {k for k, f in before.items() if f.severity == "error"}
    after = {f.key for f in load_findings(v1 / "findings.json")}
    assert not set(verdict["triggers"]) & after
    feedback = read_json(v1 / "feedback.json")
    assert any(line.endswith("suggested edit: ignores the object") for line in feedback["feedback"])
    assert feedback["e2cl"]["edits"]["ignores_object:object"] == "ignores the object"
    terms = {t.name for t in parse_terms((v1 / "reward.py").read_text()) or []}
    assert {"reach", "move"} <= terms and "height" not in terms
    frames = [p for f in before.values() for p in f.evidence.frames]
    assert frames and all((v0 / p).is_file() for p in frames)
    summary = read_json(corrected_run / "summary.json")
    assert summary["current_version"] == 1 and summary["versions"][1]["verification"] == "accepted"
    records = [
        json.loads(line)
        for line in (corrected_run.parents[2] / ".e2cl_memory.jsonl").read_text().splitlines()
    ]
    assert {r["kind"] for r in records} == {k.split(":")[0] for k in verdict["triggers"]} and {
        r["outcome"] for r in records
    } == {"accepted"}


def test_cli_auto_feedback_refuses_a_correction_that_keeps_the_error(corrected_run: Path) -> None:
    kept = (
        (corrected_run / "rewards" / "v1" / "reward.py")
        .read_text()
        .replace('"bias": 0.5 * (1.0)', '"bias": 0.7 * (1.0)')
    )
    assert "0.7" in kept

    def answer(body: dict[str, Any]) -> str:
        if "Summarise them as feedback" in body["messages"][-1]["content"]:
            return "The constant bias term carries no information; drop it."
        return f"```python\n{kept}```"

    with FakeLLMServer(default=dynamic(answer)) as server:
        res = subprocess.run(
            [sys.executable, "-m", "rewardlab.cli", "refine", f"run={corrected_run}", "feedback=auto", "llm=openai",
             f"llm.base_url={server.base_url}", "llm.model=fake", "llm.max_retries=0"],
            cwd=corrected_run, capture_output=True, text=True, timeout=HANG_S, env={**os.environ, "OPENAI_API_KEY": "x"},
        )  # fmt: skip
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert server.chat_count == 2
    v2 = corrected_run / "rewards" / "v2"
    verdict = read_json(v2 / "verification.json")
    assert verdict["parent"] == 1 and verdict["outcome"] == "refused"
    assert (
        "constant_component:bias" in verdict["triggers"]
        and "constant_component:bias" in verdict["remaining"]
    )
    assert "still found after the correction" in verdict["reason"] and "v2 refused" in res.stdout
    feedback = read_json(v2 / "feedback.json")["feedback"]
    assert feedback[0] == "Summary: The constant bias term carries no information; drop it."
    summary_call = read_json(
        corrected_run / "rewards" / "v1" / "e2cl" / "summary_0" / "llm" / "attempt_0.json"
    )
    assert (
        summary_call["reply"]["text"].startswith("The constant bias")
        and summary_call["reply"]["model"]
    )
    assert RunDir(corrected_run).current_version() == 1, "the parent stays current"
    assert read_json(corrected_run / "summary.json")["current_version"] == 1
    records = [
        json.loads(line)
        for line in (corrected_run.parents[2] / ".e2cl_memory.jsonl").read_text().splitlines()
    ]
    assert {(r["kind"], r["outcome"]) for r in records if r["version"] == 2} >= {
        ("constant_component", "refused")
    }


def test_after_a_refusal_evaluate_and_resume_use_the_current_version(corrected_run: Path) -> None:
    """E2CL refused v2 (the test above): ``evaluate`` and ``train run=`` take v1, the version
    ``summary.json`` names as current, not the newest folder."""
    if not (corrected_run / "rewards" / "v2" / "verification.json").exists():
        pytest.skip(
            "needs the refusal made by test_cli_auto_feedback_refuses_a_correction_that_keeps_the_error"
        )
    assert RunDir(corrected_run).refused(2) and RunDir(corrected_run).current_version() == 1
    cli = [sys.executable, "-m", "rewardlab.cli"]
    ev = subprocess.run([*cli, "evaluate", f"run={corrected_run}", "episodes=1", "train.video_episodes=0"],
                        cwd=corrected_run, capture_output=True, text=True, timeout=HANG_S)  # fmt: skip
    assert ev.returncode == 0, ev.stdout[-3000:] + ev.stderr[-3000:]
    assert f"{DRAWER} v1: task success rate" in ev.stdout
    assert list((corrected_run / "rewards" / "v1" / "eval").glob("*/summary.json"))
    assert not (corrected_run / "rewards" / "v2" / "eval").exists()
    tr = subprocess.run([*cli, "train", f"run={corrected_run}", "train.video_episodes=0"],
                        cwd=corrected_run, capture_output=True, text=True, timeout=HANG_S)  # fmt: skip
    assert tr.returncode == 0, tr.stdout[-3000:] + tr.stderr[-3000:]
    assert "(reward v1)" in tr.stdout and "reward v2" not in tr.stdout
    summary = read_json(corrected_run / "summary.json")
    assert summary["status"] == "done" and summary["current_version"] == 1


def test_review_page_shows_findings_frames_and_verdicts(corrected_run: Path) -> None:
    from rewardlab.review.app import create_app

    runs = corrected_run.parents[2]
    client = create_app(runs, python="/nonexistent/python").test_client()
    run_id = corrected_run.relative_to(runs).as_posix()
    page = f"/run/{run_id}?v=0&v=1&v=2"  # the review page compares the versions chosen
    html = client.get(page).get_data(as_text=True)
    column = html[html.index('id="review-v0"') : html.index('id="review-v1"')]
    assert "Findings of the exploration" in column and "<code>ignores_object</code>" in column
    assert (
        "the reward ignores the object: while the expert moves it" in column
        and "demo/0 · steps" in column
    )
    (frame, *_) = [
        f
        for f in load_findings(corrected_run / "rewards" / "v0" / "findings.json")
        if f.evidence.frames
    ]
    src = f"/files/{run_id}/rewards/v0/{frame.evidence.frames[0]}"
    assert f'<img src="{src}"' in column
    res = client.get(src)
    assert res.status_code == 200 and res.mimetype == "image/png"
    assert "E2CL correction of v0: <b>accepted</b>" in html
    if (corrected_run / "rewards" / "v2" / "verification.json").exists():  # after the CLI test
        assert "E2CL correction of v1: <b>refused</b> — still found after the correction" in html
    bad = corrected_run / "rewards" / "v0" / "findings.json"
    original = bad.read_text()
    data = read_json(bad)
    data["findings"][0]["evidence"]["frames"] = ["../../../../../../etc/passwd.png", "<script>.png"]
    data["findings"][0]["message"] = "<script>window.__x = 1</script>"
    write_json(bad, data)
    try:
        html = client.get(page).get_data(as_text=True)
    finally:
        bad.write_text(original)
    assert "<script>window.__x" not in html and "&lt;script&gt;window.__x" in html
    assert "passwd" not in html
