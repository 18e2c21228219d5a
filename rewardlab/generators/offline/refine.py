"""Offline refinement: feedback on a trained version becomes edits of its named terms.

Feedback is split into clauses (at ``.`` ``;`` ``,``, "and", "but"); text in square brackets
is evidence for the reader (automatic feedback puts its measurements there) and is never read.
Each clause is matched, longest phrase first, against:

- **behaviour phrases** (:data:`PHRASES`): what a person sees, e.g. "falls forward" (a cost on
  tipping forward, plus staying alive), "falls backward", "falls", "too slow" (more speed, or a
  higher set pace), "too fast", "drifts" (stay at the start), "spins" (calm the body), "jerky",
  "misses the object" (reach and grasp more), "ignores the object" (reach, grasp and move more),
  "drops it" (grasp and lift more), "pushes instead of grasping" (grasp and lift more);
- **term edits**: an operation word (``more``/``increase``/``reward`` x2, ``less``/``reduce``
  x0.5, ``drop``/``remove`` delete, ``add``) with a term name or a synonym ("speed" ->
  progress, "balance" -> upright, "energy" -> action ...); ``<term> up``/``<term> down``.

A clause with words left over that match nothing is reported as not understood (never
guessed). A phrase that names a term the reward does not have and cannot add (a grasp edit on
a push reward) is reported as not applicable. After the edits the writer checks whether every
term was scaled by the same factor: such a change is a uniform rescale, which reward
normalisation (SB3's ``VecNormalize``, on by default for PPO) cancels, and it says so.

:mod:`rewardlab.generators.feedback_tags` lists the structured tags per task family (what the
review page offers); each is a phrase above, so every tag maps to an edit this writer
understands.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, replace

from rewardlab.generators.offline.terms import Term

SYNONYMS: dict[str, tuple[str, ...]] = {
    "progress": ("progress", "speed", "velocity", "fast", "faster"),
    "pace": ("pace",),
    "alive": ("alive", "survive", "survival", "longer"),
    "upright": ("upright", "balance", "posture", "uprightness"),
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
    "goal": ("goal",),
    "release": ("release",),
}
UP = {
    "more",
    "increase",
    "increased",
    "stronger",
    "emphasise",
    "emphasize",
    "boost",
    "reward",
    "up",
    "higher",
    "bigger",
    "raise",
}
DOWN = {"less", "decrease", "reduce", "lower", "weaker", "down", "smaller", "too"}
DROP = {"drop", "remove", "delete", "without", "no"}
ADD = {"add", "include"}
FILLER = frozenset(
    [
        "the",
        "a",
        "an",
        "it",
        "its",
        "is",
        "was",
        "are",
        "of",
        "to",
        "on",
        "in",
        "at",
        "for",
        "and",
        "but",
        "please",
        "term",
        "terms",
        "weight",
        "penalty",
        "penalties",
        "bonus",
        "component",
        "components",
        "this",
        "that",
        "so",
        "very",
        "much",
        "bit",
        "little",
        "should",
        "be",
        "suggested",
        "edit",
        "hopper",
        "walker",
        "ant",
        "cheetah",
        "humanoid",
        "robot",
        "arm",
        "agent",
        "policy",
    ]
)

Edit = tuple[str, str]
"""``(operation, term)``: ``up`` x2, ``down`` x0.5, ``drop``, ``add``, ``faster``/``slower``
(progress x2 / x0.5, or a set pace x1.5 / /1.5; without a speed term, add a time cost / a
slow-hand cost)."""

PHRASES: dict[str, tuple[Edit, ...]] = {
    "falls forward": (("add", "tilt_forward"), ("add", "alive"), ("up", "upright")),
    "falls forwards": (("add", "tilt_forward"), ("add", "alive"), ("up", "upright")),
    "falls over forward": (("add", "tilt_forward"), ("add", "alive"), ("up", "upright")),
    "tips forward": (("add", "tilt_forward"), ("up", "upright")),
    "leans forward": (("add", "tilt_forward"),),
    "falls backward": (("add", "tilt_back"), ("add", "alive"), ("up", "upright")),
    "falls backwards": (("add", "tilt_back"), ("add", "alive"), ("up", "upright")),
    "falls back": (("add", "tilt_back"), ("add", "alive"), ("up", "upright")),
    "falls over backward": (("add", "tilt_back"), ("add", "alive"), ("up", "upright")),
    "tips backward": (("add", "tilt_back"), ("up", "upright")),
    "leans back": (("add", "tilt_back"),),
    "falls": (("add", "alive"), ("up", "upright")),
    "falls over": (("add", "alive"), ("up", "upright")),
    "fell": (("add", "alive"), ("up", "upright")),
    "falling": (("add", "alive"), ("up", "upright")),
    "too slow": (("faster", "progress"),),
    "slow": (("faster", "progress"),),
    "not fast enough": (("faster", "progress"),),
    "too fast": (("slower", "progress"),),
    "too quick": (("slower", "progress"),),
    "jerky": (("up", "action"),),
    "shaky": (("up", "action"),),
    "drifts": (("add", "stay"),),
    "drifting": (("add", "stay"),),
    "drifts away": (("add", "stay"),),
    "wanders off": (("add", "stay"),),
    "spins": (("add", "steady"),),
    "keeps spinning": (("add", "steady"),),
    "spins around": (("add", "steady"),),
    "misses the object": (("up", "reach"), ("up", "grasp")),
    "misses it": (("up", "reach"), ("up", "grasp")),
    "misses object": (("up", "reach"), ("up", "grasp")),
    "ignores object": (("up", "reach"), ("up", "grasp"), ("up", "move")),
    "ignores the object": (("up", "reach"), ("up", "grasp"), ("up", "move")),
    "ignores it": (("up", "reach"), ("up", "grasp"), ("up", "move")),
    "drops it": (("up", "grasp"), ("up", "lift")),
    "drops the object": (("up", "grasp"), ("up", "lift")),
    "lets go too early": (("up", "grasp"), ("up", "lift")),
    "pushes instead of grasping": (("up", "grasp"), ("up", "lift")),
    "pushes instead of grasps": (("up", "grasp"), ("up", "lift")),
    "pushes it instead of grasping it": (("up", "grasp"), ("up", "lift")),
    "pushes it instead of picking it up": (("up", "grasp"), ("up", "lift")),
    "does not grasp": (("up", "grasp"), ("up", "lift")),
    "doesn't grasp": (("up", "grasp"), ("up", "lift")),
    "stops short of the goal": (("up", "move"), ("add", "goal")),
    "stops short": (("up", "move"), ("add", "goal")),
    "jerky arm": (("up", "action"),),
}
"""Behaviour phrases a person writes -> edits (see the module docstring)."""

EVIDENCE = re.compile(r"\[[^\]]*\]")
"""Text in square brackets: evidence shown to the reward writer, never read as an edit."""

_WORDS = re.compile(r"[a-z]+(?:'[a-z]+)?")


def feedback_edits(feedback: list[str], names: set[str]) -> tuple[list[Edit], list[str]]:
    """Turn feedback lines into ``(op, term)`` edits; also return the clauses not understood.

    ``names`` are the terms of the reward being refined (an edit of a term it does not have
    becomes ``add``).

    Example:
        >>> feedback_edits(["more speed; drop the action penalty", "falls"], {"progress", "action"})
        ([('up', 'progress'), ('drop', 'action'), ('add', 'alive'), ('up', 'upright')], [])
        >>> feedback_edits(["it falls forward; more upright"], {"progress", "upright"})[0]
        [('add', 'tilt_forward'), ('add', 'alive'), ('up', 'upright')]
    """
    edits: list[Edit] = []
    unknown: list[str] = []
    phrases = sorted(PHRASES, key=lambda p: -len(p.split()))
    for line in feedback:
        line = EVIDENCE.sub(" ", line).replace("suggested edit:", " ")
        for clause in filter(
            None, (c.strip() for c in re.split(r"[.;,\n]| and | but | then ", line.lower()))
        ):
            found: list[Edit] = []
            rest = f" {' '.join(_WORDS.findall(clause))} "
            for phrase in phrases:
                if f" {phrase} " in rest:
                    found += PHRASES[phrase]
                    rest = rest.replace(f" {phrase} ", " ")
            words = rest.split()
            mentioned = [
                n for n, syn in SYNONYMS.items() if n in words or any(w in syn for w in words)
            ]
            mentioned += [n for n in sorted(names) if n in words and n not in mentioned]
            known = (
                set(FILLER)
                | UP
                | DOWN
                | DROP
                | ADD
                | {w for n in mentioned for w in (n, *SYNONYMS.get(n, ()))}
            )
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
            leftover = [w for w in words if w not in known]
            if found:
                edits += [e for e in found if e not in edits]
                if leftover and not mentioned and len(leftover) > 2:
                    unknown.append(" ".join(leftover))
            elif words:
                unknown.append(clause)
    return edits, unknown


_PACE = re.compile(r"abs\(([-\w]+) - ([\d.]+)\) / ([\d.]+)")


def refine_terms(
    terms: list[Term], edits: list[Edit], library: dict[str, Term]
) -> tuple[list[Term], list[str]]:
    """Apply ``edits`` to ``terms``; return the new terms and a log of what changed (including
    edits that could not apply)."""
    out = list(terms)
    log: list[str] = []
    for op, name in edits:
        if op in ("faster", "slower"):
            pace = next(
                (i for i, t in enumerate(out) if t.name == "pace" and _PACE.search(t.expr)), None
            )
            if pace is not None:
                term = out[pace]
                found = _PACE.search(term.expr)
                assert found is not None
                old = float(found.group(2))
                new = round(old * 1.5 if op == "faster" else old / 1.5, 3)
                expr = _PACE.sub(f"abs({found.group(1)} - {new:g}) / {new:g}", term.expr)
                out[pace] = replace(
                    term, expr=expr, comment=term.comment.replace(f"{old:g} m/s", f"{new:g} m/s")
                )
                log.append(f"pace: set speed {old:g} -> {new:g} m/s")
                continue
            if any(t.name == "progress" for t in out) or "progress" in library:
                op = "up" if op == "faster" else "down"
            else:  # no speed term (manipulation): a time cost, or a cost on fast hand motion
                op, name = "add", "time" if op == "faster" else "slow"
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


def uniform_scale(before: list[Term], after: list[Term]) -> float | None:
    """The factor when ``after`` is ``before`` with every weight scaled by the same factor (the
    same terms, the same expressions), else ``None``."""
    if [(t.name, t.expr) for t in before] != [(t.name, t.expr) for t in after] or not before:
        return None
    ratios = {round(a.weight / b.weight, 9) for a, b in zip(after, before, strict=True) if b.weight}
    if len(ratios) == 1 and all(b.weight for b in before):
        factor = ratios.pop()
        return factor if factor != 1.0 else None
    return None


@dataclass(frozen=True)
class Refinement:
    """What feedback did to a reward: the new terms, a log, what was not understood, warnings."""

    terms: list[Term]
    log: list[str]
    unknown: list[str]
    warnings: list[str]


def refine(terms: list[Term], feedback: list[str], library: dict[str, Term]) -> Refinement:
    """Read ``feedback`` and apply it to ``terms`` (see the module docstring)."""
    edits, unknown = feedback_edits(feedback, {t.name for t in terms})
    new, log = refine_terms(terms, edits, library)
    warnings = []
    factor = uniform_scale(terms, new)
    if factor is not None:
        warnings.append(
            f"every term was scaled by {factor:g}: a uniform rescale, which reward normalisation "
            "(VecNormalize, on for PPO) cancels; the policy will learn the same thing"
        )
    if not edits:
        warnings.append("no edit was understood: the new version equals its parent")
    return Refinement(new, log, unknown, warnings)


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
                terms.append(
                    Term(key.value, weight, expr, f"{key.value} (kept from the previous version)")
                )
            return terms
    return None
