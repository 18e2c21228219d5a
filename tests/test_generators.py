"""Offline synthesizer, code extraction, prompts, and the check-and-fix loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rewardlab.config import CheckConfig
from rewardlab.generators.base import GenerationRequest, GeneratorError, Reply, extract_code
from rewardlab.generators.loop import generate_reward
from rewardlab.generators.offline import OfflineGenerator, understand
from rewardlab.generators.prompts import generation_messages
from rewardlab.tasks import get_task, list_tasks
from rewardlab.wrappers import compile_for_task, make_env

FAST_CHECK = CheckConfig(steps=30, timeout_s=60)


@pytest.mark.parametrize(
    ("task", "instruction", "behaviour", "direction"),
    [
        ("mujoco/hopper_backflip", "Make the hopper do a back flip.", "flip", "-x"),
        ("mujoco/hopper_frontflip", "do a front flip", "flip", "+x"),
        (
            "mujoco/hopper_forward",
            "Make the hopper move forward as fast as possible.",
            "locomotion",
            "+x",
        ),
        ("mujoco/hopper_forward", "run backwards", "locomotion", "-x"),
        ("mujoco/hopper_jump", "Make the hopper jump in place.", "jump", "in-place"),
        ("mujoco/ant_lie_down", "Make the ant lie down on the ground.", "lie_down", None),
        (
            "mujoco/humanoid_standup",
            "Make the humanoid stand up from lying on the ground.",
            "stand",
            None,
        ),
        ("mujoco/ant_wave_leg", "wave the front right leg", "wave", None),
    ],
)
def test_understand(task: str, instruction: str, behaviour: str, direction: str | None) -> None:
    u = understand(get_task(task), instruction)
    assert (u.behaviour, u.direction, u.refusal) == (behaviour, direction, None)


METAWORLD_IN_DEFAULT_SUITE = {
    f"metaworld/{short}" for short in ("window_open", "window_close", "door_close", "drawer_open",
    "drawer_close", "door_unlock", "sweep_into", "button_press", "handle_press", "handle_press_side")
}  # fmt: skip
"""Text2Reward's ten MetaWorld tasks run in the default suite with every MuJoCo task; the other 40
MetaWorld tasks are marked slow (every task: ``pytest -m 'slow or not slow' -k
offline_program_for_every_task tests/test_generators.py``)."""


# ManiSkill tasks (they need a Vulkan device): tests/test_maniskill.py
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(t.name, marks=pytest.mark.slow)
        if t.benchmark == "metaworld" and t.name not in METAWORLD_IN_DEFAULT_SUITE
        else t.name
        for t in list_tasks()
        if t.benchmark != "maniskill"
    ],
)
def test_offline_program_for_every_task_compiles_and_runs(name: str) -> None:
    task = get_task(name)
    reply = OfflineGenerator().propose(
        GenerationRequest(task=task, instruction=task.instruction, messages=[])
    )
    source = extract_code(reply.text)
    assert source is not None and "not an LLM" in source
    program = compile_for_task(source, task)
    env = make_env(task, program)
    env.reset(seed=0)
    for _ in range(20):
        _, reward, *_, info = env.step(env.action_space.sample())
        assert np.isfinite(reward)
        assert "reward/action" in info and "reward/error" not in info
    env.close()


def test_offline_wave_targets_the_named_joint() -> None:
    task = get_task("mujoco/ant_wave_leg")
    reply = OfflineGenerator().propose(
        GenerationRequest(task=task, instruction="wave the back left leg", messages=[])
    )
    assert "self.ant.back_left_leg_joint.angular_velocity" in reply.text


def test_extract_code_variants() -> None:
    fn = "def compute_dense_reward(self, action):\n    return 1.0\n"
    assert extract_code(f"```python\n{fn}```") == fn
    assert extract_code(f"```\nx = 1\n```\nthen\n```py\n{fn}```") == fn, (
        "the block that defines the entry wins"
    )
    assert extract_code(
        f"```python\n{fn}```\nrevised:\n```python\n{fn.replace('1.0', '2.0')}```"
    ).endswith("2.0\n")
    assert extract_code(f"import math\n{fn}") == f"import math\n{fn}"
    assert extract_code("no code here") is None


def test_prompt_contains_card_instruction_and_format() -> None:
    task = get_task("mujoco/ant_forward")
    messages = generation_messages(task, "walk in a circle")
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    for needle in ("self.ant : AntRobot", "self.torso : FreeJoint", "self.front_left_leg_joint : HingeJoint",
                   "walk in a circle", "def compute_dense_reward(self, action)", "self.ant.torso.position_z = 0.75"):  # fmt: skip
        assert needle in user


class Scripted:
    """A generator back-end that answers from a list (a stand-in for a person typing)."""

    name = "scripted"

    def __init__(self, *answers: str | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[GenerationRequest] = []

    def propose(self, request: GenerationRequest) -> Reply:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return Reply(text=answer, model="scripted")


GOOD = (
    "```python\ndef compute_dense_reward(self, action):\n    return self.hopper.top.velocity_x\n```"
)


def test_loop_feeds_findings_back_until_accepted(tmp_path: Path) -> None:
    bad = (
        "```python\ndef compute_dense_reward(self, action):\n    return self.hopper.top.speed\n```"
    )
    gen = Scripted(bad, GOOD)
    result = generate_reward(
        get_task("mujoco/hopper_forward"),
        "go",
        gen,
        fix_attempts=2,
        check=FAST_CHECK,
        out_dir=tmp_path,
    )
    assert result.ok and len(result.attempts) == 2
    assert any("self.hopper.top.speed" in f for f in gen.requests[1].findings)
    assert "self.hopper.top.speed" in gen.requests[1].messages[-1]["content"]
    assert json.loads((tmp_path / "llm" / "attempt_0.json").read_text())["findings"]
    assert json.loads((tmp_path / "llm" / "attempt_1.json").read_text())["check"]["ok"]


def test_loop_gives_up_after_fix_attempts_and_on_backend_failure(tmp_path: Path) -> None:
    gen = Scripted("no code", "still no code")
    result = generate_reward(
        get_task("mujoco/hopper_forward"),
        "go",
        gen,
        fix_attempts=1,
        check=FAST_CHECK,
        out_dir=tmp_path,
    )
    assert not result.ok and len(result.attempts) == 2
    assert "no ```python code block" in result.failure_summary()

    down = Scripted(GeneratorError("HTTP 503 after 3 retries"))
    result = generate_reward(
        get_task("mujoco/hopper_forward"),
        "go",
        down,
        fix_attempts=3,
        check=FAST_CHECK,
        out_dir=tmp_path / "b",
    )
    assert not result.ok and "HTTP 503" in result.failure_summary()
    assert (tmp_path / "b" / "llm" / "attempt_0.json").exists()


def test_few_shot_retrieves_a_similar_other_task() -> None:
    from rewardlab.generators.fewshot import load_examples, most_similar
    from rewardlab.tasks.registry import TaskSpec

    assert {e.task for e in load_examples()} >= {"mujoco/hopper_forward", "mujoco/hopper_backflip"}
    frontflip = get_task("mujoco/hopper_frontflip")
    found = most_similar(frontflip, frontflip.instruction)
    assert found is not None and found[0].task == "mujoco/hopper_backflip"
    own = most_similar(get_task("mujoco/hopper_backflip"), "Make the hopper do a back flip.")
    assert own is not None and own[0].task != "mujoco/hopper_backflip", "never its own example"
    walker = most_similar(
        TaskSpec(name="mujoco/walker_backward", card="mujoco/walker2d"), "walk backward"
    )
    assert walker is not None and walker[0].task == "mujoco/walker_forward"


def test_few_shot_prompt_carries_the_example() -> None:
    task = get_task("mujoco/hopper_frontflip")
    zero = generation_messages(task, task.instruction)[1]["content"]
    few = generation_messages(task, task.instruction, few_shot=True)[1]["content"]
    assert "similar task" not in zero
    assert "mujoco/hopper_backflip" in few and "flipped = -pitch >= 2.0 * math.pi" in few


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).parents[1] / "envs").glob("*/examples/*.py")),
    ids=lambda p: p.stem,
)
def test_example_programs_pass_the_checks(path: Path) -> None:
    from rewardlab.generators.fewshot import load_examples
    from rewardlab.reward.check import check_program

    (example,) = [e for e in load_examples() if e.source == path.read_text()]
    report = check_program(get_task(example.task), example.source, steps=30)
    assert report.ok, report.summary()
