"""Environment cards: the compact representation an LLM reads and reward code may use.

A card (``envs/<benchmark>/<name>.yaml``) lists the robot's parts with their proxy type and
the simulator joint they read. :func:`render_card` turns it into the class-like text of
Text2Reward's prompts; :func:`rewardlab.tasks.proxies.build_env_proxy` turns the same card
into live objects, so the text and the executable representation cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml

from rewardlab.paths import data_dir

# Documentation of each proxy type's fields, rendered into the card text.
TYPE_DOCS: dict[str, dict[str, str]] = {
    "SlideJoint": {
        "position_x": "float # x-coordinate position in the world frame, in meters",
        "position_z": "float # z-coordinate position in the world frame, in meters",
        "velocity_x": "float # x-coordinate velocity in the world frame, in meters per second",
        "velocity_z": "float # z-coordinate velocity in the world frame, in meters per second",
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
}


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

    def attribute_paths(self) -> set[str]:
        """Every ``self.`` path a reward program may read, e.g. ``self.hopper.top.position_x``."""
        paths = {"self.dt", f"self.{self.robot}"}
        for part, spec in self.parts.items():
            base = f"self.{self.robot}.{part}"
            paths.add(base)
            paths.update(f"{base}.{f}" for f in TYPE_DOCS[spec["type"]])
        return paths


@cache
def load_card(ref: str) -> Card:
    """Load a card by ``"<benchmark>/<name>"`` (e.g. ``"mujoco/hopper"``)."""
    path = data_dir("envs") / f"{ref}.yaml"
    if not path.is_file():
        raise KeyError(f"no environment card {ref!r} (looked for {path})")
    raw = yaml.safe_load(path.read_text())
    unknown = {spec["type"] for spec in raw["parts"].values()} - TYPE_DOCS.keys()
    if unknown:
        raise ValueError(f"card {ref}: unknown part types {sorted(unknown)}")
    return Card(**raw)


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
        f"    self.dt : float # the time between two actions, in seconds, default is {dt:g} s",
    ]
    if initial:
        lines.append(f"    def __init__(self): # initial state of the {card.robot_class}")
        lines += [f"        {path} = {value:g}" for path, value in initial.items()]
    lines += ["", f"class {card.robot_class}:"]
    lines += [f"    self.{name} : {spec['type']} # {spec['doc']}" for name, spec in card.parts.items()]
    for type_name in dict.fromkeys(spec["type"] for spec in card.parts.values()):
        lines += ["", f"class {type_name}:"]
        lines += [f"    self.{f} : {doc}" for f, doc in TYPE_DOCS[type_name].items()]
    return "\n".join(lines)
