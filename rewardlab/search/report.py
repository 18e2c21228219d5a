"""``report.md`` and the console table of a search run (from its ``search.json`` record)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _f(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def with_interval(c: dict[str, Any], metric: str) -> str:
    """``0.20 [0.08, 0.42]`` (the decision interval) or ``0.20`` (none recorded)."""
    low, high = c.get(f"{metric}_low"), c.get(f"{metric}_high")
    if low is None or high is None:
        return _f(c.get(metric))
    return f"{_f(c.get(metric))} [{low:.2f}, {high:.2f}]"


def candidate_rows(record: dict[str, Any]) -> list[list[str]]:
    """One row per candidate: iteration, candidate, verdict, budget, success, progress, rank,
    status, alarm."""
    best = (record.get("best") or {}).get("dir")
    rows = []
    for it in record.get("iterations", []):
        for c in it.get("candidates", []):
            verdict = c.get("verdict", "?")
            if verdict == "duplicate":
                verdict = f"duplicate of {c.get('duplicate_of')}"
            elif verdict in ("rejected", "generation_failed"):
                verdict = f"{verdict}: {str(c.get('reason', '')).splitlines()[0][:60] if c.get('reason') else ''}"
            elif (c.get("gate") or {}).get("ranking_accuracy") is not None:
                verdict += f" (ranking {c['gate']['ranking_accuracy']:.2f})"
            alarm = "HACKING?" if (c.get("hacking") or {}).get("flagged") else ""
            budget = c.get("budget_reached")
            rows.append([
                str(it["index"]), str(c["index"]) + (" *" if c.get("dir") == best else ""), verdict.replace("|", "/"),
                "-" if budget is None else f"{budget:,}", with_interval(c, "success"), with_interval(c, "progress"),
                _f(c.get("rank"), "d"), str(c.get("status", "-")), alarm,
            ])  # fmt: skip
    return rows


HEADER = ["iter", "cand", "gate", "steps", "success", "progress", "rank", "status", "alarm"]


def format_candidates(record: dict[str, Any]) -> str:
    """A plain-text table of every candidate (``*`` marks the best)."""
    rows = [HEADER, *candidate_rows(record)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def decision_text(settings: dict[str, Any]) -> str:
    """How promotion decisions were taken, in words."""
    episodes = settings.get("decision_episodes")
    if episodes:
        pct = round(100 * float(settings.get("confidence", 0.95)))
        basis = (f"{episodes} fresh evaluation episodes per candidate and rung, {pct}% intervals "
                 "(Wilson for success, Student t for progress)")  # fmt: skip
    else:
        basis = (
            f"the last training evaluation ({settings.get('eval_episodes')} episodes, no intervals)"
        )
    rule = settings.get("promotion", "rank")
    how = ("top 1/eta plus every candidate not clearly worse than the best" if rule == "interval"
           else "top 1/eta by point estimate")  # fmt: skip
    return f"{basis}; promotion rule `{rule}` ({how})"


def write_search_report(run_dir: Path, record: dict[str, Any]) -> None:
    """Write ``report.md`` for a search run."""
    from rewardlab.stats import format_table

    s = record["settings"]
    budgets = ", ".join(f"{b:,}" for b in s["rung_budgets"])
    lines = [
        f"# Reward search: {record['task']}", "", f"> {record['instruction']}", "",
        f"- status: **{record['status']}**" + (f" ({record['message']})" if record.get("message") else ""),
        f"- reward writer: {record['generator']}; algorithm: {record['algo']}",
        f"- {s['iterations']} iteration(s) x {s['candidates']} candidate(s); successive halving eta={s['eta']}, "
        f"rung budgets {budgets}; target success {s['target_success']:.2f}; gate: {s['gate']}",
        f"- decisions: {decision_text(s)}",
        f"- launcher: {s['launcher']} (n_jobs={s['n_jobs']}); wall time {record.get('wall_s', 0):.0f} s",
        f"- environment steps trained: {record.get('steps_trained', 0):,} (without halving: "
        f"{record.get('steps_without_halving', 0):,}); LLM calls {record['llm']['calls']}, "
        f"cost ${record['llm']['cost_usd']:.4f}",
    ]  # fmt: skip
    programs = record.get("programs")
    if programs and programs.get("replies"):
        lines.append(
            f"- replies {programs['replies']}: no code {programs['no_code']}, rejected by the checks "
            f"{programs['check_rejected']}, by the pre-flight gate {programs['gate_rejected']}, passed "
            f"{programs['passed']} (gate pass rate {programs['passed'] / max(1, programs['passed'] + programs['gate_rejected']):.0%})"
        )
    best = record.get("best")
    if best:
        lines.append(f"- best: `{best['dir']}`: success {_f(best.get('success'))} after "
                     f"{_f(best.get('budget_reached'), ',')} steps" +
                     (f", final evaluation {_f(best.get('final_success'))}" if best.get("final_success") is not None else ""))  # fmt: skip
    lines += ["", "## Candidates", "", "Ranked by the task's success metric at the budget each reached "
              "(ties: task progress), with the decision's intervals where recorded; `*` marks the best.", "",
              "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]  # fmt: skip
    lines += ["| " + " | ".join(r) + " |" for r in candidate_rows(record)]
    alarms = [(c["dir"], c["hacking"]["reason"]) for it in record.get("iterations", []) for c in it.get("candidates", [])
              if (c.get("hacking") or {}).get("flagged")]  # fmt: skip
    if alarms:
        lines += ["", "## Reward-hacking alarms", ""] + [f"- `{d}`: {r}" for d, r in alarms]
    history = [(it["index"], it.get("best_so_far")) for it in record.get("iterations", [])]
    if history:
        lines += [
            "",
            "## Best so far",
            "",
            "| after iteration | best | success | progress |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {i} | {b['dir'] if b else '-'} | {_f(b and b.get('success'))} | {_f(b and b.get('progress'))} |"
            for i, b in history
        ]
    refl = [it["reflection"] for it in record.get("iterations", []) if it.get("reflection")]
    if refl:
        lines += [
            "",
            "Reflections (the prompts that led to each iteration): "
            + ", ".join(f"[{r}]({r})" for r in refl),
        ]
    final = record.get("final")
    if final:
        pct = round(100 * float(final["scores"].get("confidence", 0.95)))
        lines += ["", "## Seed sweep", "",
                  f"Every method retrained from scratch for {final['budget']:,} steps on seeds {final['seeds']}; "
                  f"score: {final.get('score', 'success')} at the last evaluation; IQM with {pct}% stratified bootstrap intervals; normalized "
                  "score = (method - sparse) / |expert - sparse|.", ""]  # fmt: skip
        lines += [f"- {name}: {desc}" for name, desc in final["methods"].items()]
        lines += ["", format_table(final["scores"])]
    if best and (run_dir / best["dir"] / "reward.py").exists():
        lines += [
            "",
            "## Best reward program",
            "",
            "```python",
            (run_dir / best["dir"] / "reward.py").read_text().rstrip(),
            "```",
        ]
        if (run_dir / best["dir"] / "curves.png").exists():
            lines += ["", f"![curves]({best['dir']}/curves.png)"]
    (run_dir / "report.md").write_text("\n".join(lines) + "\n")
