"""Environment cards: the compact representation an LLM reads and reward code may use.

A card (``envs/<benchmark>/<name>.yaml``) lists the robot's parts with their proxy type and
the simulator joint they read. :func:`render_card` turns it into the class-like text of
Text2Reward's prompts; :func:`rewardlab.tasks.proxies.build_env_proxy` turns the same card
into live objects, so the text and the executable representation cannot drift apart.

Beyond the robot's ``parts`` a card may declare (used by manipulation benchmarks such as
MetaWorld, where Text2Reward's representation has ``self.obj1`` and ``self.goal_position``):

- ``attributes``: extra top-level ``self.<name>`` attributes, each ``{type, doc}`` where the type
  is either a documented type (a :data:`TYPE_DOCS` key, rendered as a class with its fields) or
  a plain value type such as ``np.ndarray[(3,)]`` or ``float`` (a leaf);
- a ``robot_class`` that is itself a :data:`TYPE_DOCS` key: its fields are the robot's own
  attributes (``self.robot.ee_position``), listed before any parts;
- ``extends: <benchmark>/<card>``: start from another card's YAML and override it key by key
  (``attributes``, ``parts`` and ``types`` merge per entry), so per-task cards only state what
  differs;
- ``types``: documented types of this card (``{type: {field: doc}}``), taking precedence over
  :data:`TYPE_DOCS` entries of the same name (ManiSkill's ``RigidObject`` has other fields than
  MetaWorld's). A field whose doc starts with a documented type (``ObjectPose # ...``) is
  nested: ``self.cubeA.pose.p`` is a path; one whose doc starts with ``(`` is a method
  (``(obj: RigidObject, max_angle: float = 85) -> bool # ...``, rendered as ``def``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

# Documentation of each proxy type's fields, rendered into the card text.
TYPE_DOCS: dict[str, dict[str, str]] = {
    "SlideJoint": {
        "position_x": "float # x-coordinate position in the world frame, in meters",
        "position_z": "float # z-coordinate position in the world frame, in meters",
        "velocity_x": "float # x-coordinate velocity in the world frame, in meters per second",
        "velocity_z": "float # z-coordinate velocity in the world frame, in meters per second",
    },
    "Slider": {
        "position": "float # position along the slide joint's axis, in meters",
        "velocity": "float # velocity along the slide joint's axis, in meters per second",
    },
    "HingeJoint": {
        "angle": "float # joint angle value of the HingeJoint, in radians",
        "angular_velocity": "float # joint angular velocity of the HingeJoint, in radians per second",
    },
    "FreeJoint": {
        "position_x": "float # x-coordinate position in the world frame, in meters",
        "position_y": "float # y-coordinate position in the world frame, in meters",
        "position_z": "float # z-coordinate position in the world frame, in meters",
        "velocity_x": "float # x-coordinate velocity in the world frame, in meters per second",
        "velocity_y": "float # y-coordinate velocity in the world frame, in meters per second",
        "velocity_z": "float # z-coordinate velocity in the world frame, in meters per second",
        "angular_velocity_x": "float # angular velocity around the world x axis, in radians per second",
        "angular_velocity_y": "float # angular velocity around the world y axis, in radians per second",
        "angular_velocity_z": "float # angular velocity around the world z axis, in radians per second",
        "quaternion": "np.ndarray[(4,)] # orientation (w, x, y, z) in the world frame",
        "up_z": "float # z component of the body's up axis: 1 upright, 0 on its side, -1 upside down",
    },
    # MetaWorld (Text2Reward's names). The values are exactly what MetaWorld's observation holds.
    "SawyerRobot": {
        "ee_position": "np.ndarray[(3,)] # 3D position of the end-effector (the hand, obs[0:3]); the fingertips are about 0.045 m below it",
        "gripper_openness": "float # the distance between the two fingers, normalised to [0, 1]: 1 fully open, about 0.3 fully closed on nothing, in between while holding an object (obs[3])",
    },
    "RigidObject": {
        "position": "np.ndarray[(3,)] # 3D position of the object (the point MetaWorld tracks for it)",
        "quaternion": "np.ndarray[(4,)] # orientation quaternion of the object as MetaWorld reports it (zeros when the task does not track it)",
    },
}

VALUE_TYPES = ("float", "int", "bool", "np.ndarray")
"""Type names (prefixes) of plain-value ``attributes``: leaves that have no fields of their own."""


@dataclass(frozen=True)
class Card:
    """One environment card, as loaded from YAML."""

    name: str
    env_id: str
    robot: str
    robot_class: str
    summary: str
    action: str
    directions: str
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Extra top-level ``self.<name>`` attributes: ``{type, doc, ...}`` (see the module docs)."""
    types: dict[str, dict[str, str]] = field(default_factory=dict)
    """Documented types of this card, before :data:`TYPE_DOCS` (see the module docs)."""

    def type_docs(self, name: str) -> dict[str, str] | None:
        """The fields of documented type ``name`` (``None`` for a plain value type)."""
        return self.types.get(name, TYPE_DOCS.get(name))

    def field_type(self, doc: str) -> str | None:
        """The documented type a field's doc starts with (``ObjectPose # ...``), else ``None``."""
        head = doc.split("#", 1)[0].strip()
        return head if self.type_docs(head) is not None else None

    def robot_fields(self) -> dict[str, str]:
        """The robot's own value attributes (when ``robot_class`` is a documented type)."""
        return self.type_docs(self.robot_class) or {}

    def _walk(self) -> tuple[set[str], set[str]]:
        """``(paths, leaves)``: every readable path, and those holding plain data."""
        paths, leaves = {"self.dt", f"self.{self.robot}"}, {"self.dt"}

        def add(path: str, type_name: str | None, depth: int = 0) -> None:
            paths.add(path)
            fields = self.type_docs(type_name) if type_name and depth < 4 else None
            if fields is None:
                leaves.add(path)
                return
            for name, doc in fields.items():
                add(f"{path}.{name}", self.field_type(doc), depth + 1)

        for name, doc in self.robot_fields().items():
            add(f"self.{self.robot}.{name}", self.field_type(doc))
        for part, spec in self.parts.items():
            add(f"self.{self.robot}.{part}", spec["type"])
        for name, spec in self.attributes.items():
            add(f"self.{name}", spec["type"])
        return paths, leaves

    def attribute_paths(self) -> set[str]:
        """Every ``self.`` path a reward program may read, e.g. ``self.hopper.top.position_x``."""
        return self._walk()[0]

    def leaf_paths(self) -> set[str]:
        """The paths whose values are plain data (floats, arrays) or methods: what follows them
        (``.copy()``, ``.shape``) is not a card attribute."""
        return self._walk()[1]


@cache
def load_card(ref: str) -> Card:
    """Load a card by ``"<benchmark>/<name>"`` (e.g. ``"mujoco/hopper"``)."""
    raw = _load_raw(ref)
    known = TYPE_DOCS.keys() | (raw.get("types") or {}).keys()
    unknown = {spec["type"] for spec in raw.get("parts", {}).values()} - known
    unknown |= {
        spec.get("type", "?") for spec in raw.get("attributes", {}).values()
        if spec.get("type") not in known and not str(spec.get("type")).startswith(VALUE_TYPES)
    }  # fmt: skip
    if unknown:
        raise ValueError(f"card {ref}: unknown part types {sorted(unknown)}")
    return Card(**raw)


def card_file(ref: str) -> Path:
    """The file of card ``ref``: ``<benchmark>/<name>`` on the task path
    (:func:`rewardlab.tasks.registry.task_path`), or the path of a ``.yaml`` file."""
    from rewardlab.tasks.registry import task_path

    if ref.endswith((".yaml", ".yml")):
        candidates = [Path(ref).expanduser()]
    else:
        candidates = [folder / f"{ref}.yaml" for folder in task_path()]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise KeyError(
            f"no environment card {ref!r} (looked for {', '.join(map(str, candidates))})"
        )
    return found


def card_benchmark(ref: str) -> str:
    """The benchmark a card belongs to (it picks the proxy builder): the first part of
    ``<benchmark>/<name>``, or the folder of a card file given by path.

    Example:
        >>> card_benchmark("mujoco/hopper"), card_benchmark("/tmp/tasks/mujoco/pendulum.yaml")
        ('mujoco', 'mujoco')
    """
    return Path(ref).parent.name if ref.endswith((".yaml", ".yml")) else ref.split("/", 1)[0]


def clear_card_cache() -> None:
    """Forget loaded cards (the task path changed)."""
    load_card.cache_clear()


def _load_raw(ref: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A card's YAML mapping, with ``extends`` resolved (the base first, then this card)."""
    path = card_file(ref)
    if ref in seen:
        raise ValueError(f"card {ref}: circular 'extends' ({' -> '.join([*seen, ref])})")
    raw = yaml.safe_load(path.read_text())
    base_ref = raw.pop("extends", None)
    if base_ref is None:
        return raw
    merged = _load_raw(base_ref, (*seen, ref))
    for key, value in raw.items():
        if key in ("parts", "attributes", "types") and isinstance(value, dict):
            entries = dict(merged.get(key) or {})
            for name, spec in value.items():
                entries[name] = {**entries.get(name, {}), **spec}
            merged[key] = entries
        else:
            merged[key] = value
    return merged


def render_card(card: Card, dt: float, initial: dict[str, float] | None = None) -> str:
    """The class-like text shown to the LLM (Text2Reward's prompt style).

    ``initial`` maps attribute paths (``"self.hopper.top.position_z"``) to their values in the
    initial state; they are shown in ``__init__`` as in Text2Reward's cards.

    Example:
        >>> text = render_card(load_card("mujoco/hopper"), 0.008, {"self.hopper.top.position_z": 1.25})
        >>> "self.top : SlideJoint" in text and "self.hopper.top.position_z = 1.25" in text
        True
    """
    lines = [
        "class BaseEnv(gym.Env):",
        f"    self.{card.robot} : {card.robot_class}",
    ]
    lines += [
        f"    self.{name} : {spec['type']} # {spec['doc']}"
        for name, spec in card.attributes.items()
    ]
    lines.append(
        f"    self.dt : float # the time between two actions, in seconds, default is {dt:g} s"
    )
    if initial:
        lines.append(f"    def __init__(self): # initial state of the {card.robot_class}")
        lines += [f"        {path} = {value:g}" for path, value in initial.items()]
    lines += ["", f"class {card.robot_class}:"]
    lines += [_member(f, doc) for f, doc in card.robot_fields().items()]
    lines += [
        f"    self.{name} : {spec['type']} # {spec['doc']}" for name, spec in card.parts.items()
    ]
    # documented types in order of first use, then the types their fields use
    pending = [t for t in (card.field_type(doc) for doc in card.robot_fields().values()) if t]
    pending += [spec["type"] for spec in [*card.parts.values(), *card.attributes.values()]]
    shown = {card.robot_class}
    while pending:
        type_name = pending.pop(0)
        fields = card.type_docs(type_name)
        if type_name in shown or fields is None:
            continue
        shown.add(type_name)
        lines += ["", f"class {type_name}:"]
        lines += [_member(f, doc) for f, doc in fields.items()]
        pending += [t for t in (card.field_type(doc) for doc in fields.values()) if t]
    return "\n".join(lines)


def _member(name: str, doc: str) -> str:
    """One class member of the card text: ``self.<name> : <doc>``, or ``def <name>(self, ...)``
    for a method (a doc that starts with its parameter list)."""
    if doc.startswith("("):
        params = doc[1:].split(")", 1)[0].strip()
        return f"    def {name}(self{', ' + params if params else ''}){doc.split(')', 1)[1]}"
    return f"    self.{name} : {doc}"
