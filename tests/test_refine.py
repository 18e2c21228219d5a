"""The human-feedback refinement loop: offline edits, the feedback prompt, and
``rewardlab refine`` producing a trained, recorded reward lineage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_llm_server import FakeLLMServer, reply
from guards import HANG_S

from rewardlab.generators.base import GenerationRequest, extract_code
from rewardlab.generators.offline import (
    OfflineGenerator,
    Term,
    feedback_edits,
    parse_terms,
    refine_terms,
)
from rewardlab.tasks import get_task
from rewardlab.trust import sign

RL = [sys.executable, "-m", "rewardlab.cli"]
TINY = [
    "train.total_timesteps=1024", "train.n_envs=2", "train.eval_freq=1024", "train.eval_episodes=1",
    "train.video_episodes=1", "train.video_size=96", "train.progress_bar=false",
    "train.checkpoint_freq=1024", "algo.kwargs.n_steps=512", "check.steps=30",
]  # fmt: skip


def run(
    *args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RL, *args], cwd=cwd, capture_output=True, text=True, timeout=HANG_S, input=stdin,
                          env={**os.environ, **(env or {})})  # fmt: skip


def offline_source(task_name: str, instruction: str | None = None, **kw: object) -> str:
    task = get_task(task_name)
    reply_ = OfflineGenerator().propose(
        GenerationRequest(task=task, instruction=instruction or task.instruction, messages=[], **kw)
    )  # type: ignore[arg-type]
    source = extract_code(reply_.text)
    assert source is not None
    return source


def test_parse_terms_round_trips_offline_programs() -> None:
    terms = parse_terms(offline_source("mujoco/hopper_forward"))
    assert terms is not None
    assert [(t.name, t.weight) for t in terms] == [
        ("progress", 1.0),
        ("alive", 1.0),
        ("upright", 0.5),
        ("action", 0.001),
    ]
    assert parse_terms("def compute_dense_reward(self, action):\n    return 1.0\n") is None


def test_feedback_edits_and_refine_terms() -> None:
    edits, unknown = feedback_edits(
        ["too slow", "drop the action penalty", "the sky is blue"], {"progress", "action"}
    )
    assert edits == [("faster", "progress"), ("drop", "action")]
    assert unknown == ["the sky is blue"]
    terms = [Term("progress", 1.0, "vx", ""), Term("action", 0.001, "-a", "")]
    library = {"stay": Term("stay", 0.5, "-abs(x)", "")}
    new, log = refine_terms(
        terms, [("up", "progress"), ("drop", "action"), ("add", "stay"), ("up", "nothing")], library
    )
    assert [(t.name, t.weight) for t in new] == [("progress", 2.0), ("stay", 0.5)]
    assert log == [
        "progress: weight 1 -> 2",
        "dropped action",
        "added stay (x0.5)",
        "ignored up nothing: no such term",
    ]


def test_offline_generator_applies_feedback_to_the_previous_version() -> None:
    previous = offline_source("mujoco/hopper_forward")
    refined = offline_source(
        "mujoco/hopper_forward",
        previous_source=previous,
        feedback=["more speed", "drifts", "upright down"],
    )
    terms = {t.name: t.weight for t in parse_terms(refined) or []}
    assert terms == {"progress": 2.0, "alive": 1.0, "upright": 0.25, "stay": 0.5, "action": 0.001}
    assert "x = self.hopper.top.position_x" in refined, "variables needed by added terms are read"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("refine")
    res = run("train", "task=mujoco/hopper_forward", *TINY, f"runs_dir={root / 'runs'}", cwd=root)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    (config,) = [p for p in (root / "runs").rglob("config.yaml") if p.parent.name != ".hydra"]
    return config.parent


def test_refine_command_builds_a_trained_lineage(trained_run: Path) -> None:
    res = run(
        "refine",
        f"run={trained_run}",
        "feedback=more speed; drop the action penalty",
        "tags=[falls]",
        cwd=trained_run,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    v1 = trained_run / "rewards" / "v1"
    feedback = json.loads((v1 / "feedback.json").read_text())
    assert feedback["parent"] == 0 and feedback["feedback"] == [
        "falls",
        "more speed; drop the action penalty",
    ]
    assert (
        "success_rate" in feedback["evidence"] and "progress" in feedback["evidence"]["components"]
    )
    diff = (v1 / "diff.patch").read_text()
    assert '+        "progress": 2.0 * (vx),' in diff and '-        "action"' in diff
    terms = {t.name: t.weight for t in parse_terms((v1 / "reward.py").read_text()) or []}
    assert terms["progress"] == 2.0 and "action" not in terms and terms["upright"] == 1.0
    assert (v1 / "summary.json").exists() and list((v1 / "videos").glob("*.mp4"))
    summary = json.loads((trained_run / "summary.json").read_text())
    assert [v["version"] for v in summary["versions"]] == [0, 1]
    assert summary["versions"][1]["parent"] == 0 and summary["current_version"] == 1
    report = (trained_run / "report.md").read_text()
    assert "| v1 | v0 | falls; more speed" in report and "```diff" in report


@pytest.mark.slow  # a third refinement (the lineage: test_refine_command_builds_a_trained_lineage)
def test_refine_interactive_reads_feedback_until_empty_line(trained_run: Path) -> None:
    before = len(list((trained_run / "rewards").glob("v*")))
    res = run(
        "refine", f"run={trained_run}", "interactive=true", cwd=trained_run, stdin="add stay\n\n"
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "watch:" in res.stdout and "feedback on this version" in res.stdout
    assert len(list((trained_run / "rewards").glob("v*"))) == before + 1


def test_refine_without_feedback_is_a_clear_error(trained_run: Path) -> None:
    res = run("refine", f"run={trained_run}", cwd=trained_run)
    assert res.returncode == 2 and "feedback=" in res.stdout


def test_refine_prompt_to_an_llm_carries_code_evidence_and_feedback(trained_run: Path) -> None:
    new_code = "```python\ndef compute_dense_reward(self, action):\n    return self.hopper.top.velocity_x, {'forward': self.hopper.top.velocity_x}\n```"
    with FakeLLMServer(reply(new_code)) as server:
        res = run("refine", f"run={trained_run}", "version=0", "llm=openai", f"llm.base_url={server.base_url}",
                  "llm.model=fake", "llm.max_retries=0", "feedback=the hopper falls forward after a few hops", cwd=trained_run)  # fmt: skip
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        messages = server.chat_bodies[0]["messages"]
    assert messages[-2]["role"] == "assistant" and '"progress"' in messages[-2]["content"]
    assert "the hopper falls forward after a few hops" in messages[-1]["content"]
    assert (
        "task success rate" in messages[-1]["content"]
        and "reward component `progress`" in messages[-1]["content"]
    )


@pytest.mark.slow  # a fourth refinement (the lineage: test_refine_command_builds_a_trained_lineage)
def test_feedback_text_is_literal_and_old_run_configs_still_load(trained_run: Path) -> None:
    """Regressions: feedback "${oc.env:HOME}" was resolved to the home folder; a run recorded
    before a config field existed could not be refined ("Missing key ...")."""
    import yaml

    config = trained_run / "config.yaml"
    saved = yaml.safe_load(config.read_text())
    del saved["llm"]["price_input_per_mtok"]
    config.write_text(yaml.safe_dump(saved))
    sign(config)  # the user's own run, as recorded by an older rewardlab (then trusted)
    res = run(
        "refine",
        f"run={trained_run}",
        "version=0",
        "feedback=${oc.env:HOME} is not a reward; more speed",
        cwd=trained_run,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    newest = max((p for p in (trained_run / "rewards").glob("v*")), key=lambda p: int(p.name[1:]))
    feedback = json.loads((newest / "feedback.json").read_text())["feedback"]
    assert feedback == ["${oc.env:HOME} is not a reward; more speed"]


def test_ignores_object_tag_strengthens_reach_and_grasp_on_metaworld() -> None:
    previous = offline_source("metaworld/drawer_open")
    before = {t.name: t.weight for t in parse_terms(previous) or []}
    assert "reach" in before
    refined = offline_source(
        "metaworld/drawer_open", previous_source=previous, feedback=["ignores object"]
    )
    after = {t.name: t.weight for t in parse_terms(refined) or []}
    assert after["reach"] == 2 * before["reach"]
    if "grasp" in before:
        assert after["grasp"] == 2 * before["grasp"]
