"""The offline reward synthesizer: a deterministic, documented, non-LLM reward writer.

It is **not** a language model. It matches the instruction against a small set of behaviour
keywords (move forward/backward, flip, jump, lie down, stand up, wave a limb) and the card's
vocabulary (the robot's root part, its pitch hinge, limb joints named in the instruction),
then composes named reward terms from a fixed library:

============== ===================================================================
term           meaning
============== ===================================================================
progress       velocity along +x or -x (locomotion)
alive          constant bonus while the robot is in a healthy pose
upright        cos(pitch) for planar robots, the up-axis z component for 3D ones
height         closeness of the root height to a target height
rotation       pitch angular velocity in the flip direction (before the flip is done)
lift           upward velocity while rotating (height buys time to rotate)
landing        staged: after a full turn, being upright and high
stay           staying near the start position (in-place behaviours)
swing          angular speed of the named joint (waving)
steady         low root velocity (stay balanced while doing something else)
action         small quadratic action penalty
============== ===================================================================

Manipulation cards (a robot with an ``ee_position``, objects and a ``goal_position``, e.g.
MetaWorld's) get terms from a second library. The behaviour comes from the instruction (reach;
pick and place; tool use when the card uses two objects; open/close a joint; push, pull or
press), the axes of the motion from an axis the instruction or the card's summary names, the
sliding part (a window slides along x, a drawer along y, a handle is pressed along z), the
table plane for pushing or sweeping free objects, else 3D (:func:`motion_axes`):

============== ===================================================================
term           meaning
============== ===================================================================
reach          fingertips (0.045 m below ``ee_position``) close to where they must be:
               behind the object on the side away from the goal (push, pull, press),
               on the object (grasp), or at the goal (reach)
grasp          staged: close the gripper once the fingertips are at the object
lift           staged: raise the held object off the table
move           the object's distance to the goal: along the motion axis (push/pull
               along an axis, open/close a sliding joint), over the table (push,
               sweep) or in 3D (revolute joints, carried objects); staged on
               holding it for pick-and-place and tools
goal           staged bonus once the object is at the goal
release        staged: let go once the object rests on the other one (stacking)
action         small quadratic action penalty
============== ===================================================================

ManiSkill's Panda cards read positions from poses (``self.robot.ee_pose.p``, the tool centre
between the fingertips; ``self.cubeA.pose.p``), "held" is the simulator's own
``self.robot.check_grasp(obj, max_angle=30)``, and the goal may be a pose (``goal_pose.p``), a
height to lift by (``goal_height``: along z) or, without a goal attribute, the top of the
second object (stacking); see :func:`describe_scene`.

The result is source code of the same kind an LLM writes (``compute_dense_reward(self,
action)`` returning ``(reward, components)``), and it goes through the same checks. Runs record
``model = "rewardlab-offline-v1"`` so nobody mistakes it for an LLM.

Refinement (:func:`refine_terms`): given the previous version's program and feedback, it
re-weights, adds or drops named terms. It understands term names and a few synonyms
("speed" -> progress, "balance" -> upright, "energy" -> action ...), direction words ("more",
"increase", "reward" -> x2; "less", "reduce" -> x0.5; "drop", "remove" -> delete; "add" ->
add from the library) and structured tags (``too slow``, ``falls``, ``jerky``, ``drifts``,
``spins``, ``ignores object``: reach, grasp and move the object). Text in square brackets is
evidence for the reader (automatic feedback puts its measurements there) and is not parsed.
Anything else is reported as not understood; it never guesses beyond that.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from rewardlab.generators.base import GenerationRequest, Reply, extract_code
from rewardlab.generators.feedback_tags import phrase_edits
from rewardlab.tasks.cards import Card
from rewardlab.tasks.registry import TaskSpec

MODEL_NAME = "rewardlab-offline-v1"


@dataclass(frozen=True)
class Term:
    """One named reward term: ``weight * (expr)``."""

    name: str
    weight: float
    expr: str
    comment: str


@dataclass
class RewardPlan:
    """What the synthesizer decided: the behaviour, the variables read, the terms."""

    behaviour: str
    variables: dict[str, str] = field(default_factory=dict)
    """Local variable -> expression on ``self`` (read once per call)."""
    flags: dict[str, str] = field(default_factory=dict)
    """Boolean stage variables -> expression on the variables."""
    terms: list[Term] = field(default_factory=list)


@dataclass(frozen=True)
class Robot:
    """What the synthesizer needs to know about the card."""

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


_WORDS = re.compile(r"[a-z]+")


def _words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def classify(instruction: str) -> tuple[str, int]:
    """``(behaviour, direction)`` from the instruction's keywords.

    Example:
        >>> classify("Make the hopper do a back flip")
        ('flip', -1)
        >>> classify("run backward as fast as you can")
        ('locomotion', -1)
    """
    words = _words(instruction)
    text = " ".join(words)
    backward = any(w in words for w in ("back", "backward", "backwards", "reverse", "backflip"))
    if any(w in text for w in ("flip", "somersault")):
        return "flip", -1 if backward or "backflip" in text else 1
    if any(w in words for w in ("stand", "standing")) or "get up" in text:
        return "stand", 1
    if any(w in words for w in ("wave", "waving", "swing", "shake", "raise", "lift")):
        return "wave", 1
    if any(w in words for w in ("lie", "lay", "lying", "crouch", "sit", "down")):
        return "lie_down", 1
    if any(w in words for w in ("jump", "jumping", "leap", "bounce")) or "in place" in text:
        return "jump", 1
    if any(w in words for w in ("stand", "standing", "rise", "get", "upright", "balance")) and not any(
        w in words for w in ("forward", "walk", "run", "move")
    ):
        return "stand", 1
    return "locomotion", -1 if backward and "flip" not in text else 1


def _match_joint(robot: Robot, instruction: str) -> str:
    """The limb joint whose name shares most words with the instruction (hips first)."""
    words = set(_words(instruction))
    scored = [
        (len(words & set(j.split("_"))), j.endswith("leg_joint") or "shoulder" in j or "thigh" in j, j)
        for j in robot.joints
    ]
    return max(scored)[2] if scored else robot.joints[0]


def plan_reward(robot: Robot, instruction: str) -> RewardPlan:
    """Choose the behaviour and compose its terms (see the module docstring)."""
    behaviour, direction = classify(instruction)
    r, root = f"self.{robot.name}", f"self.{robot.name}.{robot.root}"
    v: dict[str, str] = {
        "x": f"{root}.position_x",
        "z": f"{root}.position_z",
        "vx": f"{root}.velocity_x",
        "vz": f"{root}.velocity_z",
    }
    if robot.pitch:
        v["pitch"] = f"{r}.{robot.pitch}.angle"
        v["spin"] = f"{r}.{robot.pitch}.angular_velocity"
        upright = "math.cos(pitch)"
    else:
        v["up"] = f"{root}.up_z"
        upright = "up"
    h0 = robot.height0 if robot.height0 > 0.3 else 0.6
    plan = RewardPlan(behaviour, v)
    terms = plan.terms
    if behaviour == "locomotion":
        sign = "" if direction > 0 else "-"
        terms += [
            Term("progress", 1.0, f"{sign}vx", f"velocity along {'+' if direction > 0 else '-'}x"),
            Term("alive", 1.0, "1.0", "bonus for every step the episode lasts"),
            Term("upright", 0.5, upright, "keep the torso upright"),
        ]
    elif behaviour == "flip" and robot.pitch:
        s = "-" if direction < 0 else ""
        plan.flags["flipped"] = f"{s}pitch >= 2.0 * math.pi"
        terms += [
            Term("rotation", 1.0, f"0.0 if flipped else min(max({s}spin, -2.0), 6.0)",
                 "spin in the flip direction until one full turn is done"),
            Term("lift", 0.3, "0.0 if flipped else min(max(vz, -1.0), 3.0)",
                 "jump: height gives time to rotate"),
            Term("landing", 2.0, f"(1.0 + math.cos(pitch) + min(z, {h0:.2f}) / {h0:.2f}) if flipped else 0.0",
                 "after the full turn: be upright and high (stage bonus)"),
            Term("steady", 0.05, "-abs(spin) if flipped else 0.0", "stop spinning after landing"),
        ]  # fmt: skip
    elif behaviour == "jump":
        terms += [
            Term("height", 2.0, f"max(z - {h0:.2f}, 0.0)", "rise above the standing height"),
            Term("lift", 0.5, "max(vz, 0.0)", "upward velocity"),
            Term("stay", 0.5, "-abs(x)", "stay where you started"),
            Term("upright", 1.0, upright, "keep the torso upright"),
        ]
    elif behaviour == "lie_down":
        target = 0.4 * h0
        terms += [
            Term("height", 2.0, f"-max(z - {target:.2f}, 0.0)", f"bring the torso down to {target:.2f} m"),
            Term("upright", 1.0, upright, "stay right side up"),
            Term("steady", 0.1, "-abs(vx) - abs(vz)", "settle down"),
        ]
    elif behaviour == "stand":
        target = max(robot.height0, 1.0) if not robot.planar else robot.height0
        terms += [
            Term("height", 2.0, f"min(z, {target:.2f}) / {target:.2f}", f"raise the torso to {target:.2f} m"),
            Term("upright", 1.0, upright, "keep the torso upright"),
            Term("lift", 0.2, "max(vz, 0.0)", "move up"),
        ]
    elif behaviour == "wave":
        joint = _match_joint(robot, instruction)
        v["swing_speed"] = f"{r}.{joint}.angular_velocity"
        terms += [
            Term("swing", 0.5, "min(abs(swing_speed), 5.0)", f"move {joint} back and forth"),
            Term("upright", 1.0, upright, "keep balance"),
            Term("steady", 0.2, "-abs(vx) - abs(vz)", "do not walk away"),
        ]
    else:  # flip asked of a robot without a pitch hinge: best effort on uprightness
        terms += [Term("upright", 1.0, upright, "keep the torso upright")]
    terms.append(Term("action", 0.001, "-float(action @ action)", "small action regularisation"))
    return plan


def render_plan(plan: RewardPlan, instruction: str) -> str:
    """Write the plan as a reward program (what an LLM would write)."""
    used = " ".join(t.expr for t in plan.terms) + " " + " ".join(plan.flags.values())
    for name, expr in reversed(plan.variables.items()):  # variables may read earlier ones
        if re.search(rf"\b{name}\b", used):
            used += " " + expr
    imports = [f"import {m}" for m, alias in (("math", "math."), ("numpy as np", "np.")) if alias in used]
    lines = [
        *(line for imp in imports for line in (imp, "")),
        "",
        "def compute_dense_reward(self, action):",
        f'    """{instruction.strip()}',
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


def term_library(robot: Robot, plan: RewardPlan) -> dict[str, Term]:
    """Terms that feedback may add to ``plan`` (they only use the plan's variables)."""
    upright = "math.cos(pitch)" if robot.pitch else "up"
    h0 = robot.height0 if robot.height0 > 0.3 else 0.6
    sign = "-" if classify_direction(plan) < 0 else ""
    library = [
        Term("progress", 1.0, f"{sign}vx", "velocity along the goal direction"),
        Term("alive", 1.0, "1.0", "bonus for every step the episode lasts"),
        Term("upright", 0.5, upright, "keep the torso upright"),
        Term("height", 1.0, f"min(z, {h0:.2f}) / {h0:.2f}", "keep the torso high"),
        Term("stay", 0.5, "-abs(x)", "stay where you started"),
        Term("steady", 0.1, "-abs(vx) - abs(vz)", "move calmly"),
        Term("action", 0.001, "-float(action @ action)", "small action regularisation"),
    ]
    return {t.name: t for t in library}


def classify_direction(plan: RewardPlan) -> int:
    progress = next((t for t in plan.terms if t.name == "progress"), None)
    return -1 if progress is not None and progress.expr.startswith("-") else 1


SYNONYMS: dict[str, tuple[str, ...]] = {
    "progress": ("progress", "speed", "velocity", "fast", "faster", "forward", "backward"),
    "alive": ("alive", "survive", "survival", "longer"),
    "upright": ("upright", "balance", "posture", "tilt", "tilting"),
    "height": ("height", "high", "higher", "low", "lower"),
    "action": ("action", "energy", "effort", "torque", "torques", "smooth", "smoother"),
    "stay": ("stay", "place", "drift", "drifting"),
    "steady": ("steady", "calm", "still", "spinning"),
    "landing": ("landing", "land", "lands"),
    "rotation": ("rotation", "rotate", "spin", "flip"),
    "lift": ("lift", "jump", "jumping"),
    "swing": ("swing", "wave", "waving"),
    "reach": ("reach", "approach", "touch"),
    "grasp": ("grasp", "grip", "grab", "hold"),
}
UP = {"more", "increase", "increased", "stronger", "emphasise", "emphasize", "boost", "reward", "up", "higher", "bigger"}
DOWN = {"less", "decrease", "reduce", "lower", "weaker", "down", "smaller", "too"}
DROP = {"drop", "remove", "delete", "without", "no"}
ADD = {"add", "include"}
TAGS: dict[str, list[tuple[str, str]]] = {
    "too slow": [("up", "progress")],
    "slow": [("up", "progress")],
    "falls": [("add", "alive"), ("up", "upright")],
    "fell": [("add", "alive"), ("up", "upright")],
    "jerky": [("up", "action")],
    "shaky": [("up", "action")],
    "drifts": [("add", "stay")],
    "spins": [("add", "steady")],
    "ignores object": [("up", "reach"), ("up", "grasp"), ("up", "move")],
    "ignores the object": [("up", "reach"), ("up", "grasp"), ("up", "move")],
}
TAGS.update({phrase: edits for phrase, edits in phrase_edits().items() if phrase not in TAGS})  # the review page's tags
EVIDENCE = re.compile(r"\[[^\]]*\]")
"""Text in square brackets: evidence shown to the reward writer, never read as an edit."""


def feedback_edits(feedback: list[str], names: set[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Turn feedback lines into ``(op, term)`` edits; also return the clauses not understood.

    Example:
        >>> feedback_edits(["more speed; drop the action penalty", "falls"], {"progress", "action"})
        ([('up', 'progress'), ('drop', 'action'), ('add', 'alive'), ('up', 'upright')], [])
    """
    edits: list[tuple[str, str]] = []
    unknown: list[str] = []
    for line in feedback:
        line = EVIDENCE.sub(" ", line)
        for clause in filter(None, (c.strip() for c in re.split(r"[.;,\n]| and | but ", line.lower()))):
            words = _words(clause)
            found: list[tuple[str, str]] = []
            for tag, tag_edits in TAGS.items():
                if re.search(rf"\b{tag}\b", clause):
                    found += tag_edits
                    clause = clause.replace(tag, " ")
                    words = _words(clause)
            mentioned = [n for n, syn in SYNONYMS.items() if n in words or any(w in syn for w in words)]
            mentioned += [n for n in names if n in words and n not in mentioned]
            for name in mentioned:
                if DROP & set(words):
                    op = "drop"
                elif ADD & set(words) and name not in names:
                    op = "add"
                elif DOWN & set(words) and not UP & set(words):
                    op = "down"
                else:
                    op = "up" if name in names else "add"
                found.append((op, name))
            if found:
                edits += [e for e in found if e not in edits]
            elif words:
                unknown.append(clause)
    return edits, unknown


def refine_terms(
    terms: list[Term], edits: list[tuple[str, str]], library: dict[str, Term]
) -> tuple[list[Term], list[str]]:
    """Apply ``edits`` to ``terms``; return the new terms and a log of what changed."""
    out = list(terms)
    log: list[str] = []
    for op, name in edits:
        index = next((i for i, t in enumerate(out) if t.name == name), None)
        if index is None:
            if op in ("add", "up") and name in library:
                at = next((i for i, t in enumerate(out) if t.name == "action"), len(out))
                out.insert(at, library[name])  # regularisation stays last
                log.append(f"added {name} (x{library[name].weight:g})")
            else:
                log.append(f"ignored {op} {name}: no such term")
            continue
        term = out[index]
        if op == "drop":
            out.pop(index)
            log.append(f"dropped {name}")
        elif op in ("up", "add"):
            out[index] = replace(term, weight=term.weight * 2)
            log.append(f"{name}: weight {term.weight:g} -> {term.weight * 2:g}")
        elif op == "down":
            out[index] = replace(term, weight=term.weight / 2)
            log.append(f"{name}: weight {term.weight:g} -> {term.weight / 2:g}")
    return out, log


def parse_terms(source: str) -> list[Term] | None:
    """Read ``components = {"name": w * (expr), ...}`` back from a program (``None`` if the
    program does not have that shape)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["components"]
            and isinstance(node.value, ast.Dict)
        ):
            terms: list[Term] = []
            for key, value in zip(node.value.keys, node.value.values, strict=True):
                if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                    return None
                if (
                    isinstance(value, ast.BinOp)
                    and isinstance(value.op, ast.Mult)
                    and isinstance(value.left, ast.Constant)
                    and isinstance(value.left.value, (int, float))
                ):
                    weight, expr = float(value.left.value), ast.unparse(value.right)
                else:
                    weight, expr = 1.0, ast.unparse(value)
                terms.append(Term(key.value, weight, expr, f"{key.value} (kept from the previous version)"))
            return terms
    return None


# --------------------------------------------------------------------------- manipulation

TIP_OFFSET = 0.045
"""The fingertips are this far below ``ee_position`` (MetaWorld's gripper always points down).

Distance terms are ``1 - tanh(5 d)``: MetaWorld's distances start at 0.1-0.35 m, where
``tanh(10 d)`` is already flat (a first SAC run on window-close barely learned to reach)."""

GRASP_WORDS = frozenset(
    ["pick", "grasp", "grab", "place", "lift", "carry", "insert", "dunk", "hammer", "unplug", "put", "hold"]
)
JOINT_WORDS = frozenset(["open", "close", "unlock", "lock", "turn", "rotate"])
PUSH_WORDS = frozenset(["press", "push", "pull", "slide", "sweep", "kick"])


@dataclass(frozen=True)
class Scene:
    """What the synthesizer needs from a manipulation card."""

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
    half = next((n for n, s in card.attributes.items() if "half_size" in n and s["type"] == "float"), None)
    goal, kind = None, "position"
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
            break
    if goal is None and len(used) >= 2 and half:
        goal, kind = f"{list(used)[1]}.{position_of(used[list(used)[1]])}", "on"
    if goal is None or not used:
        return None
    gripper = next((f for f in fields if "gripper" in f), None)
    words = " ".join(s.get("doc", "") for s in used.values())
    return Scene(
        card.robot, ee, gripper, tuple(used), goal, words, card.summary,
        position=position_of(next(iter(used.values()))) or "position", tip_offset=tip,
        grasp_check="check_grasp" if "check_grasp" in fields else None, goal_kind=kind, half_size=half,
    )  # fmt: skip


def classify_manipulation(instruction: str, scene: Scene) -> str:
    """The manipulation behaviour asked for.

    Example:
        >>> s = Scene("robot", "ee_position", "gripper_openness", ("obj1",), "goal_position", "the drawer handle")
        >>> [classify_manipulation(i, s) for i in ("Open a drawer by its handle.", "Press a handle down.",
        ...     "Pick up the puck and place it at the goal.", "Reach the goal position.")]
        ['open_close', 'push_pull', 'pick_place', 'reach']
    """
    words = set(_words(instruction))
    if words & {"reach", "touch"} and not words & (GRASP_WORDS | JOINT_WORDS | PUSH_WORDS):
        return "reach"
    if len(scene.objects) > 1 and scene.goal_kind != "on":
        return "tool"
    if words & GRASP_WORDS:
        return "pick_place"
    if words & JOINT_WORDS:
        return "open_close"
    return "push_pull"


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
    words = set(_words(f"{instruction} {scene.words}"))
    if "window" in words:
        return "x"
    if "drawer" in words:
        return "y"
    if "button" in words:
        return "z" if words & {"top", "topdown", "down"} else "y"
    if "handle" in words and words & {"press", "pull", "pressed", "pulled"}:
        return "z"
    if words & (PUSH_WORDS - {"press", "pull"}):
        return "xy"
    return "xyz"


def _distance_to_goal(v: dict[str, str], obj: str, axes: str) -> None:
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


def plan_manipulation(scene: Scene, instruction: str) -> RewardPlan:
    """Choose the manipulation behaviour and compose its terms (see the module docstring)."""
    behaviour = classify_manipulation(instruction, scene)
    axes = motion_axes(instruction, scene)
    r = f"self.{scene.robot}"
    goal = {
        "position": f"self.{scene.goal}",
        "height": f"np.array([0.0, 0.0, self.{scene.goal} + self.{scene.half_size}])",
        "on": f"self.{scene.goal} + np.array([0.0, 0.0, 2.0 * self.{scene.half_size}])",
    }[scene.goal_kind]
    v: dict[str, str] = {
        "ee": f"{r}.{scene.ee}",
        "goal": goal,
        "tip": f"ee - np.array([0.0, 0.0, {scene.tip_offset}])" if scene.tip_offset else "ee",
    }
    plan = RewardPlan(behaviour, v)
    terms = plan.terms
    obj = scene.objects[0]
    if behaviour == "reach":
        v["dist_goal"] = "float(np.linalg.norm(goal - tip))"
        terms += [
            Term("reach", 2.0, "1.0 - math.tanh(5.0 * dist_goal)", "bring the fingertips to the goal"),
            Term("goal", 1.0, "1.0 if dist_goal < 0.05 else 0.0", "staged bonus at the goal"),
        ]
    elif behaviour in ("pick_place", "tool"):
        v["obj"] = f"self.{obj}.{scene.position}"
        target = "obj"
        if behaviour == "tool":  # grasp the tool (obj1), bring the other object to the goal
            v["target"] = f"self.{scene.objects[1]}.{scene.position}"
            target = "target"
        if scene.gripper:
            v["grip"] = f"{r}.{scene.gripper}"
        _distance_to_goal(v, target, "z" if scene.goal_kind == "height" else "xyz")
        v["dist_reach"] = "float(np.linalg.norm(obj - tip))"
        v["near"] = "dist_reach < 0.02"
        if scene.grasp_check:  # the simulator's own grasp test (both fingers press the object)
            v["held"] = f"{r}.{scene.grasp_check}(self.{obj}, max_angle=30)"
        else:
            v["held"] = "near and grip < 0.8" if scene.gripper else "near"
        if scene.goal_kind == "on":
            v["placed"] = "dist_goal < 0.01"
        terms += [
            Term("reach", 1.0, "1.0 - math.tanh(5.0 * dist_reach)", f"fingertips to {obj}"),
        ]
        if scene.gripper:
            terms.append(Term("grasp", 0.5, "(1.0 - grip) if near else 0.0", "close the gripper at the object"))
        carried = "held or placed" if scene.goal_kind == "on" else "held"
        terms += [
            Term("lift", 1.0, "min(max(obj[2] - 0.03, 0.0), 0.1) / 0.1 if held else 0.0",
                 "raise the held object off the table"),
            Term("move", 3.0, f"(1.0 - math.tanh(5.0 * dist_goal)) if {carried} else 0.0",
                 f"carry {'the tool so that ' + scene.objects[1] + ' reaches' if behaviour == 'tool' else obj + ' to'} the goal"),
            Term("goal", 2.0, "1.0 if gap <= 0.0 else 0.0" if scene.goal_kind == "height" else "1.0 if dist_goal < 0.05 else 0.0",
                 "staged bonus at the goal"),
        ]  # fmt: skip
        if scene.goal_kind == "on":
            terms.append(Term("release", 2.0, "(0.0 if held else 1.0) if placed else 0.0",
                              f"let go once {obj} rests on {scene.objects[1]}"))  # fmt: skip
    else:  # push_pull / open_close: fingertips behind the object, the object to the goal
        v["obj"] = f"self.{obj}.{scene.position}"
        _distance_to_goal(v, "obj", axes)
        if len(axes) == 1:
            offset = ", ".join("0.03 * np.sign(gap)" if a == axes else "0.0" for a in "xyz")
            v["behind"] = f"obj - np.array([{offset}])"
        else:
            v["behind"] = "obj - 0.03 * gap / (dist_goal + 1e-6)"
        v["dist_reach"] = "float(np.linalg.norm(behind - tip))"
        terms += [
            Term("reach", 1.0, "1.0 - math.tanh(5.0 * dist_reach)",
                 f"fingertips behind {obj}, on the side away from the goal"),
            Term("move", 3.0, "1.0 - math.tanh(5.0 * dist_goal)", f"{obj} toward the goal (along {axes})"),
            # sliding joints reach their goal exactly; arcs and free objects less precisely
            Term("goal", 2.0, f"1.0 if dist_goal < {0.02 if len(axes) == 1 else 0.05} else 0.0",
                 "staged bonus at the goal"),
        ]  # fmt: skip
    terms.append(Term("action", 0.01, "-float(action @ action)", "small action regularisation"))
    return plan


def manipulation_library(scene: Scene, plan: RewardPlan) -> dict[str, Term]:
    """Manipulation terms that feedback may add (those of the plan's behaviour)."""
    return {t.name: t for t in plan.terms}


class OfflineGenerator:
    """The deterministic synthesizer behind ``llm=offline`` (no network, no model)."""

    name = "offline"

    def propose(self, request: GenerationRequest) -> Reply:
        task: TaskSpec = request.task
        card = task.load_card()
        scene = describe_scene(card)
        library_of: Callable[[], dict[str, Term]]
        if scene is not None:  # manipulation
            plan = plan_manipulation(scene, request.instruction)
            library = manipulation_library(scene, plan)
            library_of = lambda: library  # noqa: E731
        else:
            robot = describe_robot(card, task.initial_state())
            plan = plan_reward(robot, request.instruction)
            library_of = lambda: term_library(robot, plan)  # noqa: E731
        notes = f"Behaviour recognised: {plan.behaviour}."
        if request.previous_source is not None and request.feedback:
            previous = parse_terms(request.previous_source)
            if previous is None:
                notes += " The previous program is not in term form; re-planned from the instruction."
            else:
                comments = {t.name: t.comment for t in [*library_of().values(), *plan.terms]}
                plan.terms = [replace(t, comment=comments.get(t.name, t.comment)) for t in previous]
            edits, unknown = feedback_edits(request.feedback, {t.name for t in plan.terms})
            plan.terms, log = refine_terms(plan.terms, edits, library_of())
            notes += f" Feedback applied: {'; '.join(log) or 'no recognised edit'}."
            if unknown:
                notes += f" Not understood: {'; '.join(unknown)}."
        source = render_plan(plan, request.instruction)
        text = (
            f"{notes} Terms: {', '.join(f'{t.name} (x{t.weight:g})' for t in plan.terms)}.\n\n"
            f"```python\n{source}```\n"
        )
        return Reply(text=text, model=MODEL_NAME, params={"behaviour": plan.behaviour})


def offline_reward(task: TaskSpec, instruction: str | None = None) -> str:
    """The program ``llm=offline`` writes for ``task`` (its own instruction by default).

    Example:
        >>> from rewardlab.tasks import get_task
        >>> "def compute_dense_reward" in offline_reward(get_task("metaworld/drawer_close"))
        True
    """
    reply = OfflineGenerator().propose(GenerationRequest(task=task, instruction=instruction or task.instruction, messages=[]))
    source = extract_code(reply.text)
    if source is None:  # the synthesizer always writes a code block; this would be a bug
        raise RuntimeError(f"offline synthesizer wrote no code for {task.name}:\n{reply.text}")
    return source
