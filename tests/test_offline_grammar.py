"""The offline writer's stated grammar: an instruction set over MuJoCo and MetaWorld tasks
(varied wording, opposites, modifiers, nonsense), each with its expected outcome: the behaviour
and every term with its sense (direction, sign, target), or a refusal; plus what must be
reported as not understood or not used. 100% must match, and no phrase may go unreported."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewardlab.config import CheckConfig
from rewardlab.generators.base import GenerationRequest, WriterRefusal
from rewardlab.generators.loop import generate_reward
from rewardlab.generators.offline import OfflineGenerator, plan_for
from rewardlab.generators.offline.grammar import tokenize
from rewardlab.tasks import get_task, list_tasks
from rewardlab.wrappers import compile_for_task

RUN = {"alive": "+", "upright": "+upright", "action": "-action"}
FLIP = {
    "lift": "+vz",
    "landing": "+upright after turn",
    "steady": "-spin after turn",
    "action": "-action",
}
SLIDE = {"reach": "hand behind obj1", "move": "toward goal", "goal": "at goal", "action": "-action"}
PICK = {"reach": "hand to obj1", "grasp": "close at object", "lift": "+z held", "move": "toward goal",
        "goal": "at goal", "action": "-action"}  # fmt: skip

# (task, instruction, expected): expected is ("refuse", words the refusal must contain) or
# (behaviour, {term: sense}, {reported phrase, ...}) where reported = not understood / not used.
CASES: list[tuple[str, str, tuple]] = [
    # the table
    ("mujoco/ant_forward", "walk in a circle counter-clockwise", ("refuse", "in a circle")),
    ("metaworld/drawer_open", "push the drawer closed", ("refuse", "card's goal is the opposite")),
    ("metaworld/pick_place", "put the puck on top of the goal and let go",
     ("pick_place", {**PICK, "release": "open at goal"}, set())),
    ("mujoco/humanoid_standup", "raise both arms", ("refuse", "raise")),
    ("mujoco/walker_forward", "stand on one leg", ("refuse", "on one leg")),
    ("metaworld/door_open", "open the door slowly without hitting it",
     ("open_close", {**SLIDE, "slow": "-hand speed", "gentle": "slow near obj1"}, set())),
    ("mujoco/hopper_forward", "hop backwards slowly", ("locomotion", {"pace": "-x@0.5", **RUN}, set())),
    ("mujoco/halfcheetah_forward", "do a front flip", ("flip", {"rotation": "+pitch", **FLIP}, set())),
    # locomotion: wording, directions, speeds
    ("mujoco/hopper_forward", "Make the hopper move forward as fast as possible.", ("locomotion", {"progress": "+x", **RUN}, set())),
    ("mujoco/hopper_forward", "run backwards", ("locomotion", {"progress": "-x", **RUN}, set())),
    ("mujoco/halfcheetah_backward", "run in reverse as fast as you can", ("locomotion", {"progress": "-x", **RUN}, set())),
    ("mujoco/walker_forward", "sprint ahead", ("locomotion", {"progress": "+x", **RUN}, set())),
    ("mujoco/walker_forward", "walk forward slowly", ("locomotion", {"pace": "+x@0.5", **RUN}, set())),
    ("mujoco/walker_forward", "walk forward at 1.5 m/s", ("locomotion", {"pace": "+x@1.5", **RUN}, set())),
    ("mujoco/ant_forward", "walk to the left", ("locomotion", {"progress": "+y", **RUN}, set())),
    ("mujoco/ant_forward", "move right quickly", ("locomotion", {"progress": "-y", **RUN}, set())),
    ("mujoco/hopper_forward", "jump forward", ("locomotion", {"progress": "+x", **RUN}, set())),
    ("mujoco/hopper_forward", "hop forward gracefully", ("locomotion", {"progress": "+x", **RUN}, {"gracefully"})),
    ("mujoco/humanoid_forward", "walk forward", ("locomotion", {"progress": "+x", **RUN}, set())),
    # flips, jumps, lying, standing, waving
    ("mujoco/hopper_backflip", "Make the hopper do a back flip.", ("flip", {"rotation": "-pitch", **FLIP}, set())),
    ("mujoco/hopper_frontflip", "somersault forwards", ("flip", {"rotation": "+pitch", **FLIP}, set())),
    ("mujoco/hopper_forward", "flip backwards", ("flip", {"rotation": "-pitch", **FLIP}, set())),
    ("mujoco/hopper_jump", "bounce up and down on the spot",
     ("jump", {"height": "+z", "lift": "+vz", "stay": "near start", "upright": "+upright", "action": "-action"}, set())),
    ("mujoco/ant_lie_down", "lay flat", ("lie_down", {"height": "-z", "upright": "+upright", "steady": "-speed", "action": "-action"}, set())),
    ("mujoco/humanoid_standup", "get up off the floor", ("stand", {"height": "+z", "upright": "+upright", "lift": "+vz", "action": "-action"}, set())),
    ("mujoco/humanoid_standup", "stand up slowly",
     ("stand", {"height": "+z", "upright": "+upright", "lift": "+vz", "pace": "-speed", "action": "-action"}, set())),
    ("mujoco/ant_wave_leg", "wave the back left leg",
     ("wave", {"swing": "back_left_leg_joint", "upright": "+upright", "steady": "-speed", "action": "-action"}, set())),
    ("mujoco/ant_wave_leg", "shake your front right leg",
     ("wave", {"swing": "front_right_leg_joint", "upright": "+upright", "steady": "-speed", "action": "-action"}, set())),
    ("mujoco/humanoid_forward", "wave the left arm",
     ("wave", {"swing": "left_shoulder1_joint", "upright": "+upright", "steady": "-speed", "action": "-action"}, set())),
    # locomotion refusals: impossible for the card, outside the grammar, nonsense
    ("mujoco/hopper_forward", "hop to the left", ("refuse", "x-z plane only")),
    ("mujoco/ant_forward", "do a back flip", ("refuse", "pitch angle")),
    ("mujoco/ant_forward", "wave an arm", ("refuse", "no arm")),
    ("mujoco/hopper_forward", "move forward and then do a flip", ("refuse", "more than one behaviour")),
    ("mujoco/hopper_forward", "don't move", ("refuse", "negation")),
    ("mujoco/hopper_forward", "make a sandwich", ("refuse", "no behaviour")),
    ("mujoco/hopper_forward", "asdf qwerty", ("refuse", "no behaviour")),
    ("mujoco/hopper_forward", "dance", ("refuse", "dance")),
    ("mujoco/hopper_forward", "run forward slowly as fast as possible", ("refuse", "contradicting speeds")),
    ("mujoco/hopper_forward", "walk sideways", ("refuse", "sideways")),
    # manipulation: verbs, opposites against the card's goal
    ("metaworld/drawer_open", "Open a drawer by its handle.", ("open_close", SLIDE, set())),
    ("metaworld/drawer_close", "close the drawer", ("open_close", SLIDE, set())),
    ("metaworld/drawer_close", "Slide the drawer shut gently", ("open_close", {**SLIDE, "slow": "-hand speed"}, set())),
    ("metaworld/drawer_close", "open the drawer", ("refuse", "card's goal is the opposite")),
    ("metaworld/door_open", "close the door", ("refuse", "card's goal is the opposite")),
    ("metaworld/window_open", "slide the window open", ("open_close", SLIDE, set())),
    ("metaworld/window_close", "shut the window", ("open_close", SLIDE, set())),
    ("metaworld/faucet_open", "turn the faucet on", ("open_close", SLIDE, set())),
    ("metaworld/faucet_open", "turn the faucet off", ("refuse", "card's goal is the opposite")),
    ("metaworld/door_unlock", "lock the door", ("refuse", "card's goal is the opposite")),
    ("metaworld/door_lock", "unlock the door", ("refuse", "card's goal is the opposite")),
    ("metaworld/handle_pull", "press the handle down", ("refuse", "card's goal is the opposite")),
    ("metaworld/handle_press", "push the handle down", ("push_pull", SLIDE, {"down"})),
    ("metaworld/peg_unplug_side", "insert the peg into the box", ("refuse", "card's goal is the opposite")),
    ("metaworld/peg_insert_side", "unplug the peg", ("refuse", "card's goal is the opposite")),
    ("metaworld/button_press", "press the button", ("push_pull", SLIDE, set())),
    # manipulation: pick and place, reach, modifiers
    ("metaworld/pick_place", "pick up the puck and place it at the goal", ("pick_place", PICK, set())),
    ("metaworld/pick_place", "grab the puck and put it at the target, then let go",
     ("pick_place", {**PICK, "release": "open at goal"}, set())),
    ("metaworld/pick_place", "move the puck to the goal slowly", ("pick_place", {**PICK, "slow": "-hand speed"}, set())),
    ("metaworld/drawer_open", "open the drawer quickly", ("open_close", {**SLIDE, "time": "-time"}, set())),
    ("metaworld/reach", "touch the goal", ("reach", {"reach": "hand to goal", "goal": "at goal", "action": "-action"}, set())),
    ("metaworld/reach", "reach the goal without touching the puck",
     ("reach", {"reach": "hand to goal", "goal": "at goal", "avoid": "away from obj1", "action": "-action"}, set())),
    ("metaworld/push", "push the puck to the goal without touching the wall", ("push_pull", SLIDE, {"wall"})),
    ("metaworld/push", "push the red puck to the goal", ("push_pull", SLIDE, {"red"})),
    ("metaworld/stick_push", "grasp the stick and push the thermos to the goal without touching the thermos",
     ("tool", {**PICK, "avoid": "away from obj2"}, set())),
    ("metaworld/coffee_push", "push the mug under the coffee machine", ("push_pull", SLIDE, set())),
    # manipulation refusals
    ("metaworld/drawer_open", "open the window", ("refuse", "no window")),
    ("metaworld/drawer_open", "open the drawer without touching the handle", ("refuse", "contradicts moving it")),
    ("metaworld/button_press", "don't press the button", ("refuse", "negation")),
    ("metaworld/pick_place", "sing a song", ("refuse", "no object verb")),
    ("metaworld/pick_place", "throw the puck", ("refuse", "throw")),
    ("metaworld/pick_place", "push the puck to the goal and let go",
     ("push_pull", SLIDE, {"let go"})),
]  # fmt: skip


def _outcome(task_name: str, instruction: str) -> tuple:
    u, plan, _ = plan_for(get_task(task_name), instruction)
    reported = {p.text for p in u.phrases if p.status in ("not understood", "not used")}
    if plan is None:
        return ("refuse", u.refusal or "", reported)
    return (plan.behaviour, {t.name: t.sense for t in plan.terms}, reported)


def test_the_instruction_set_gives_the_expected_outcomes() -> None:
    assert len(CASES) >= 40
    assert {t.split("/")[0] for t, _, _ in CASES} == {"mujoco", "metaworld"}
    wrong = []
    for task, instruction, expected in CASES:
        got = _outcome(task, instruction)
        if expected[0] == "refuse":
            ok = got[0] == "refuse" and expected[1] in got[1] and "llm=openai" in got[1]
        else:
            ok = got == expected
        if not ok:
            wrong.append(f"{task} {instruction!r}: expected {expected}, got {got}")
    refusals = sum(e[0] == "refuse" for _, _, e in CASES)
    assert not wrong, f"{len(wrong)} of {len(CASES)} wrong:\n" + "\n".join(wrong)
    assert 15 <= refusals <= len(CASES) - 25, "the set covers both outcomes"


@pytest.mark.parametrize("name", [t.name for t in list_tasks()])
def test_every_phrase_is_accounted_for_and_every_task_instruction_is_read(name: str) -> None:
    """No silent mismatch: the phrases cover the instruction word for word, each with a state;
    every registered task's own instruction is read with nothing left not understood."""
    task = get_task(name)
    for instruction in [task.instruction, *(i for t, i, _ in CASES if t == name)]:
        u, plan, _ = plan_for(task, instruction)
        assert " ".join(p.text for p in u.phrases).split() == tokenize(instruction), instruction
        assert {p.status for p in u.phrases} <= {"used", "filler", "not used", "not understood"}
    u, plan, _ = plan_for(task, task.instruction)
    assert plan is not None and not u.not_understood, (name, u.refusal, u.report())


def test_written_programs_pass_the_attribute_check() -> None:
    for task_name, instruction, expected in CASES:
        if expected[0] == "refuse":
            continue
        task = get_task(task_name)
        reply = OfflineGenerator().propose(
            GenerationRequest(task=task, instruction=instruction, messages=[])
        )
        assert "```python" in reply.text and reply.params["behaviour"] == expected[0]
        compile_for_task(reply.text.split("```python\n", 1)[1].split("```", 1)[0], task)


def test_a_backward_reward_pays_for_moving_backward() -> None:
    """The sign is what the program computes, not only what the writer says."""
    from types import SimpleNamespace as NS

    import numpy as np

    task = get_task("mujoco/hopper_forward")
    reply = OfflineGenerator().propose(
        GenerationRequest(task=task, instruction="hop backwards slowly", messages=[])
    )
    program = compile_for_task(reply.text.split("```python\n", 1)[1].split("```", 1)[0], task)

    def me(vx: float) -> NS:
        joint = NS(angle=0.0, angular_velocity=0.0)
        top = NS(position_x=0.0, position_z=1.2, velocity_x=vx, velocity_z=0.0)
        return NS(
            hopper=NS(
                top=top, top_joint=joint, thigh_joint=joint, leg_joint=joint, foot_joint=joint
            ),
            dt=0.008,
        )

    pace = {vx: program(me(vx), np.zeros(3))[1]["pace"] for vx in (-2.0, -0.5, 0.0, 0.5)}
    assert pace[-0.5] == max(pace.values()) and pace[0.5] < pace[-0.5] and pace[-2.0] < pace[-0.5]


def test_a_refusal_is_one_attempt_with_the_reason(tmp_path: Path) -> None:
    task = get_task("metaworld/drawer_open")
    with pytest.raises(WriterRefusal, match="llm=openai"):
        OfflineGenerator().propose(
            GenerationRequest(task=task, instruction="push the drawer closed", messages=[])
        )
    result = generate_reward(task, "push the drawer closed", OfflineGenerator(), fix_attempts=3,
                             check=CheckConfig(steps=10), out_dir=tmp_path)  # fmt: skip
    assert not result.ok and len(result.attempts) == 1
    assert (
        "offline writer refused" in result.failure_summary()
        and "opposite" in result.failure_summary()
    )


def test_docstring_examples_run() -> None:
    import doctest
    import importlib

    for name in ["generators.offline.grammar", "generators.offline.refine", "generators.offline.terms",
                 "generators.offline.writer", "tasks.success", "report"]:  # fmt: skip
        result = doctest.testmod(
            importlib.import_module(f"rewardlab.{name}"), optionflags=doctest.ELLIPSIS
        )
        assert result.failed == 0, name
