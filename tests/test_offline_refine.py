"""Offline refinement: common feedback phrases become the right edits, what is not understood
is listed, a uniform rescale is called out, and every review tag maps to an edit."""

from __future__ import annotations

import pytest

from rewardlab.generators.base import GenerationRequest, Reply, extract_code
from rewardlab.generators.feedback_tags import tags_for
from rewardlab.generators.offline import OfflineGenerator, parse_terms
from rewardlab.tasks import get_task


def refined(
    task_name: str, feedback: list[str], instruction: str | None = None
) -> tuple[Reply, dict[str, float], dict[str, float]]:
    task = get_task(task_name)
    text = instruction or task.instruction
    gen = OfflineGenerator()
    parent = extract_code(
        gen.propose(GenerationRequest(task=task, instruction=text, messages=[])).text
    )
    assert parent is not None
    reply = gen.propose(
        GenerationRequest(
            task=task, instruction=text, messages=[], previous_source=parent, feedback=feedback
        )
    )
    child = extract_code(reply.text)
    assert child is not None
    before = {t.name: t.weight for t in parse_terms(parent) or []}
    after = {t.name: t.weight for t in parse_terms(child) or []}
    return reply, before, after


def test_falls_forward_is_a_fall_not_a_speed_request() -> None:
    """The issue's case: "it falls forward; more upright" must not mean "more forward speed"."""
    reply, before, after = refined("mujoco/hopper_forward", ["it falls forward; more upright"])
    assert after["progress"] == before["progress"]
    assert (
        "tilt_forward" in after
        and after["upright"] > before["upright"]
        and after["alive"] > before["alive"]
    )
    assert "-max(pitch, 0.0)" in (extract_code(reply.text) or "")
    _, _, back = refined("mujoco/hopper_forward", ["falls backward"])
    assert "tilt_back" in back and "tilt_forward" not in back


def test_speed_feedback_moves_a_set_pace_and_scales_an_open_one() -> None:
    reply, _, _ = refined("mujoco/walker_forward", ["too slow"], instruction="walk forward slowly")
    source = extract_code(reply.text) or ""
    assert "abs(vx - 0.75) / 0.75" in source and "pace: set speed 0.5 -> 0.75 m/s" in reply.text
    reply, _, _ = refined("mujoco/walker_forward", ["too fast"], instruction="walk forward slowly")
    assert "0.333" in (extract_code(reply.text) or "")
    _, before, after = refined("mujoco/hopper_forward", ["too fast"])
    assert after["progress"] == before["progress"] / 2


def test_drifts_and_spins_add_terms() -> None:
    _, before, after = refined("mujoco/hopper_forward", ["it drifts", "spins"])
    assert set(after) - set(before) == {"stay", "steady"}


@pytest.mark.parametrize(
    ("phrase", "ups"),
    [("misses the object", {"reach", "grasp"}), ("drops it", {"grasp", "lift"}),
     ("pushes instead of grasping", {"grasp", "lift"}), ("ignores the object", {"reach", "grasp", "move"})],
)  # fmt: skip
def test_manipulation_phrases(phrase: str, ups: set[str]) -> None:
    _, before, after = refined("metaworld/pick_place", [phrase])
    changed = {n for n in after if after[n] != before.get(n)}
    assert changed == ups and all(after[n] == 2 * before[n] for n in ups)


def test_an_edit_the_reward_cannot_take_is_reported() -> None:
    reply, before, after = refined("metaworld/push", ["pushes instead of grasping"])
    assert after == before and "ignored up grasp: no such term" in reply.text


def test_not_understood_clauses_are_listed() -> None:
    reply, before, after = refined("mujoco/hopper_forward", ["more speed; the sky is blue"])
    assert after["progress"] == 2 * before["progress"]
    assert "Not understood: the sky is blue" in reply.text


def test_a_uniform_rescale_is_called_out() -> None:
    reply, before, after = refined(
        "mujoco/hopper_forward", ["more progress, more alive, more upright, more action"]
    )
    assert all(after[n] == 2 * before[n] for n in before)
    assert "uniform rescale" in reply.text and reply.params["warnings"]
    reply, *_ = refined("mujoco/hopper_forward", ["more speed"])
    assert not reply.params["warnings"]


@pytest.mark.parametrize("task_name", ["mujoco/hopper_forward", "metaworld/pick_place"])
def test_every_review_tag_maps_to_an_edit(task_name: str) -> None:
    """Each tag the review page offers for the task's family changes the reward."""
    tags = tags_for(task_name)
    assert tags
    for tag in tags:
        reply, before, after = refined(task_name, [tag.phrase])
        assert after != before, f"{tag.phrase!r} changed nothing on {task_name}: {reply.text[:300]}"
        assert "Not understood" not in reply.text
