"""The offline writer's grammar: what it reads in an instruction, and against which card.

The instruction is split into words and matched, longest phrase first, against a fixed lexicon
(:data:`LOCOMOTION` for robots that move their body, :data:`MANIPULATION` for an arm and
objects). Every phrase ends in one of four states, which the writer reports:

- **used**: read as a behaviour, a direction, a speed, a body part, an object verb, a modifier,
  with the term it became;
- **filler**: words that carry no instruction ("make the hopper", "please", "as", "it");
- **not used**: understood, but with no effect here, with the reason ("down: the card's goal
  decides where the handle goes");
- **not understood**: everything else.

Then the reading is checked against the card (:func:`understand`): a direction the robot cannot
move in (left on a planar hopper), a flip without a pitch hinge, a body part or an object the
card does not have, an object verb whose goal state is the opposite of the card's goal (closing
on a card whose goal is the open position), two behaviours at once, negation, or a behaviour
outside the grammar (circles, turning, standing on one leg, raising a limb, dancing ...). Any of
these, or no behaviour at all, is a **refusal**: the writer says what it can write and that an
LLM back-end (``llm=openai``) can do more. Otherwise the reading goes to
:mod:`rewardlab.generators.offline.compose`.

Locomotion grammar (hopper, walker, half cheetah, ant, humanoid)::

    behaviour  move | walk | run | hop | go | jog | sprint | gallop | trot | travel | advance
               | jump | leap | bounce (in place; with a direction it is a gait)
               | flip | somersault | backflip | frontflip | "back flip" | "front flip"
               | "lie down" | "lay down" | "lie flat" | "get down"
               | "stand up" | "get up" | stand | rise
               | wave | swing | shake | wiggle | flap  (+ a body part)
    direction  forward | ahead | backward | back | "in reverse" | left | right (3D robots)
               | "in place" | "on the spot" | up | down
    speed      fast | quickly | "as fast as possible" | sprint | slowly | gently | carefully
               | "at <number> m/s"
    body part  [front|back|rear|hind] [left|right] leg | arm | foot | knee | shoulder | elbow
               | thigh | hip | ankle  (matched against the card's joint names)
    modifier   balance | upright  ("while keeping its balance")

Manipulation grammar (MetaWorld, ManiSkill)::

    verb       reach | touch | approach                                  -> reach
               | pick [up] | grasp | grab | grip | take | lift | hold | carry
               | place | put | set | bring | move | deliver | dunk | stack | insert | plug
               | hammer                                                  -> pick and place
               | open | close | shut | "turn on" | "turn off" | lock | unlock
               | turn | rotate | twist                                   -> open / close a joint
               | push | slide | sweep | shove | nudge | kick | pull | drag | press
               | "push down" | unplug | remove | "pull out" | "take out"  -> push / pull / press
    opposites  open/close, lock/unlock, press (down)/pull (up), insert/unplug, "turn on"/"turn off":
               checked against the goal the card describes
    object     a noun the card's summary or object descriptions use ("drawer", "handle", "puck")
    goal       goal | target | destination, and place phrases ("into the hole", "onto the peg",
               "to the goal"): the card's goal attribute decides where the object goes
    modifier   "let go" | release (pick and place: open the hand at the goal)
               | "without touching <object>" | "avoiding <object>" (keep the hand away)
               | "without hitting <object>" (move slowly near it)
               | slowly | gently | carefully (slow hand motion) | quickly | fast (time cost)

The reading is deterministic: the same instruction and card always give the same result.

Example:
    >>> from rewardlab.tasks import get_task
    >>> u = understand(get_task("mujoco/hopper_forward"), "hop backwards slowly")
    >>> u.behaviour, u.direction, u.speed, u.refusal
    ('locomotion', '-x', 'slow', None)
    >>> understand(get_task("metaworld/drawer_open"), "push the drawer closed").refusal is not None
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rewardlab.tasks.registry import SuccessSpec, TaskSpec

from rewardlab.generators.offline.terms import Robot, Scene, describe_robot, describe_scene

Entry = tuple[str, str]
"""A lexicon entry's meaning: ``(kind, value)``."""


def _words(text: str) -> list[str]:
    return text.split()


def _table(text: str) -> dict[tuple[str, ...], Entry]:
    """A lexicon from lines ``kind value: phrase, phrase, ...`` (value ``*``: the phrase itself;
    ``-``: no value)."""
    lexicon: dict[tuple[str, ...], Entry] = {}
    for line in text.strip().splitlines():
        head, _, phrases = line.partition(":")
        kind, value = _words(head)
        for phrase in (p.strip() for p in phrases.split(",")):
            if phrase:
                lexicon[tuple(_words(phrase))] = (
                    kind,
                    phrase if value == "*" else "" if value == "-" else value,
                )
    return lexicon


FILLER = frozenset(_words(
    "make makes let lets the a an do does please should must try to it its it's your their his her "
    "of and then is be as so that very really can you now just also while keeping keep keeps stay "
    "stays staying remain possible yourself itself robot agent body whole entire too some this "
    "these those with by using use"
))  # fmt: skip
"""Words that carry no instruction by themselves."""

LOCOMOTION = _table("""
behaviour locomotion: move, moves, moving, walk, walks, walking, run, runs, running, hop, hops, hopping, go, goes, going, travel, travels, jog, jogs, gallop, gallops, trot, trots, advance, advances, stride, race, dash, scurry, locomote
behaviour locomotion+fast: sprint, sprints
behaviour jump: jump, jumps, jumping, leap, leaps, leaping, bounce, bounces, bouncing
behaviour flip: flip, flips, flipping, somersault, somersaults
behaviour flip-x: backflip, backflips, back flip, backward flip, backwards flip, back somersault
behaviour flip+x: frontflip, front flip, forward flip, front somersault
behaviour lie_down: lie down, lay down, lie flat, lay flat, get down, lie, lies, lay, lying down, lie down flat, lie on its belly, lie on the ground, lie flat on the ground
behaviour stand: stand up, stands up, get up, gets up, stand, stands, rise, rise up, stand upright, get to its feet, stand on its feet, get back up
behaviour wave: wave, waves, waving, swing, swings, swinging, shake, shakes, wiggle, flap
filler -: from lying, from lying down, from lying on the ground, from the ground, from the floor, off the ground, off the floor, on the ground, on the floor, to the ground, onto the ground, while keeping its balance, keeping its balance
direction +x: forward, forwards, ahead, onward, onwards
direction -x: backward, backwards, back, reverse, in reverse, rearward
direction +y: left, leftward, leftwards
direction -y: right, rightward, rightwards
direction in-place: in place, on the spot, in one place, on the same spot, where it is, in position
direction up: up, upward, upwards, high, higher
direction down: down
unclear sideways=left-or-right?: sideways
speed fast: fast, faster, quickly, quick, rapidly, speedily, swiftly, as fast as possible, as fast as you can, as fast as it can, as quickly as possible, as quickly as you can, at full speed, at top speed, at high speed, full speed
speed slow: slowly, slow, gently, carefully, leisurely, calmly, at a slow pace, at a leisurely pace, steadily, unhurriedly
part leg: leg, legs, limb, limbs
part arm: arm, arms
part foot: foot, feet
part knee: knee, knees
part shoulder: shoulder, shoulders
part elbow: elbow, elbows
part thigh: thigh, thighs
part hip: hip, hips
part ankle: ankle, ankles
side *: front, back, rear, hind, left, right, fore
upright -: balance, balanced, upright, its balance, keep its balance, stay upright
unsupported *: both, all, two, all four, both arms, both legs, all legs
unsupported *: circle, circles, in a circle, around, round, zigzag, figure eight, figure of eight, square, turn, turns, turning, spin, spins, spinning, rotate, rotates, crawl, crawls, roll, rolls, sit, sits, kneel, kneels, point, points, kick, kicks, raise, raises, lift, lifts, clap, cartwheel, handstand, headstand, dance, dances, dancing, moonwalk, climb, swim, fly, push, pull, carry, on one leg, one leg, on one foot, one foot, on two legs, on its hands, on its head, on its back, on its side, stretch, bow, nod, lean, tilt, follow, chase, fetch
""")
"""Locomotion lexicon: phrase -> (kind, value). The ``part`` and ``side`` entries name limbs;
a ``side`` word not followed by a part is a direction."""

MANIPULATION = _table("""
verb reach: reach, reaches, reaching, touch, touches, touching, approach, approaching, go to, move to, reach for
verb pick: pick, pick up, picks up, picking, grasp, grasps, grasping, grab, grabs, grabbing, grip, gripping, take, taking, lift, lift up, lifts, lifting, hold, holds, holding, carry, carries, carrying, pick out, pick up out
verb place: place, places, placing, put, puts, putting, set, setting, bring, bringing, move, moves, moving, deliver, delivering, dunk, dunking, stack, stacking, put down, set down, drop off, transport
verb insert: insert, inserts, inserting, plug, plug in, plugging, put in
verb remove: unplug, unplugs, unplugging, remove, removing, pull out, take out, extract, extracting
verb hammer: hammer, hammering
verb open: open, opens, opening, turn on, switch on, slide open
verb close: close, closes, closing, shut, shuts, shutting, turn off, switch off, slide shut
verb lock: lock, locks, locking
verb unlock: unlock, unlocks, unlocking
verb turn: turn, turns, turning, rotate, rotates, rotating, twist, twists, twisting, spin
verb push: push, pushes, pushing, slide, slides, sliding, sweep, sweeps, sweeping, shove, shoving, nudge, nudging, kick, kicks, kicking
verb pull: pull, pulls, pulling, drag, drags, dragging, draw, pull up, pull back
verb press: press, presses, pressing, depress, push down, press down, hit, push in
state closed: closed
state open: opened
release -: let go, let it go, let go of it, release, release it, drop it, open the gripper, open the hand, isn't grasped, is not grasped, not grasped, not held, isn't held, isn't grasped by the gripper, is not held, no longer held
avoid touch: without touching, avoid, avoiding, without contacting, away from, keep away from, stay away from, not touching
avoid hit: without hitting, without bumping, without knocking, without bumping into, without knocking over, without disturbing, without crashing into
speed fast: fast, quickly, quick, rapidly, as fast as possible, as quickly as possible, swiftly
speed slow: slowly, slow, gently, carefully, softly, cautiously
goal -: goal, target, goal position, target position, destination, the goal, marked spot, target location, goal location
place -: to, into, onto, on, under, underneath, out, off, past, over, toward, towards, from, along, at, in, behind, beside, inside, through, across, above, below, on top of, out of, next to, in front of, away, back
amount *: up, down, sideways, clockwise, counterclockwise, anticlockwise, counter clockwise, anti clockwise, degrees, degree, fully, all the way, halfway, x, y, z, axis, top, side, left, right, forward, forwards, backward, backwards, edge, other, the other, one, initial, meter, meters, metre, metres, m, cm, centimetres, centimeters, mm
filler -: revolving, joint, revolving joint, hinge, hinged, vertical, horizontal, small, round, flat, big, large, little, low, position, initial position, its initial position, 3d, 3 d, the task is finished when, the task is done when, i e, e g, region, target region, head end, end, point, centre, center
noterm no-term-for-stillness: stably, static, stable, still, steady, is static
unsupported *: throw, throws, toss, shake, wave, draw a, write, pour, fold, cut, stir, wipe, clean, paint, juggle, spin it, balance, flip, stack all, sort, count
""")
"""Manipulation lexicon: phrase -> (kind, value)."""

NEGATION = frozenset(_words("don't dont not never no stop doesn't shouldn't nor"))

OBJECT_NOUNS = frozenset(_words(
    "drawer door window button handle puck ball basketball mug cup plate peg nut lid box faucet tap "
    "dial lever lock hammer nail stick thermos block shelf bin bins hole basket hoop wall table "
    "cabinet machine spout coffee chest cube cubes knob bottle can bowl apple banana sponge towel "
    "key switch tray pot pan spoon fork knife jar glass screw bolt gear ring cylinder sphere brick tool"
))  # fmt: skip
"""Manipulation nouns the grammar knows; each must be on the card to be used."""

DETERMINERS = frozenset(_words("the a an its their this that each"))

ROBOT_WORDS = frozenset(_words("gripper hand hands fingers finger arm end effector tcp claw"))

GOAL_STATES: dict[str, str] = {
    "open": "open", "opened": "open", "closed": "closed", "closes": "closed", "shut": "closed",
    "locked": "locked", "unlocked": "unlocked", "pressed": "pressed", "inserted": "inserted",
    "plugged": "inserted", "driven in": "inserted", "sits on": "inserted", "unplugged": "removed",
    "pulled up": "pulled_up", "points up": "pulled_up",
}  # fmt: skip
"""Phrases of a card's goal description -> the end state the goal stands for."""

VERB_STATE: dict[str, str] = {
    "open": "open", "close": "closed", "lock": "locked", "unlock": "unlocked", "press": "pressed",
    "insert": "inserted", "remove": "removed",
}  # fmt: skip
"""The end state an object verb asks for (``pull`` + ``up`` asks for ``pulled_up``)."""

OPPOSITE = {"open": "closed", "closed": "open", "locked": "unlocked", "unlocked": "locked",
            "pressed": "pulled_up", "pulled_up": "pressed", "inserted": "removed", "removed": "inserted"}  # fmt: skip

CAN_WRITE_LOCOMOTION = (
    "move forward/backward (left/right for 3D robots), fast or slowly or at a set speed; jump in "
    "place; a front or back flip (robots with a pitch hinge); lie down; stand up; wave a named limb"
)
CAN_WRITE_MANIPULATION = (
    "reach the goal; pick up the object and place it at the goal (optionally letting go); "
    "open/close/lock/unlock/turn a part toward the card's goal; push, pull, press or slide the "
    "object to the goal; with 'slowly', 'quickly', 'without touching <object>'"
)


@dataclass
class Phrase:
    """One phrase of the instruction and what became of it."""

    text: str
    kind: str
    """The lexicon kind (``behaviour``, ``direction``, ``verb`` ...), ``filler`` or ``unknown``."""
    value: str = ""
    status: str = "used"
    """``used``, ``filler``, ``not used`` or ``not understood``."""
    note: str = ""
    """What it became (``term progress along -x``) or why it was not used."""

    def line(self) -> str:
        note = f": {self.note}" if self.note else ""
        return f"'{self.text}' {self.status}{note}"


@dataclass
class Understanding:
    """What the writer read in an instruction for a card, or why it refuses."""

    instruction: str
    family: str
    """``locomotion`` or ``manipulation``."""
    phrases: list[Phrase] = field(default_factory=list)
    behaviour: str | None = None
    """Locomotion: ``move``, ``jump``, ``flip``, ``lie_down``, ``stand``, ``wave``; manipulation:
    ``reach``, ``pick_place``, ``tool``, ``open_close``, ``push_pull``."""
    direction: str | None = None
    """Locomotion: ``+x``, ``-x``, ``+y``, ``-y`` (flips: ``+x`` front, ``-x`` back)."""
    speed: str | None = None
    """``fast``, ``slow`` or ``None``."""
    target_speed: float | None = None
    """m/s for ``at <number> m/s``."""
    limb: str | None = None
    """The card joint a wave moves."""
    verbs: list[str] = field(default_factory=list)
    """Manipulation: the object verbs read, canonical (``open``, ``pick``, ``place`` ...)."""
    state: str | None = None
    """Manipulation: the end state asked for (``open``, ``closed``, ``pressed`` ...)."""
    release: bool = False
    avoid: list[str] = field(default_factory=list)
    """Card objects (``obj2``) to keep the hand away from."""
    gentle: list[str] = field(default_factory=list)
    """Card objects to approach slowly (``without hitting``)."""
    upright: bool = False
    refusal: str | None = None
    robot: Robot | None = None
    scene: Scene | None = None

    @property
    def not_understood(self) -> list[Phrase]:
        return [p for p in self.phrases if p.status == "not understood"]

    def report(self) -> list[str]:
        """One line per phrase that carries meaning (used, not used, not understood)."""
        return [p.line() for p in self.phrases if p.status != "filler"]

    def refuse(self, why: str) -> None:
        if self.refusal is None:
            self.refusal = why


_TOKENS = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+(?:\.\d+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case words and numbers (``counter-clockwise`` -> ``counter``, ``clockwise``)."""
    return _TOKENS.findall(text.lower())


def _match(
    tokens: list[str], i: int, lexicon: dict[tuple[str, ...], Entry], longest: int
) -> tuple[int, Entry] | None:
    for n in range(min(longest, len(tokens) - i), 0, -1):
        entry = lexicon.get(tuple(tokens[i : i + n]))
        if entry is not None:
            return n, entry
    return None


def scan(
    tokens: list[str], lexicon: dict[tuple[str, ...], Entry], extra_filler: frozenset[str]
) -> list[Phrase]:
    """Split ``tokens`` into phrases: lexicon entries (longest first), filler, numbers, and runs
    of unknown words (one ``unknown`` phrase per run)."""
    longest = max(len(k) for k in lexicon)
    out: list[Phrase] = []
    i = 0
    while i < len(tokens):
        word = tokens[i]
        hit = _match(tokens, i, lexicon, longest)
        if hit is not None:
            n, (kind, value) = hit
            out.append(
                Phrase(
                    " ".join(tokens[i : i + n]),
                    kind,
                    value,
                    "filler" if kind == "filler" else "used",
                )
            )
            i += n
        elif word in NEGATION:
            out.append(Phrase(word, "negation"))
            i += 1
        elif re.fullmatch(r"\d+(?:\.\d+)?", word):
            out.append(Phrase(word, "number", word))
            i += 1
        elif word in FILLER or word in extra_filler:
            out.append(Phrase(word, "filler", status="filler"))
            i += 1
        elif out and out[-1].kind == "unknown":
            out[-1].text += f" {word}"
            i += 1
        else:
            out.append(Phrase(word, "unknown", status="not understood"))
            i += 1
    return out


def card_words(text: str) -> set[str]:
    """The words of a card text, with plain plurals folded (``bins`` -> ``bin``)."""
    words = set(tokenize(text))
    return (
        words
        | {w[:-1] for w in words if w.endswith("s")}
        | {w.split("'")[0] for w in words if "'" in w}
    )


def understand(task: TaskSpec, instruction: str) -> Understanding:
    """Read ``instruction`` against ``task``'s card (see the module docstring)."""
    card = task.load_card()
    scene = describe_scene(card)
    if scene is not None:
        return _manipulation(instruction, scene, card.name)
    return _locomotion(instruction, describe_robot(card, task.initial_state()), card.name)


# --------------------------------------------------------------------------- locomotion


def _locomotion(instruction: str, robot: Robot, card_name: str) -> Understanding:
    u = Understanding(instruction, "locomotion", robot=robot)
    names = frozenset(
        {robot.name, card_name, "half", "cheetah", "walker", "hopper", "ant", "humanoid", "at"}
    )
    phrases = scan(tokenize(instruction), LOCOMOTION, names)
    u.phrases = phrases
    u.target_speed = _merge_numbers(phrases)
    behaviours: list[Phrase] = []
    limb_words: list[Phrase] = []
    for k, p in enumerate(phrases):
        nxt = phrases[k + 1] if k + 1 < len(phrases) else None
        after = phrases[k + 2] if k + 2 < len(phrases) else None
        if p.kind == "side":
            if (nxt and nxt.kind in ("part", "side")) or (
                nxt and nxt.kind == "filler" and after and after.kind == "part"
            ):
                limb_words.append(p)
            elif p.value in ("back", "front", "left", "right"):  # a direction, not a side of a limb
                p.kind, p.value = (
                    "direction",
                    {"back": "-x", "front": "+x", "left": "+y", "right": "-y"}[p.value],
                )
            else:
                p.status, p.note = "not understood", "a side of what?"
        if p.kind == "behaviour":
            behaviours.append(p)
        elif p.kind == "part":
            limb_words.append(p)
    for p in phrases:
        if p.kind == "negation":
            u.refuse(f"'{p.text}': negation is not in the offline grammar")
        elif p.kind == "unsupported":
            p.status, p.note = "not understood", "outside the offline grammar"
            u.refuse(f"'{p.text}' is outside the offline grammar")
        elif p.kind == "unclear":
            p.status, p.note = "not understood", "ambiguous"
            u.refuse(f"'{p.text}' is ambiguous (say which way: left or right)")
    kinds = {
        b.value.split("+")[0].split("-")[0] if b.value.startswith("flip") else b.value.split("+")[0]
        for b in behaviours
    }
    directions = [p for p in phrases if p.kind == "direction"]
    horizontal = [p for p in directions if p.value in ("+x", "-x", "+y", "-y")]
    if "jump" in kinds and horizontal and "flip" not in kinds:  # "jump forward" is a gait (hops)
        kinds.discard("jump")
        kinds.add("locomotion")
        for b in behaviours:
            if b.value == "jump":
                b.note = "with a direction: a gait of jumps"
    if "stand" in kinds and len(kinds) > 1 and kinds - {"stand"} <= {"wave", "lie_down"}:
        kinds.discard(
            "stand"
        )  # "stand and wave" / "wave while standing": the wave is the behaviour
    if len(kinds) > 1:
        u.refuse(
            f"more than one behaviour ({', '.join(sorted(kinds))}): one reward writes one behaviour"
        )
    if not kinds:
        u.refuse("no behaviour the offline grammar knows")
    behaviour = next(iter(kinds)) if len(kinds) == 1 else None
    u.behaviour = behaviour
    # direction
    flip_dir = next(
        (b.value[4:] for b in behaviours if b.value.startswith("flip") and len(b.value) > 4), None
    )
    hdirs = sorted({p.value for p in horizontal})
    if len(hdirs) > 1 and not (behaviour == "flip" and flip_dir):
        u.refuse(f"contradicting directions ({', '.join(p.text for p in horizontal)})")
    direction = flip_dir or (hdirs[0] if hdirs else None)
    for p in directions:
        if p.value in ("+x", "-x", "+y", "-y"):
            if behaviour == "flip" and flip_dir and p.value != flip_dir and p.value in ("+x", "-x"):
                u.refuse(f"'{p.text}' contradicts the flip's direction")
            if behaviour in ("locomotion", "flip"):
                p.note = {
                    "+x": "forward (+x)",
                    "-x": "backward (-x)",
                    "+y": "left (+y)",
                    "-y": "right (-y)",
                }[p.value]
            else:
                p.status, p.note = "not understood", f"a direction for '{behaviour}'"
                u.refuse(f"'{p.text}': a direction for {behaviour} is outside the offline grammar")
        elif p.value == "in-place":
            if behaviour == "jump" or (
                behaviour == "locomotion"
                and any(b.text.startswith("hop") or b.text.startswith("bounc") for b in behaviours)
            ):
                if behaviour == "locomotion":
                    behaviour = u.behaviour = "jump"
                p.note = "stay at the start (term stay)"
            elif behaviour in ("wave", "stand", "lie_down"):
                p.note = "stay at the start"
            else:
                p.status, p.note = "not understood", f"'in place' for {behaviour}"
                u.refuse(f"'{p.text}' contradicts {behaviour}")
        elif p.value == "up":
            p.status, p.note = (
                ("used", "upward") if behaviour in ("jump", "stand") else ("not used", "")
            )
        elif p.value == "down":
            p.status = "used" if behaviour == "lie_down" else "not used"
            if behaviour == "jump":
                p.status, p.note = "filler", ""
    if behaviour == "locomotion":
        direction = direction or "+x"
        if direction in ("+y", "-y") and robot.planar:
            u.refuse(
                f"the {robot.name} moves in the x-z plane only: it cannot go {'left' if direction == '+y' else 'right'}"
            )
    if behaviour == "flip":
        direction = direction if direction in ("+x", "-x") else "+x"
        if robot.pitch is None:
            u.refuse(
                f"a flip needs the robot's unwrapped pitch angle, which the {robot.name} card does not have"
            )
    u.direction = direction
    if direction is None and any(p.value == "in-place" and p.status == "used" for p in directions):
        u.direction = "in-place"
    # speed
    speeds = [p for p in phrases if p.kind == "speed"]
    if any(b.value.endswith("+fast") for b in behaviours):
        speeds.append(Phrase("sprint", "speed", "fast"))
    values = {p.value for p in speeds}
    if u.target_speed is not None:
        values.add("target")
    if len(values) > 1:
        u.refuse(f"contradicting speeds ({', '.join(p.text for p in speeds)})")
    elif values:
        u.speed = "slow" if values == {"slow"} else "fast" if values == {"fast"} else "target"
        for p in speeds:
            if behaviour == "flip":
                p.status, p.note = "not used", "a flip needs all the speed it can get"
            elif p.value == "fast" and behaviour in ("stand", "lie_down", "wave", "jump"):
                p.status, p.note = "not used", f"no speed term for {behaviour}"
            elif p.value == "slow" and behaviour == "jump":
                p.status, p.note = "not used", "no speed term for jump"
            elif p.value == "fast":
                p.note = "as fast as it can (term progress)"
            elif p.value == "slow":
                p.note = (
                    "a set pace of 0.5 m/s (term pace)"
                    if behaviour == "locomotion"
                    else "slow body motion (term pace)"
                )
    for b in behaviours:
        if behaviour is not None and not b.note:
            b.note = f"behaviour {behaviour}"
    # body parts (waving)
    if limb_words:
        if behaviour != "wave":
            for p in limb_words:
                p.status, p.note = (
                    "not understood",
                    f"a body part for {behaviour}"
                    if behaviour
                    else "a body part without a behaviour",
                )
            u.refuse(f"'{' '.join(p.text for p in limb_words)}': body parts only go with waving")
        else:
            joint = match_joint(robot, [p.value for p in limb_words])
            if joint is None:
                u.refuse(
                    f"the {robot.name} card has no {' '.join(p.text for p in limb_words)} "
                    f"(its joints: {', '.join(robot.joints)})"
                )
            else:
                u.limb = joint
                for p in limb_words:
                    p.note = f"joint {joint}"
    elif behaviour == "wave":
        u.limb = match_joint(robot, [])
    for p in phrases:
        if p.kind == "upright":
            u.upright = True
            p.note = "term upright"
    for p in phrases:
        if p.status == "not understood" and p.kind == "unknown":
            p.note = p.note or "not in the offline grammar"
    if u.refusal is not None:
        u.refusal += f". The offline writer can write: {CAN_WRITE_LOCOMOTION}. An LLM back-end (llm=openai) can do more."
    return u


SPEED_UNIT = re.compile(
    r"(m s|m per s|meters per second|metres per second|mps|meter per second|metre per second)\b"
)


def _merge_numbers(phrases: list[Phrase]) -> float | None:
    """``at 1.5 m/s``: a number followed by a speed unit becomes a target speed (returned); the
    unit and a leading ``at`` become part of it."""
    target = None
    for k, p in enumerate(phrases):
        if p.kind != "number":
            continue
        unit = next((q for q in phrases[k + 1 : k + 2] if q.kind in ("unknown", "filler")), None)
        if unit is None or not SPEED_UNIT.match(unit.text):
            p.status, p.note = "not understood", "a number without a speed unit (m/s)"
            continue
        target = float(p.value)
        p.kind, p.value, p.note = (
            "speed",
            "target",
            f"target speed {float(p.value):g} m/s (term pace)",
        )
        p.text = f"{p.text} {unit.text}"
        unit.kind, unit.status, unit.text = "filler", "filler", ""
        if k > 0 and phrases[k - 1].text == "at":
            phrases[k - 1].text = ""
            p.text = f"at {p.text}"
    phrases[:] = [p for p in phrases if p.text]
    return target


def match_joint(robot: Robot, words: list[str]) -> str | None:
    """The limb joint named by ``words`` (sides and a part: "front right leg"), else ``None``;
    with no words, the first hip or shoulder joint."""
    tokens = {w for text in words for w in text.split()}
    part = next(
        (
            w
            for w in (
                "leg",
                "arm",
                "foot",
                "knee",
                "shoulder",
                "elbow",
                "thigh",
                "hip",
                "ankle",
                "limb",
            )
            if w in tokens
        ),
        None,
    )
    if part is None:
        hips = [
            j for j in robot.joints if j.endswith("leg_joint") or "shoulder" in j or "thigh" in j
        ]
        return next(iter(hips or robot.joints), None)
    aliases = {
        "leg": ("leg", "thigh", "hip"),
        "arm": ("shoulder",),
        "foot": ("foot", "ankle"),
        "knee": ("knee", "leg"),
        "shoulder": ("shoulder",),
        "elbow": ("elbow",),
        "thigh": ("thigh", "hip"),
        "hip": ("hip", "thigh"),
        "ankle": ("ankle", "foot"),
        "limb": ("leg", "shoulder", "thigh", "hip"),
    }[part]
    sides = tokens & {"front", "back", "rear", "hind", "left", "right", "fore"}
    sides = {"back" if s in ("rear", "hind") else "front" if s == "fore" else s for s in sides}

    def rank(
        joint: str,
    ) -> int | None:  # which alias the joint's name uses ("shoulder1" is a shoulder)
        return next(
            (
                i
                for i, a in enumerate(aliases)
                for w in joint.split("_")
                if w.rstrip("0123456789") == a
            ),
            None,
        )

    candidates = [j for j in robot.joints if rank(j) is not None and sides <= set(j.split("_"))]
    if not candidates:
        return None
    # hips before knees for "leg"; the joint with the fewest extra words is the plainest match
    return min(candidates, key=lambda j: (rank(j), len(j)))


# --------------------------------------------------------------------------- manipulation


def _manipulation(instruction: str, scene: Scene, card_name: str) -> Understanding:
    u = Understanding(instruction, "manipulation", scene=scene)
    vocabulary = card_words(
        f"{scene.summary} {scene.words} {scene.goal_doc} {card_name.replace('_', ' ')}"
    )
    extra = frozenset(ROBOT_WORDS | {"the", "its"})
    phrases = scan(tokenize(instruction), MANIPULATION, extra)
    u.phrases = phrases
    # unknown runs may hold object nouns: split them out
    split: list[Phrase] = []
    for p in phrases:
        if p.kind != "unknown":
            split.append(p)
            continue
        for word in p.text.split():
            if (
                word.rstrip("s") in OBJECT_NOUNS
                or word in OBJECT_NOUNS
                or word.split("'")[0] in OBJECT_NOUNS
            ):
                split.append(Phrase(word, "object", word.split("'")[0]))
            elif word in vocabulary:
                split.append(Phrase(word, "card", word, note="a word of the card"))
            elif split and split[-1].kind == "unknown":
                split[-1].text += f" {word}"
            else:
                split.append(Phrase(word, "unknown", status="not understood"))
    phrases = u.phrases = split
    for k, p in enumerate(
        phrases
    ):  # "the lock", "a sliding window": after a determiner a verb is a noun
        if p.kind == "verb" and k > 0 and phrases[k - 1].text in DETERMINERS:
            if p.text in OBJECT_NOUNS:
                p.kind, p.value = "object", p.text
            else:
                p.kind, p.status = "filler", "filler"
    if any(p.kind == "verb" and p.value == "turn" for p in phrases):  # "turn the faucet off"
        for k, p in enumerate(phrases):
            rest = [q for q in phrases[k + 1 :] if q.kind != "filler"]
            if p.kind == "place" and p.text in ("on", "off") and not rest:
                p.kind, p.value = "state", "open" if p.text == "on" else "closed"
    objects = list(scene.objects)
    avoiding: str | None = None
    pending: list[tuple[str, str, Phrase]] = []  # (touch | hit, card object, phrase)
    for p in phrases:
        if p.kind == "negation":
            u.refuse(f"'{p.text}': negation is not in the offline grammar")
        elif p.kind == "unsupported":
            p.status, p.note = "not understood", "outside the offline grammar"
            u.refuse(f"'{p.text}' is outside the offline grammar")
        elif p.kind == "verb":
            if avoiding is None:
                u.verbs.append(p.value)
                p.note = f"object verb '{p.value}'"
            else:
                p.status, p.note = "filler", ""
        elif p.kind == "avoid":
            avoiding = p.value
        elif p.kind == "object":
            noun = p.value.rstrip("s") if p.value not in vocabulary else p.value
            if noun not in vocabulary and p.value not in vocabulary:
                p.status, p.note = "not understood", f"the card has no {p.value}"
                if avoiding is None:
                    u.refuse(
                        f"the card has no {p.value} (it has: {'; '.join(scene.object_docs)}; goal: {scene.goal_doc or scene.goal})"
                    )
                avoiding = None
                continue
            target = _object_attribute(p.value, scene)
            if avoiding is not None:
                if target is None:
                    p.status, p.note = "not used", f"the card has no position for the {p.value}"
                else:
                    pending.append((avoiding, target, p))
                avoiding = None
            else:
                p.note = f"{target}" if target else "a word of the card"
        elif p.kind == "filler" and p.text in ("it", "its") and avoiding is not None:
            p.kind, p.status = "object", "used"
            pending.append((avoiding, objects[0], p))
            avoiding = None
        elif p.kind == "release":
            u.release = True
        elif p.kind == "state":
            u.state = p.value
            p.note = f"end state '{p.value}'"
        elif p.kind in ("goal", "place"):
            p.note = f"the card's goal ({scene.goal})" if p.kind == "goal" else ""
            p.status = "used" if p.kind == "goal" else "filler"
        elif p.kind == "amount":
            p.status, p.note = (
                "not used",
                f"the card's goal decides where it goes ({scene.goal_doc or scene.goal})",
            )
        elif p.kind == "card":
            p.status, p.note = "filler", ""
        elif p.kind == "number":
            p.status, p.note = "not used", "the card's goal decides how far"
        elif p.kind == "noterm":
            p.status, p.note = "not used", p.value
        if p.kind == "unknown":
            p.note = "not in the offline grammar"
    if avoiding is not None:
        u.refuse("'without touching/hitting' needs an object the card has")
    # an 'avoid' with an unknown object: the unknown words after it were the object
    # behaviour from the verbs
    verbs = set(u.verbs)
    if not verbs:
        u.refuse("no object verb the offline grammar knows")
    ups = {p.value for p in phrases if p.kind == "amount"}
    if "pull" in verbs and "up" in ups and not verbs & {"press"}:
        u.state = u.state or "pulled_up"
    if "press" in verbs or ("push" in verbs and "down" in ups):
        u.state = u.state or "pressed"
    for verb in u.verbs:
        if verb in VERB_STATE:
            asked = VERB_STATE[verb]
            if u.state is not None and u.state != asked and OPPOSITE.get(asked) == u.state:
                u.refuse(f"'{verb}' and '{u.state}' contradict each other")
            u.state = u.state or asked
    goal_states = {
        state
        for phrase, state in GOAL_STATES.items()
        if re.search(rf"\b{phrase}\b", scene.goal_doc.lower())
    }
    if (
        u.state is not None
        and goal_states
        and u.state not in goal_states
        and OPPOSITE.get(u.state) in goal_states
    ):
        u.refuse(
            f"the instruction asks for '{u.state.replace('_', ' ')}', but the card's goal is the opposite "
            f"({scene.goal}: {scene.goal_doc}); this card has no goal for '{u.state.replace('_', ' ')}'"
            " (pick the task whose goal it is)"
        )
    if (
        u.state is not None
        and not goal_states
        and u.state in ("open", "closed", "locked", "unlocked")
    ):
        u.refuse(
            f"'{u.state}' needs a part with that end state, and the card's goal is {scene.goal_doc or scene.goal}"
        )
    if verbs and verbs <= {"reach"}:
        u.behaviour = "reach"
    elif _is_tool(scene):
        u.behaviour = "tool"
    elif verbs & {"pick", "place", "insert", "remove", "hammer"}:
        u.behaviour = "pick_place"
    elif verbs & {"open", "close", "lock", "unlock", "turn"}:
        u.behaviour = "open_close"
    elif verbs:
        u.behaviour = "push_pull"
    if u.behaviour == "reach":
        u.state = None
    handled = (
        set() if u.behaviour == "reach" else set(objects[:1])
    )  # the object the hand moves (or the tool it holds)
    for how, target, p in pending:
        if how == "touch" and target in handled:
            p.status, p.note = "not understood", "avoiding the object the hand must move"
            u.refuse(f"'without touching {p.text}' contradicts moving it")
        elif how == "touch":
            u.avoid.append(target)
            p.note = f"keep the hand away from {target} (term avoid)"
        else:
            u.gentle.append(target)
            p.note = f"slow near {target} (term gentle)"
    if u.release and u.behaviour not in ("pick_place",):
        for p in phrases:
            if p.kind == "release":
                p.status, p.note = "not used", f"nothing is held in {u.behaviour}"
        u.release = False
    for p in phrases:
        if p.kind == "release" and p.status == "used":
            p.note = "open the hand at the goal (term release)"
        elif p.kind == "speed":
            p.note = (
                "slow hand motion (term slow)"
                if p.value == "slow"
                else "a cost per step until the goal (term time)"
            )
    speeds = {p.value for p in phrases if p.kind == "speed"}
    if len(speeds) > 1:
        u.refuse("contradicting speeds")
    u.speed = next(iter(speeds)) if len(speeds) == 1 else None
    if u.refusal is not None:
        u.refusal += f". The offline writer can write: {CAN_WRITE_MANIPULATION}. An LLM back-end (llm=openai) can do more."
    return u


def _is_tool(scene: Scene) -> bool:
    return len(scene.objects) > 1 and scene.goal_kind != "on"


def _object_attribute(noun: str, scene: Scene) -> str | None:
    """The card object whose description names ``noun`` (``handle`` -> ``obj1``)."""
    for name, doc in zip(scene.objects, scene.object_docs, strict=False):
        if noun in card_words(doc) or noun.rstrip("s") in card_words(doc):
            return name
    return None


# --------------------------------------------------------------------------- success metric


def measures(spec: SuccessSpec, u: Understanding) -> bool:
    """Whether success metric ``spec`` measures the behaviour read in ``u`` (locomotion: the
    direction; flips: front or back; waving: the joint; manipulation: always the card's goal)."""
    p = dict(spec.params)
    if u.family == "manipulation":
        return True
    if spec.metric == "displacement":
        axis = "x" if str(p.get("position", "")).endswith("_x") else "y"
        return (
            u.behaviour == "locomotion"
            and u.direction == f"{'+' if float(p['distance']) > 0 else '-'}{axis}"
        )
    if spec.metric == "flip":
        return u.behaviour == "flip" and u.direction == ("+x" if int(p["direction"]) > 0 else "-x")
    if spec.metric == "jump":
        return u.behaviour == "jump"
    if spec.metric == "hold_height":
        return u.behaviour == ("lie_down" if "max_height" in p else "stand")
    if spec.metric == "oscillate":
        return u.behaviour == "wave" and bool(u.limb) and f".{u.limb}." in f".{p['angle']}"
    return False


def success_notice(task: TaskSpec, instruction: str, registered: TaskSpec | None) -> list[str]:
    """What the run's success metric measures, when that is not obviously what the instruction
    asks: the instruction or the metric differ from the registered task's. Names the registered
    metric of the robot that measures the instruction's behaviour (``task.success=<name>``), or
    says that none does and how to give a success expression."""
    from rewardlab.tasks.success import describe_success, success_choices

    same_instruction = registered is not None and " ".join(instruction.lower().split()) == " ".join(
        registered.instruction.lower().split()
    )
    same_metric = registered is not None and registered.success == task.success
    if same_instruction and same_metric:
        return []
    judged = f"success is judged by: {describe_success(task.success)} ({task.success.metric})"
    if not same_metric:
        return [f"{judged}, chosen with task.success"]
    u = understand(task, instruction)
    if u.refusal is None and u.behaviour is not None and measures(task.success, u):
        return [judged]
    choices = success_choices(task)
    matching = [
        n
        for n, s in sorted(choices.items())
        if u.behaviour is not None and u.refusal is None and measures(s, u)
    ]
    head = f"the instruction differs from {task.name}'s: {judged}, not by the instruction"
    if matching:
        return [
            head,
            f"to judge it by what the instruction asks: task.success={matching[0]} ({describe_success(choices[matching[0]])})",
        ]
    if u.robot is not None:
        example = f"self.{u.robot.name}.{u.robot.root}.position_x < -2.0"
    else:
        example = f"self.{u.scene.objects[0] if u.scene else 'obj1'}.position[2] > 0.1"
    return [
        head,
        f"no registered metric of {task.card} measures it (registered: {', '.join(sorted(choices))}); "
        f"give one as an expression over the card, e.g. task.success='{example}'",
    ]
