"""The calibration set: reward programs whose training outcome is measured, per task.

Every MetaWorld task of the set gets

* ``expert``: the benchmark's own dense reward (MetaWorld's pinned ``v2``; ``reward_file=env``);
* ``offline``: what ``llm=offline`` writes from the instruction and card (not an LLM);
* ``t2r_dist``: Text2Reward's zero-shot style: a weighted sum of negative distances
  (end-effector to object, object to goal) minus a small ``norm`` of the raw action;
* ``t2r_staged``: a staged reward (approach, then move the object, then a success bonus),
  with an action-norm penalty, as LLMs write them when asked for "stages";

and one of the following kinds (rotating over the tasks, so that each kind appears on one or two
tasks):

* ``wrong_sign``: the distances are *added* (a forgotten minus sign);
* ``ignores_object``: the hand is sent to the goal position; the object is never looked at;
* ``heavy_action``: ``t2r_dist`` with a large action penalty (0.5 per unit of action norm);
* ``sparse``: 1 when the object is within 5 cm of the goal, else 0;
* ``constant``: a constant;
* ``inverse``: ``1 / distance`` of the object to the goal (explodes as the object arrives);
* ``scaled``: ``t2r_dist`` multiplied by 10,000.

The MuJoCo tasks get ``expert`` (gymnasium's reward), ``offline``, a Text2Reward-style program
(``t2r``) and a ``constant`` one; the three added tasks (:data:`MUJOCO_LEARNABLE_TASKS`) also get
a ``wrong_sign`` one (the ``t2r`` program rewarding the opposite motion). The gate has no
demonstrations to rank on those tasks, so a wrong sign is invisible to it there: measured as a
false acceptance, not hidden.

None of these programs was written by an LLM: no LLM can be reached from this machine. They
were written by hand in the styles of Text2Reward's published MetaWorld programs (``np`` and
the ``(self, action, obs)`` signature, ``-w * np.linalg.norm(action)`` on the raw action, stage
thresholds, bonuses) and of the failure modes that reward-design papers report. The programs
import numpy themselves; the same programs without the import (how Text2Reward published them)
are in :func:`published_style` (they run once programs get ``np`` pre-bound).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

METAWORLD_TASKS: tuple[str, ...] = (
    "metaworld/drawer_close", "metaworld/button_press", "metaworld/button_press_topdown",
    "metaworld/handle_press", "metaworld/handle_press_side", "metaworld/door_close",
    "metaworld/window_close", "metaworld/window_open", "metaworld/reach",
    "metaworld/faucet_open", "metaworld/faucet_close", "metaworld/coffee_button",
)  # fmt: skip
"""Twelve MetaWorld tasks that PPO learns within ~100k steps with MetaWorld's own reward (the
ones calibration pilots and ``experiments/manipulation`` found fast, plus the press/close
family)."""

MUJOCO_TASKS: tuple[str, ...] = (
    "mujoco/hopper_backflip",
    "mujoco/ant_lie_down",
    "mujoco/halfcheetah_forward",
)
"""Three MuJoCo tasks (no scripted expert: the gate's ranking check does not apply). Nothing
learned on them at 65,536 steps, the benchmark's reward included (README)."""

MUJOCO_LEARNABLE_TASKS: tuple[str, ...] = (
    "mujoco/hopper_jump",
    "mujoco/hopper_forward",
    "mujoco/walker_forward",
)
"""Three more MuJoCo tasks, trained for twice the budget (``run.py --mujoco-learnable-steps``):
``hopper_jump`` is the one MuJoCo task whose metric a reward here is known to meet at ~100k steps
(the offline writer's, README "Tasks"); forward locomotion of the hopper and walker are the
gymnasium tasks PPO makes progress on first. Added so that the MuJoCo part has learners to
(falsely) reject."""

CORE_KINDS = ("expert", "offline", "t2r_dist", "t2r_staged")
BAD_KINDS = (
    "wrong_sign",
    "ignores_object",
    "heavy_action",
    "sparse",
    "constant",
    "inverse",
    "scaled",
)
MUJOCO_KINDS = ("expert", "offline", "t2r", "constant", "wrong_sign")


@dataclass(frozen=True)
class Program:
    """One member of the calibration set."""

    task: str
    kind: str
    source: str | None
    """The program (``None``: the benchmark's own reward)."""

    @property
    def name(self) -> str:
        """``<task>:<kind>``."""
        return f"{self.task}:{self.kind}"

    @property
    def digest(self) -> str:
        """Short content hash (run folders carry it, so an edited program trains afresh)."""
        return hashlib.sha256((self.source or "<expert>").encode()).hexdigest()[:8]


# --------------------------------------------------------------------------- MetaWorld


def _object_words(task: str) -> tuple[str, str]:
    """(what obj1 is, the verb of the task) for the comments an LLM would write."""
    words = {
        "drawer_close": ("drawer handle", "close the drawer"),
        "button_press": ("button", "press the button"),
        "button_press_topdown": ("button", "press the button down"),
        "handle_press": ("handle", "press the handle down"),
        "handle_press_side": ("handle", "press the handle down"),
        "door_close": ("door handle", "close the door"),
        "window_close": ("window handle", "close the window"),
        "window_open": ("window handle", "open the window"),
        "reach": ("goal", "reach the goal"),
        "faucet_open": ("faucet handle", "open the faucet"),
        "faucet_close": ("faucet handle", "close the faucet"),
        "coffee_button": ("coffee machine button", "press the button"),
    }
    return words[task.split("/", 1)[1]]


def _t2r_dist(task: str, action_w: float = 0.01) -> str:
    if task == "metaworld/reach":
        return f"""import numpy as np


def compute_dense_reward(self, action, obs) -> float:
    # Reward for moving the end-effector towards the goal position
    distance_to_goal = np.linalg.norm(self.robot.ee_position - self.goal_position)
    reward_reach = -distance_to_goal

    # Regularization on the action to keep the motion smooth
    action_penalty = -{action_w} * np.linalg.norm(action)

    reward = reward_reach + action_penalty
    return reward
"""
    obj, verb = _object_words(task)
    handle = obj.replace(" ", "_")
    return f"""import numpy as np


def compute_dense_reward(self, action, obs) -> float:
    # Weights of the reward terms
    w_reach = 1.0
    w_goal = 2.0
    w_action = {action_w}

    # 1. Move the end-effector close to the {obj}
    distance_ee_{handle} = np.linalg.norm(self.robot.ee_position - self.obj1.position)

    # 2. Move the {obj} to the goal position to {verb}
    distance_{handle}_goal = np.linalg.norm(self.obj1.position - self.goal_position)

    # 3. Penalize large actions for smooth motion
    action_cost = np.linalg.norm(action)

    reward = -w_reach * distance_ee_{handle} - w_goal * distance_{handle}_goal - w_action * action_cost
    return reward
"""


def _t2r_staged(task: str) -> str:
    if task == "metaworld/reach":
        return """import numpy as np


def compute_dense_reward(self, action, obs) -> float:
    ee = self.robot.ee_position
    goal = self.goal_position
    distance = np.linalg.norm(ee - goal)

    reward = 0.0
    # Stage 1: coarse approach
    if distance > 0.1:
        reward = -distance
    # Stage 2: fine approach, larger reward when close
    else:
        reward = 1.0 - 5.0 * distance
        # Stage 3: success bonus
        if distance < 0.05:
            reward += 5.0

    # Action regularization
    reward -= 0.05 * np.linalg.norm(action)
    return reward
"""
    obj, verb = _object_words(task)
    return f"""import numpy as np


def compute_dense_reward(self, action, obs) -> float:
    ee_pos = self.robot.ee_position
    obj_pos = self.obj1.position
    goal_pos = self.goal_position

    dist_ee_obj = np.linalg.norm(ee_pos - obj_pos)
    dist_obj_goal = np.linalg.norm(obj_pos - goal_pos)

    reward = 0.0
    # Stage 1: approach the {obj}
    if dist_ee_obj > 0.06:
        reward = -dist_ee_obj
    else:
        # Stage 2: {verb}: move the {obj} towards the goal
        reward = 1.0 - 2.0 * dist_obj_goal
        # Stage 3: bonus when the {obj} reaches the goal
        if dist_obj_goal < 0.05:
            reward += 5.0

    # Penalize large actions
    reward -= 0.05 * np.linalg.norm(action)
    return reward
"""


def _metaworld_bad(task: str, kind: str) -> str:
    # reach has no object to move: the hand is what must reach the goal
    target = "self.robot.ee_position" if task == "metaworld/reach" else "self.obj1.position"
    if kind == "wrong_sign" and task == "metaworld/reach":
        return """import numpy as np


def compute_dense_reward(self, action, obs) -> float:
    # Distance of the end-effector to the goal, with an action regularizer
    dist_goal = np.linalg.norm(self.robot.ee_position - self.goal_position)
    reward = 2.0 * dist_goal - 0.01 * np.linalg.norm(action)
    return reward
"""
    if kind == "wrong_sign":
        return f"""import numpy as np


def compute_dense_reward(self, action, obs) -> float:
    # Distance terms: the end-effector to the target, the target to the goal
    dist_reach = np.linalg.norm(self.robot.ee_position - {target})
    dist_goal = np.linalg.norm({target} - self.goal_position)
    # Reward: distances weighted, with an action regularizer
    reward = 1.0 * dist_reach + 2.0 * dist_goal - 0.01 * np.linalg.norm(action)
    return reward
"""
    if kind == "ignores_object":
        return """import numpy as np


def compute_dense_reward(self, action, obs) -> float:
    # Move the gripper to the goal position
    distance = np.linalg.norm(self.robot.ee_position - self.goal_position)
    reward = -distance
    # Bonus when the gripper is at the goal
    if distance < 0.05:
        reward += 1.0
    return reward
"""
    if kind == "heavy_action":
        return _t2r_dist(task, action_w=0.5)
    if kind == "sparse":
        return f"""import numpy as np


def compute_dense_reward(self, action, obs) -> float:
    # Success: the target is at the goal
    distance = np.linalg.norm({target} - self.goal_position)
    return 1.0 if distance < 0.05 else 0.0
"""
    if kind == "constant":
        return """def compute_dense_reward(self, action, obs) -> float:
    # A small alive bonus to keep the agent going
    reward = 0.1
    return reward
"""
    if kind == "inverse":
        return f"""import numpy as np


def compute_dense_reward(self, action, obs) -> float:
    # The closer the target is to the goal, the higher the reward
    distance = np.linalg.norm({target} - self.goal_position)
    reward = 1.0 / (distance + 1e-6)
    return reward
"""
    if kind == "scaled":
        return _t2r_dist(task).replace("    return reward\n", "    return 10000.0 * reward\n")
    raise KeyError(kind)


FROZEN = Path(__file__).resolve().parent / "offline_programs"
"""The offline synthesizer's programs as they were when the set was trained (the synthesizer
keeps improving; the measured outcomes belong to these programs)."""


def offline_program(task: str) -> str:
    """The frozen offline program of ``task`` (written from ``llm=offline`` the first time)."""
    path = FROZEN / f"{task.replace('/', '__')}.py"
    if not path.exists():
        from rewardlab.generators.offline import offline_reward
        from rewardlab.tasks import get_task

        FROZEN.mkdir(exist_ok=True)
        path.write_text(offline_reward(get_task(task)))
    return path.read_text()


def metaworld_programs(task: str, index: int) -> list[Program]:
    """The five programs of the ``index``-th MetaWorld task (the bad kind rotates)."""
    bad = (BAD_KINDS[index % len(BAD_KINDS)],)
    return [
        Program(task, "expert", None),
        Program(task, "offline", offline_program(task)),
        Program(task, "t2r_dist", _t2r_dist(task)),
        Program(task, "t2r_staged", _t2r_staged(task)),
        *(Program(task, kind, _metaworld_bad(task, kind)) for kind in bad),
    ]


# --------------------------------------------------------------------------- MuJoCo

_MUJOCO_T2R = {
    "mujoco/hopper_backflip": """import numpy as np


def compute_dense_reward(self, action) -> float:
    # Encourage backward rotation of the torso (negative angular velocity of the top joint)
    rotation_reward = -self.hopper.top_joint.angular_velocity
    # Encourage jumping: height of the torso
    height_reward = self.hopper.top.position_z
    # Penalize large actions
    action_penalty = 0.001 * np.sum(np.square(action))
    reward = 1.0 * rotation_reward + 2.0 * height_reward - action_penalty
    return reward
""",
    "mujoco/ant_lie_down": """import numpy as np


def compute_dense_reward(self, action) -> float:
    # Lower the torso towards the ground
    height_penalty = -self.ant.torso.position_z
    # Keep the torso still
    velocity_penalty = -np.linalg.norm([self.ant.torso.velocity_x, self.ant.torso.velocity_y, self.ant.torso.velocity_z])
    # Control cost
    action_penalty = -0.01 * np.linalg.norm(action)
    reward = 2.0 * height_penalty + 0.1 * velocity_penalty + action_penalty
    return reward
""",
    "mujoco/halfcheetah_forward": """import numpy as np


def compute_dense_reward(self, action) -> float:
    # Forward velocity of the torso
    forward_reward = self.cheetah.top.velocity_x
    # Control cost on the raw action
    control_cost = 0.1 * np.sum(np.square(action))
    reward = forward_reward - control_cost
    return reward
""",
    "mujoco/hopper_jump": """import numpy as np


def compute_dense_reward(self, action) -> float:
    # Reward jumping high: height of the torso above its standing height
    height_reward = self.hopper.top.position_z - 1.25
    # Reward upward velocity
    jump_reward = 0.5 * self.hopper.top.velocity_z
    # Stay in place and upright
    drift_penalty = -abs(self.hopper.top.position_x)
    tilt_penalty = -abs(self.hopper.top_joint.angle)
    # Penalize large actions
    action_penalty = -0.001 * np.sum(np.square(action))
    reward = 5.0 * height_reward + jump_reward + drift_penalty + tilt_penalty + action_penalty
    return reward
""",
    "mujoco/hopper_forward": """import numpy as np


def compute_dense_reward(self, action) -> float:
    # Forward velocity of the torso
    forward_reward = self.hopper.top.velocity_x
    # Stay healthy: upright and high enough
    healthy = 1.0 if (self.hopper.top.position_z > 0.7 and abs(self.hopper.top_joint.angle) < 0.2) else 0.0
    # Control cost on the raw action
    control_cost = 0.001 * np.sum(np.square(action))
    reward = forward_reward + healthy - control_cost
    return reward
""",
    "mujoco/walker_forward": """import numpy as np


def compute_dense_reward(self, action) -> float:
    # Forward velocity of the torso
    forward_reward = self.walker.top.velocity_x
    # Stay upright and high enough
    upright_reward = 1.0 if (0.8 < self.walker.top.position_z < 2.0 and abs(self.walker.top_joint.angle) < 1.0) else 0.0
    # Control cost on the raw action
    control_cost = 0.001 * np.sum(np.square(action))
    reward = forward_reward + upright_reward - control_cost
    return reward
""",
}

_MUJOCO_WRONG_SIGN = {
    # the t2r program with its main term's sign flipped (a forgotten minus sign the other way)
    "mujoco/hopper_jump": ("5.0 * height_reward", "-5.0 * height_reward"),
    "mujoco/hopper_forward": ("reward = forward_reward", "reward = -forward_reward"),
    "mujoco/walker_forward": ("reward = forward_reward", "reward = -forward_reward"),
}


def mujoco_programs(task: str) -> list[Program]:
    """The programs of a MuJoCo task (four, five on the learnable ones)."""
    constant = """def compute_dense_reward(self, action) -> float:
    # Alive bonus
    return 1.0
"""
    programs = [
        Program(task, "expert", None),
        Program(task, "offline", offline_program(task)),
        Program(task, "t2r", _MUJOCO_T2R[task]),
        Program(task, "constant", constant),
    ]
    if task in _MUJOCO_WRONG_SIGN:
        old, new = _MUJOCO_WRONG_SIGN[task]
        assert old in _MUJOCO_T2R[task], (task, old)
        programs.append(Program(task, "wrong_sign", _MUJOCO_T2R[task].replace(old, new, 1)))
    return programs


def calibration_set() -> list[Program]:
    """Every program of the calibration set, MetaWorld first."""
    out: list[Program] = []
    for i, task in enumerate(METAWORLD_TASKS):
        out.extend(metaworld_programs(task, i))
    for task in (*MUJOCO_TASKS, *MUJOCO_LEARNABLE_TASKS):
        out.extend(mujoco_programs(task))
    return out


def published_style(source: str) -> str:
    """``source`` as Text2Reward published such programs: no ``import numpy as np`` (their
    harness had ``np`` in scope)."""
    return source.replace("import numpy as np\n\n\n", "", 1)
