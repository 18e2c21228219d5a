"""Composition: an :class:`~rewardlab.generators.offline.grammar.Understanding` becomes a
:class:`~rewardlab.generators.offline.terms.RewardPlan` of named terms.

Locomotion terms (``sense`` in brackets):

============== ===================================================================
progress       velocity along the asked direction [+x, -x, +y, -y]
pace           closeness of that velocity to a set speed ("slowly": 0.5 m/s,
               "at 1.2 m/s") [direction@speed]; for still behaviours, a cost on
               root speed above 0.5 m/s [-speed]
alive          constant bonus while the episode lasts
upright        cos(pitch) for planar robots, the up-axis z component for 3D ones
height         closeness of the root height to a target height
rotation       pitch angular velocity in the flip direction (before the flip is done)
lift           upward velocity (flips: while rotating; stand up: rising)
landing        staged: after a full turn, being upright and high
stay           staying near the start position (in-place behaviours)
swing          angular speed of the named joint (waving)
steady         low root velocity (stay balanced while doing something else)
action         small quadratic action penalty
============== ===================================================================

Manipulation terms:

============== ===================================================================
reach          fingertips (0.045 m below ``ee_position``) close to where they must be:
               behind the object on the side away from the goal (push, pull, press),
               on the object (grasp), or at the goal (reach)
grasp          staged: close the gripper once the fingertips are at the object
lift           staged: raise the held object off the table
move           the object's distance to the goal: along the motion axis (push/pull
               along an axis, open/close a sliding joint), over the table (push,
               sweep) or in 3D (revolute joints, carried objects); staged on
               holding it for pick-and-place and tools (or on being at the goal
               when the instruction says to let go)
goal           staged bonus once the object is at the goal
release        staged: let go once the object is at the goal ("let go") or rests
               on the other one (stacking)
slow           a cost on hand motion above 0.3 of full speed ("slowly")
time           a cost per step until the object is at the goal ("quickly")
avoid          a cost while the fingertips are within 5 cm of an object to avoid
gentle         a cost on hand motion while within 5 cm of an object not to hit
action         small quadratic action penalty
============== ===================================================================
"""

from __future__ import annotations

from rewardlab.generators.offline.grammar import Understanding
from rewardlab.generators.offline.terms import (
    RewardPlan,
    Robot,
    Scene,
    Term,
    distance_to_goal,
    locomotion_library,
    locomotion_variables,
    motion_axes,
    standing_height,
    upright_expr,
)

SLOW_SPEED = 0.5
"""m/s: the speed "slowly" asks of a gait, and the root speed above which still behaviours pay."""


def plan_locomotion(robot: Robot, u: Understanding) -> RewardPlan:
    """The terms of a locomotion behaviour (see the module docstring)."""
    behaviour = u.behaviour or "locomotion"
    v = locomotion_variables(robot)
    plan = RewardPlan(behaviour, v)
    terms = plan.terms
    upright = upright_expr(robot)
    h0 = standing_height(robot)
    speed = "abs(vx) + abs(vz)" if robot.planar else "abs(vx) + abs(vy) + abs(vz)"
    if behaviour == "locomotion":
        direction = u.direction or "+x"
        axis, sign = direction[1], "-" if direction.startswith("-") else ""
        if u.speed in ("slow", "target"):
            target = u.target_speed if u.speed == "target" and u.target_speed else SLOW_SPEED
            terms.append(Term("pace", 1.0, f"1.0 - min(abs({sign}v{axis} - {target:g}) / {target:g}, 1.0)",
                              f"move along {direction} at {target:g} m/s", f"{direction}@{target:g}"))  # fmt: skip
        else:
            terms.append(
                Term("progress", 1.0, f"{sign}v{axis}", f"velocity along {direction}", direction)
            )
        terms += [
            Term("alive", 1.0, "1.0", "bonus for every step the episode lasts", "+"),
            Term("upright", 0.5, upright, "keep the torso upright", "+upright"),
        ]
    elif behaviour == "flip":
        s = "-" if u.direction == "-x" else ""
        pitch_sense = f"{'-' if s else '+'}pitch"
        plan.flags["flipped"] = f"{s}pitch >= 2.0 * math.pi"
        terms += [
            Term("rotation", 1.0, f"0.0 if flipped else min(max({s}spin, -2.0), 6.0)",
                 "spin in the flip direction until one full turn is done", pitch_sense),
            Term("lift", 0.3, "0.0 if flipped else min(max(vz, -1.0), 3.0)",
                 "jump: height gives time to rotate", "+vz"),
            Term("landing", 2.0, f"(1.0 + math.cos(pitch) + min(z, {h0:.2f}) / {h0:.2f}) if flipped else 0.0",
                 "after the full turn: be upright and high (stage bonus)", "+upright after turn"),
            Term("steady", 0.05, "-abs(spin) if flipped else 0.0", "stop spinning after landing", "-spin after turn"),
        ]  # fmt: skip
    elif behaviour == "jump":
        terms += [
            Term("height", 2.0, f"max(z - {h0:.2f}, 0.0)", "rise above the standing height", "+z"),
            Term("lift", 0.5, "max(vz, 0.0)", "upward velocity", "+vz"),
            Term(
                "stay",
                0.5,
                "-abs(x)" if robot.planar else "-abs(x) - abs(y)",
                "stay where you started",
                "near start",
            ),
            Term("upright", 1.0, upright, "keep the torso upright", "+upright"),
        ]
    elif behaviour == "lie_down":
        target = 0.4 * h0
        terms += [
            Term(
                "height",
                2.0,
                f"-max(z - {target:.2f}, 0.0)",
                f"bring the torso down to {target:.2f} m",
                "-z",
            ),
            Term("upright", 1.0, upright, "stay right side up", "+upright"),
            Term("steady", 0.1, "-abs(vx) - abs(vz)", "settle down", "-speed"),
        ]
    elif behaviour == "stand":
        target = max(robot.height0, 1.0) if not robot.planar else robot.height0
        terms += [
            Term(
                "height",
                2.0,
                f"min(z, {target:.2f}) / {target:.2f}",
                f"raise the torso to {target:.2f} m",
                "+z",
            ),
            Term("upright", 1.0, upright, "keep the torso upright", "+upright"),
            Term("lift", 0.2, "max(vz, 0.0)", "move up", "+vz"),
        ]
    elif behaviour == "wave":
        joint = u.limb or robot.joints[0]
        v["swing_speed"] = f"self.{robot.name}.{joint}.angular_velocity"
        terms += [
            Term("swing", 0.5, "min(abs(swing_speed), 5.0)", f"move {joint} back and forth", joint),
            Term("upright", 1.0, upright, "keep balance", "+upright"),
            Term("steady", 0.2, "-abs(vx) - abs(vz)", "do not walk away", "-speed"),
        ]
    if behaviour in ("stand", "lie_down", "wave") and u.speed in ("slow", "target"):
        terms.append(Term("pace", 0.5, f"-max({speed} - {SLOW_SPEED:g}, 0.0)",
                          f"move the body slowly (root speed above {SLOW_SPEED:g} m/s costs)", "-speed"))  # fmt: skip
    if (
        behaviour in ("stand", "lie_down", "wave")
        and u.direction == "in-place"
        and not any(t.name == "stay" for t in terms)
    ):
        terms.append(locomotion_library(robot)["stay"])
    terms.append(
        Term("action", 0.001, "-float(action @ action)", "small action regularisation", "-action")
    )
    return plan


def plan_manipulation(scene: Scene, u: Understanding) -> RewardPlan:
    """The terms of a manipulation behaviour (see the module docstring)."""
    behaviour = u.behaviour or "push_pull"
    axes = motion_axes(u.instruction, scene)
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
    at_goal = "dist_goal < 0.05"
    if behaviour == "reach":
        v["dist_goal"] = "float(np.linalg.norm(goal - tip))"
        terms += [
            Term(
                "reach",
                2.0,
                "1.0 - math.tanh(5.0 * dist_goal)",
                "bring the fingertips to the goal",
                "hand to goal",
            ),
            Term(
                "goal",
                1.0,
                "1.0 if dist_goal < 0.05 else 0.0",
                "staged bonus at the goal",
                "at goal",
            ),
        ]
    elif behaviour in ("pick_place", "tool"):
        v["obj"] = f"self.{obj}.{scene.position}"
        target = "obj"
        if behaviour == "tool":  # grasp the tool (obj1), bring the other object to the goal
            v["target"] = f"self.{scene.objects[1]}.{scene.position}"
            target = "target"
        if scene.gripper:
            v["grip"] = f"{r}.{scene.gripper}"
        distance_to_goal(v, target, "z" if scene.goal_kind == "height" else "xyz")
        v["dist_reach"] = "float(np.linalg.norm(obj - tip))"
        v["near"] = "dist_reach < 0.02"
        if scene.grasp_check:  # the simulator's own grasp test (both fingers press the object)
            v["held"] = f"{r}.{scene.grasp_check}(self.{obj}, max_angle=30)"
        else:
            v["held"] = "near and grip < 0.8" if scene.gripper else "near"
        if scene.goal_kind == "on":
            v["placed"] = "dist_goal < 0.01"
        if scene.goal_kind == "height":
            at_goal = "gap <= 0.0"
        release = u.release and scene.goal_kind != "on"
        if release:
            v["at_goal"] = at_goal
        terms.append(
            Term(
                "reach",
                1.0,
                "1.0 - math.tanh(5.0 * dist_reach)",
                f"fingertips to {obj}",
                f"hand to {obj}",
            )
        )
        if scene.gripper:
            terms.append(
                Term(
                    "grasp",
                    0.5,
                    "(1.0 - grip) if near else 0.0",
                    "close the gripper at the object",
                    "close at object",
                )
            )
        carried = (
            "held or placed"
            if scene.goal_kind == "on"
            else "held or at_goal"
            if release
            else "held"
        )
        moved = (
            f"the tool so that {scene.objects[1]} reaches" if behaviour == "tool" else f"{obj} to"
        )
        terms += [
            Term("lift", 1.0, "min(max(obj[2] - 0.03, 0.0), 0.1) / 0.1 if held else 0.0",
                 "raise the held object off the table", "+z held"),
            Term("move", 3.0, f"(1.0 - math.tanh(5.0 * dist_goal)) if {carried} else 0.0",
                 f"carry {moved} the goal", "toward goal"),
            Term("goal", 2.0, f"1.0 if {at_goal} else 0.0", "staged bonus at the goal", "at goal"),
        ]  # fmt: skip
        if scene.goal_kind == "on":
            terms.append(Term("release", 2.0, "(0.0 if held else 1.0) if placed else 0.0",
                              f"let go once {obj} rests on {scene.objects[1]}", "open at goal"))  # fmt: skip
        elif release:
            terms.append(Term("release", 2.0, "(0.0 if held else 1.0) if at_goal else 0.0",
                              f"let go once {obj} is at the goal", "open at goal"))  # fmt: skip
    else:  # push_pull / open_close: fingertips behind the object, the object to the goal
        v["obj"] = f"self.{obj}.{scene.position}"
        distance_to_goal(v, "obj", axes)
        if len(axes) == 1:
            offset = ", ".join("0.03 * np.sign(gap)" if a == axes else "0.0" for a in "xyz")
            v["behind"] = f"obj - np.array([{offset}])"
        else:
            v["behind"] = "obj - 0.03 * gap / (dist_goal + 1e-6)"
        v["dist_reach"] = "float(np.linalg.norm(behind - tip))"
        at_goal = f"dist_goal < {0.02 if len(axes) == 1 else 0.05}"
        terms += [
            Term("reach", 1.0, "1.0 - math.tanh(5.0 * dist_reach)",
                 f"fingertips behind {obj}, on the side away from the goal", f"hand behind {obj}"),
            Term("move", 3.0, "1.0 - math.tanh(5.0 * dist_goal)", f"{obj} toward the goal (along {axes})", "toward goal"),
            # sliding joints reach their goal exactly; arcs and free objects less precisely
            Term("goal", 2.0, f"1.0 if {at_goal} else 0.0", "staged bonus at the goal", "at goal"),
        ]  # fmt: skip
    plan.extras = {
        "slow": Term("slow", 1.0, "-max(float(np.max(np.abs(action[:3]))) - 0.3, 0.0)",
                     "move the hand slowly (above 0.3 of full speed costs)", "-hand speed"),
        "time": Term("time", 0.5, f"0.0 if {at_goal} else -1.0", "a cost per step until the goal", "-time"),
    }  # fmt: skip
    if u.speed == "slow":
        terms.append(plan.extras["slow"])
    elif u.speed == "fast":
        terms.append(plan.extras["time"])
    for k, name in enumerate(dict.fromkeys(u.avoid)):
        v[f"away_{k}"] = f"float(np.linalg.norm(self.{name}.{scene.position} - tip))"
        terms.append(Term("avoid" if k == 0 else f"avoid_{k}", 1.0, f"-1.0 if away_{k} < 0.05 else 0.0",
                          f"keep the fingertips away from {name}", f"away from {name}"))  # fmt: skip
    for k, name in enumerate(dict.fromkeys(u.gentle)):
        v[f"close_{k}"] = f"float(np.linalg.norm(self.{name}.{scene.position} - tip))"
        terms.append(Term("gentle" if k == 0 else f"gentle_{k}", 1.0,
                          f"-float(np.max(np.abs(action[:3]))) if close_{k} < 0.05 else 0.0",
                          f"move slowly near {name} (do not hit it)", f"slow near {name}"))  # fmt: skip
    terms.append(
        Term("action", 0.01, "-float(action @ action)", "small action regularisation", "-action")
    )
    return plan


def manipulation_library(plan: RewardPlan) -> dict[str, Term]:
    """Manipulation terms that feedback may add (those of the plan's behaviour, a time cost and
    a slow-hand cost)."""
    return {**plan.extras, **{t.name: t for t in plan.terms}}
