"""The offline writer's term library: what it knows about a card and how a plan becomes code.

A plan (:class:`RewardPlan`) is the behaviour, the variables read once per call (``x =
self.hopper.top.position_x``), boolean stage flags and named terms ``weight * (expr)``;
:func:`render_plan` writes it as a program of the kind an LLM writes. :func:`describe_robot`
and :func:`describe_scene` read what the writer needs from a locomotion card (root part, pitch
hinge, limb joints, whether it moves in a plane) or a manipulation card (end-effector, gripper,
objects, goal); :func:`motion_axes` says along which axes an object's distance to the goal is
measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rewardlab.tasks.cards import Card

MODEL_NAME = "rewardlab-offline-v1"

TIP_OFFSET = 0.045
"""The fingertips are this far below ``ee_position`` (MetaWorld's gripper always points down).

Distance terms are ``1 - tanh(5 d)``: MetaWorld's distances start at 0.1-0.35 m, where
``tanh(10 d)`` is already flat (a first SAC run on window-close barely learned to reach)."""


@dataclass(frozen=True)
class Term:
    """One named reward term: ``weight * (expr)``.

    ``sense`` says in a few words what the term pays for, with its sign where it has one
    (``"+x"``, ``"-x"``, ``"-pitch"``, ``"toward goal"``): what the writer reports and what
    tests check.
    """

    name: str
    weight: float
    expr: str
    comment: str
    sense: str = ""


@dataclass
class RewardPlan:
    """What the writer decided: the behaviour, the variables read, the terms."""

    behaviour: str
    variables: dict[str, str] = field(default_factory=dict)
    """Local variable -> expression on ``self`` (read once per call)."""
    flags: dict[str, str] = field(default_factory=dict)
    """Boolean stage variables -> expression on the variables."""
    terms: list[Term] = field(default_factory=list)
    extras: dict[str, Term] = field(default_factory=dict)
    """Terms feedback may add that the plan does not have (they use only its variables)."""


# --------------------------------------------------------------------------- locomotion cards


@dataclass(frozen=True)
class Robot:
    """What the writer needs to know about a locomotion card."""

    name: str
    root: str
    planar: bool
    pitch: str | None
    joints: tuple[str, ...]
    height0: float


def describe_robot(card: Card, initial: dict[str, float]) -> Robot:
    """Find the root part, pitch hinge and limb joints of a card."""
    root = next(n for n, s in card.parts.items() if s["type"] in ("SlideJoint", "FreeJoint"))
    planar = card.parts[root]["type"] == "SlideJoint"
    pitch = "top_joint" if "top_joint" in card.parts else None
    joints = tuple(n for n, s in card.parts.items() if s["type"] == "HingeJoint" and n != pitch)
    height0 = initial.get(f"self.{card.robot}.{root}.position_z", 1.0)
    return Robot(card.robot, root, planar, pitch, joints, height0)


def locomotion_variables(robot: Robot) -> dict[str, str]:
    """The variables every locomotion plan may read (only those used are written)."""
    r, root = f"self.{robot.name}", f"self.{robot.name}.{robot.root}"
    v = {
        "x": f"{root}.position_x",
        "z": f"{root}.position_z",
        "vx": f"{root}.velocity_x",
        "vz": f"{root}.velocity_z",
    }
    if not robot.planar:
        v["y"] = f"{root}.position_y"
        v["vy"] = f"{root}.velocity_y"
    if robot.pitch:
        v["pitch"] = f"{r}.{robot.pitch}.angle"
        v["spin"] = f"{r}.{robot.pitch}.angular_velocity"
    else:
        v["up"] = f"{root}.up_z"
    return v


def upright_expr(robot: Robot) -> str:
    return "math.cos(pitch)" if robot.pitch else "up"


def standing_height(robot: Robot) -> float:
    return robot.height0 if robot.height0 > 0.3 else 0.6


def locomotion_library(robot: Robot, direction: str = "+x") -> dict[str, Term]:
    """Terms that feedback may add to a locomotion plan (they use only its variables)."""
    axis, sign = direction[1], "-" if direction.startswith("-") else ""
    h0 = standing_height(robot)
    speed = "abs(vx) + abs(vz)" if robot.planar else "abs(vx) + abs(vy) + abs(vz)"
    library = [
        Term("progress", 1.0, f"{sign}v{axis}", f"velocity along {direction}", direction),
        Term("alive", 1.0, "1.0", "bonus for every step the episode lasts", "+"),
        Term("upright", 0.5, upright_expr(robot), "keep the torso upright", "+upright"),
        Term("height", 1.0, f"min(z, {h0:.2f}) / {h0:.2f}", "keep the torso high", "+z"),
        Term(
            "stay",
            0.5,
            "-abs(x)" if robot.planar else "-abs(x) - abs(y)",
            "stay where you started",
            "near start",
        ),
        Term("steady", 0.1, f"-({speed})", "move calmly", "-speed"),
        Term("action", 0.001, "-float(action @ action)", "small action regularisation", "-action"),
    ]
    if robot.pitch:  # the card's pitch grows positive when the torso tips forward
        library += [
            Term("tilt_forward", 1.0, "-max(pitch, 0.0)", "do not tip forward", "-forward tilt"),
            Term("tilt_back", 1.0, "-max(-pitch, 0.0)", "do not tip backward", "-backward tilt"),
        ]
    return {t.name: t for t in library}


# --------------------------------------------------------------------------- manipulation cards


@dataclass(frozen=True)
class Scene:
    """What the writer needs from a manipulation card."""

    robot: str
    ee: str
    gripper: str | None
    objects: tuple[str, ...]
    """The card's object attributes the task uses (``obj1``, then ``obj2`` if used)."""
    goal: str
    words: str
    """The objects' descriptions (their names: "the drawer handle")."""
    summary: str = ""
    """The card's summary (it may name the axis a part moves along)."""
    position: str = "position"
    """How an object's position is read: ``position`` (MetaWorld) or ``pose.p`` (pose objects)."""
    tip_offset: float = TIP_OFFSET
    """How far below the end-effector reading the fingertips are (0 for a tool-centre pose)."""
    grasp_check: str | None = None
    """The robot's grasp predicate (``check_grasp``): "held" is what it says, not a heuristic."""
    goal_kind: str = "position"
    """``position``: ``goal`` is where the object must go; ``height``: ``goal`` is a height to lift
    it by (its centre then ``half_size`` higher); ``on``: the object goes on top of ``goal``
    (the position of the second object)."""
    half_size: str | None = None
    """The card's object half-size attribute (``cube_half_size``), for ``height`` and ``on``."""
    object_docs: tuple[str, ...] = ()
    """Each object's description, in the order of ``objects``."""
    goal_doc: str = ""
    """What the card says the goal is ("where the drawer handle is when the drawer is open")."""


def describe_scene(card: Card) -> Scene | None:
    """The manipulation view of a card, or ``None`` for a card without an end-effector,
    objects and a goal (a locomotion card).

    Objects are the attributes of a documented type with a ``position`` (MetaWorld) or a
    ``pose`` (ManiSkill) field, except those documented as "not used" or marked ``fixed: true``
    (a fixture such as the box of a peg insertion). The goal is the first ``goal`` attribute: a
    position, a pose (its ``p``), or a height to lift by; without one, two objects mean placing
    the first on the second.
    """
    fields = card.robot_fields()
    ee = next((f for f in fields if f.startswith("ee_") or f.endswith("_position")), None)
    if ee is None:
        return None
    tip = TIP_OFFSET
    if "p" in (card.type_docs(card.field_type(fields[ee]) or "") or {}):  # a pose: the tool centre
        ee, tip = f"{ee}.p", 0.0

    def position_of(spec: dict[str, Any]) -> str | None:
        docs = card.type_docs(spec["type"]) or {}
        return "position" if "position" in docs else "pose.p" if "pose" in docs else None

    used = {
        n: s for n, s in card.attributes.items()
        if "goal" not in n and position_of(s) and "not used" not in s.get("doc", "") and not s.get("fixed")
    }  # fmt: skip
    half = next(
        (n for n, s in card.attributes.items() if "half_size" in n and s["type"] == "float"), None
    )
    goal, kind, goal_doc = None, "position", ""
    for name, spec in card.attributes.items():
        if "goal" not in name:
            continue
        if spec["type"].startswith("np.ndarray"):
            goal = name
        elif "p" in (card.type_docs(spec["type"]) or {}):
            goal = f"{name}.p"
        elif spec["type"] == "float" and "height" in name and half:
            goal, kind = name, "height"
        if goal:
            goal_doc = str(spec.get("doc", ""))
            break
    if goal is None and len(used) >= 2 and half:
        goal, kind = f"{list(used)[1]}.{position_of(used[list(used)[1]])}", "on"
        goal_doc = f"on top of {used[list(used)[1]].get('doc', list(used)[1])}"
    if goal is None or not used:
        return None
    gripper = next((f for f in fields if "gripper" in f), None)
    docs = tuple(str(s.get("doc", "")) for s in used.values())
    return Scene(
        card.robot, ee, gripper, tuple(used), goal, " ".join(docs), card.summary,
        position=position_of(next(iter(used.values()))) or "position", tip_offset=tip,
        grasp_check="check_grasp" if "check_grasp" in fields else None, goal_kind=kind, half_size=half,
        object_docs=docs, goal_doc=goal_doc,
    )  # fmt: skip


_WORDS = re.compile(r"[a-z]+")


def motion_axes(instruction: str, scene: Scene) -> str:
    """The axes along which the object's distance to the goal is measured: ``"x"``, ``"y"``
    or ``"z"`` (a sliding part), ``"xy"`` (pushed over the table) or ``"xyz"``.

    In order: an axis the instruction names ("along the y axis"); one the card's summary names
    ("slides along the x axis", "(-z)"); a sliding part named by the instruction or the objects
    (a window slides along x, a drawer along y, a button is pressed along y, or z from the top,
    a handle is pressed or pulled along z); the table plane for pushing, sweeping, sliding or
    kicking a free object; else 3D (revolute joints, lifting).

    Example:
        >>> s = Scene("robot", "ee_position", None, ("obj1",), "goal_position", "the puck", "")
        >>> motion_axes("Press a button along the y axis.", s), motion_axes("Sweep the puck into the hole.", s)
        ('y', 'xy')
    """
    axis_words = r"\b(?:along|toward|towards)\s+(?:the\s+)?[+-]?([xyz])\b|\(\s*[+-]?([xyz])\s*\)|\b([xyz])[ -]?(?:axis|coordinate)"
    for text in (instruction.lower(), scene.summary.lower()):
        found = re.search(axis_words, text)
        if found:
            return next(g for g in found.groups() if g)
    words = set(_WORDS.findall(f"{instruction} {scene.words}".lower()))
    if "window" in words:
        return "x"
    if "drawer" in words:
        return "y"
    if "button" in words:
        return "z" if words & {"top", "topdown", "down"} else "y"
    if "handle" in words and words & {"press", "pull", "pressed", "pulled"}:
        return "z"
    if words & {"push", "slide", "sweep", "kick", "shove", "nudge"}:
        return "xy"
    return "xyz"


def distance_to_goal(v: dict[str, str], obj: str, axes: str) -> None:
    """Add ``gap`` (goal - object) and ``dist_goal`` (along ``axes``) to ``v``."""
    if len(axes) == 1:
        i = "xyz".index(axes)
        v["gap"] = f"float(goal[{i}] - {obj}[{i}])"
        v["dist_goal"] = "abs(gap)"
    elif axes == "xy":
        v["gap"] = f"(goal - {obj}) * np.array([1.0, 1.0, 0.0])"
        v["dist_goal"] = "float(np.linalg.norm(gap))"
    else:
        v["gap"] = f"goal - {obj}"
        v["dist_goal"] = "float(np.linalg.norm(gap))"


# --------------------------------------------------------------------------- rendering


def render_plan(plan: RewardPlan, instruction: str) -> str:
    """Write the plan as a reward program (what an LLM would write)."""
    used = " ".join(t.expr for t in plan.terms) + " " + " ".join(plan.flags.values())
    for name, expr in reversed(plan.variables.items()):  # variables may read earlier ones
        if re.search(rf"\b{name}\b", used):
            used += " " + expr
    imports = [
        f"import {m}" for m, alias in (("math", "math."), ("numpy as np", "np.")) if alias in used
    ]
    lines = [
        *(line for imp in imports for line in (imp, "")),
        "",
        "def compute_dense_reward(self, action):",
        f'    """{" ".join(instruction.split()).replace(chr(92), "/").replace(chr(34) * 3, chr(39) * 3)}',
        "",
        f"    Written by rewardlab's offline synthesizer ({MODEL_NAME}, a deterministic term",
        f"    library, not an LLM). Behaviour: {plan.behaviour}.",
        '    """',
    ]
    for name, expr in plan.variables.items():
        if re.search(rf"\b{name}\b", used):
            lines.append(f"    {name} = {expr}")
    for name, expr in plan.flags.items():
        lines.append(f"    {name} = {expr}")
    lines.append("    components = {")
    for t in plan.terms:
        lines.append(f"        # {t.comment}")
        lines.append(f'        "{t.name}": {float(t.weight)!r} * ({t.expr}),')
    lines += ["    }", "    return sum(components.values()), components", ""]
    return "\n".join(lines)
