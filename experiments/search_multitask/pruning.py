"""How often successive halving pruned the better program, read from the search consoles.

The scripted writer's programs have a quality known by construction (``programs.py``): the
``good`` reward and its reweighting ``good_v2`` above the single-term ``mediocre`` one, above
the ``hacking`` one. At every promotion decision of a server search (a rung followed by another
rung of the same iteration), each pair of trained candidates of different quality counts once;
the pair is an *inversion* when the better program was pruned while the worse one went on.
Decisions are read from ``console.log`` (the rung blocks each search prints), programs from
``unit.json``'s ``served`` list (one group of replies per candidate: its first reply and its
fix requests), so the same code reads runs made before and after the promotion rule changed.

Usage::

    python experiments/search_multitask/pruning.py results results_interval   # prints the table
"""

from __future__ import annotations

import json
import re
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

QUALITY = {"good": 3, "good_v2": 3, "mediocre": 2, "hacking": 1}
"""Quality tier of each trained kind (higher is better; other kinds are never trained)."""

RUNG = re.compile(r"^  it(\d+) rung (\d+): \d+ candidate\(s\) -> ([\d,]+) steps")
RESULT = re.compile(r"^    c(\d+): (?:success ([\d.]+).*?progress ([\d.]+)|training failed)")


def decisions_from_log(text: str) -> list[dict[str, Any]]:
    """Promotion decisions of a search console: ``iteration``, ``rung``, ``budget``, ``ranked``
    (every candidate evaluated at the rung, as printed) and ``promoted`` (those trained at the
    next rung of the same iteration); rungs not followed by another rung are not decisions."""
    blocks: list[dict[str, Any]] = []
    for line in text.splitlines():
        if m := RUNG.match(line):
            blocks.append({"iteration": int(m[1]), "rung": int(m[2]), "budget": int(m[3].replace(",", "")),
                           "ranked": [], "scores": {}})  # fmt: skip
        elif (m := RESULT.match(line)) and blocks:
            blocks[-1]["ranked"].append(int(m[1]))
            if m[2] is not None:
                blocks[-1]["scores"][int(m[1])] = (float(m[2]), float(m[3]))
    out = []
    for block, nxt in zip(blocks, blocks[1:], strict=False):
        if nxt["iteration"] == block["iteration"] and nxt["rung"] == block["rung"] + 1:
            out.append({**block, "promoted": nxt["ranked"]})
    return out


def programs_from_served(served: list[list[str]], candidates: int) -> dict[tuple[int, int], str]:
    """``{(iteration, index): program kind}``: each candidate's replies are one non-``fix``
    request followed by its ``fix`` requests; the last reply is the program it ended with."""
    groups: list[list[str]] = []
    for kind, program in served:
        if kind != "fix" or not groups:
            groups.append([])
        groups[-1].append(program)
    return {(n // candidates, n % candidates): group[-1] for n, group in enumerate(groups)}


def unit_pairs(unit_dir: Path) -> list[dict[str, Any]]:
    """Every (better, worse) pair of programs at a decision of one server search unit."""
    unit = json.loads((unit_dir / "unit.json").read_text())
    text = (unit_dir / "console.log").read_text()
    header = re.search(r"(\d+) iteration\(s\) x (\d+) candidate\(s\)", text)
    assert header is not None, unit_dir
    programs = programs_from_served(unit.get("served") or [], int(header[2]))
    pairs = []
    for d in decisions_from_log(text):
        for a, b in combinations([k for k in d["ranked"] if k in d["scores"]], 2):
            pa, pb = programs.get((d["iteration"], a)), programs.get((d["iteration"], b))
            if pa not in QUALITY or pb not in QUALITY or QUALITY[pa] == QUALITY[pb]:
                continue
            better, worse = (a, b) if QUALITY[pa] > QUALITY[pb] else (b, a)
            pairs.append({
                "unit": str(unit_dir), "iteration": d["iteration"], "budget": d["budget"],
                "better": programs[(d["iteration"], better)], "worse": programs[(d["iteration"], worse)],
                "better_score": d["scores"][better], "worse_score": d["scores"][worse],
                "inversion": better not in d["promoted"] and worse in d["promoted"],
                "both_kept": better in d["promoted"] and worse in d["promoted"],
            })  # fmt: skip
    return pairs


def server_units(out: Path) -> set[str]:
    """``seed_<s>/<task>`` of every finished server search unit of an output folder."""
    return {
        p.parent.relative_to(out / "units").parent.as_posix()
        for p in (out / "units").glob("seed_*/*/server/unit.json")
    }


def summarize(out: Path, units: set[str] | None = None) -> dict[str, Any]:
    """Pairs, inversions and steps trained over the server units of one output folder (only
    ``units`` when given)."""
    pairs: list[dict[str, Any]] = []
    steps = 0
    for unit_dir in sorted(p.parent for p in (out / "units").glob("seed_*/*/server/unit.json")):
        if units is not None and unit_dir.relative_to(out / "units").parent.as_posix() not in units:
            continue
        pairs += unit_pairs(unit_dir)
        steps += int(json.loads((unit_dir / "unit.json").read_text()).get("steps_trained") or 0)
    inversions = sum(p["inversion"] for p in pairs)
    # per pair of programs in a search (a pair meets at several decisions when both go on)
    per_pair: dict[tuple[str, int, str, str], bool] = {}
    for p in pairs:
        key = (p["unit"], p["iteration"], p["better"], p["worse"])
        per_pair[key] = per_pair.get(key, False) or p["inversion"]
    return {"pairs": pairs, "n": len(pairs), "inversions": inversions, "both_kept": sum(p["both_kept"] for p in pairs),
            "program_pairs": len(per_pair), "pairs_inverted": sum(per_pair.values()), "steps_trained": steps}  # fmt: skip


def write_pruning(before: Path, after: Path, path: Path | None = None) -> str:
    """A markdown comparison of two outputs (``before`` and ``after`` a rule change), written
    to ``path`` when given."""
    from rewardlab.stats import wilson_interval

    lines = ["| run | decisions on | (decision, pair) of different quality | better pruned, worse kept | rate [95% Wilson] | both kept | program pairs (per search) | better eliminated first | server steps trained |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    details = []
    common = server_units(before) & server_units(after)  # the same (seed, task) units on both sides
    for label, out in (("before", before), ("after", after)):
        s = summarize(out, common)
        budget = json.loads((out / "results.json").read_text())["budget"]
        basis = (f"{budget.get('decision_episodes')} fresh episodes, rule `{budget.get('promotion')}`" if budget.get("decision_episodes")
                 else f"{budget.get('eval_episodes')} training-eval episodes, rule `rank`")  # fmt: skip
        low, high = (
            wilson_interval(s["inversions"], s["n"]) if s["n"] else (float("nan"), float("nan"))
        )
        rate = s["inversions"] / s["n"] if s["n"] else float("nan")
        lines.append(f"| {label} (`{out.name}`) | {basis} | {s['n']} | {s['inversions']} | {rate:.2f} [{low:.2f}, {high:.2f}] | "
                     f"{s['both_kept']} | {s['program_pairs']} | {s['pairs_inverted']} | {s['steps_trained']:,} |")  # fmt: skip
        for p in s["pairs"]:
            unit = Path(p["unit"])
            details.append(f"| {label} | {unit.parts[-3]} {unit.parts[-2]} | it{p['iteration']} @ {p['budget']:,} | "
                           f"{p['better']} {p['better_score'][0]:.2f} ({p['better_score'][1]:.2f}) | {p['worse']} "
                           f"{p['worse_score'][0]:.2f} ({p['worse_score'][1]:.2f}) | "
                           f"{'**better pruned**' if p['inversion'] else 'both kept' if p['both_kept'] else 'better kept'} |")  # fmt: skip
    units = ", ".join(sorted(common))
    text = "\n".join([*lines, "", f"Units compared (the same on both sides): {units}.", "", "Every pair (success (progress) at the decision, as the search saw it):", "",
                      "| run | seed, task | decision | better program | worse program | outcome |", "|---|---|---|---|---|---|",
                      *details]) + "\n"  # fmt: skip
    if path is not None:
        path.write_text(text)
    return text


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    print(write_pruning(here / sys.argv[1], here / sys.argv[2]) if len(sys.argv) == 3 else __doc__)
