"""The E2CL rounds: explore -> detect -> feedback -> correct -> verify, recorded in the run.

One round on the current version ``vP`` of a run (``rewardlab refine run=<dir> feedback=auto``
runs ``e2cl.rounds`` of them):

1. **explore** ``vP`` (its trained policy, teacher-free and teacher-guided,
   :func:`explore_version`) and **detect** errors: ``rewards/vP/findings.json``, frames and
   clips under ``rewards/vP/e2cl/``;
2. the findings of the highest severity present (errors, else warnings; never info) are the
   **triggers**; no triggers: the round ends, nothing to correct;
3. **feedback**: a templated line per trigger with the edit chosen for it (memory prefers
   edits that fixed the same kind of finding on similar tasks, avoids refused ones and never
   repeats an edit refused on this very version; with the offline writer, which acts on edits
   only, a round without an untried edit ends the rounds as ``exhausted``), the
   memory's guidance lines, the LLM's summary with an LLM back-end, and the other findings as
   the prompt's observation;
4. **correct**: the next version ``vN`` through the ordinary refinement path
   (:func:`rewardlab.pipeline.refined_reward`: ``feedback.json``, prompt and reply, diff);
5. **verify**: ``vN`` must differ from ``vP``, pass the pre-flight gate
   (:func:`rewardlab.gate.gate`), be trained with the run's budget, and a fresh
   exploration of it (same seeds) must no longer show any trigger (same
   :attr:`~rewardlab.e2cl.findings.Finding.key`); its success rate and its
   mean task progress must not fall more than ``e2cl.success_tolerance`` /
   ``e2cl.progress_tolerance`` below its parent's. Accepted: ``vN`` becomes
   current. Refused: ``vN`` stays on disk marked refused and ``vP`` stays current.
   ``rewards/vN/verification.json`` records the verdict and why;
6. **remember**: one memory record per trigger (finding, feedback, correction, outcome).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from rewardlab.checkpoints import load_policy
from rewardlab.config import E2CLConfig, RewardLabConfig
from rewardlab.e2cl.detect import detect
from rewardlab.e2cl.explore import (
    Exploration,
    body_limits,
    explore,
    render_clip,
    render_frames,
    sb3_actor,
    teacher_actor,
)
from rewardlab.e2cl.feedback import feedback_lines, summarise
from rewardlab.e2cl.findings import Finding, load_findings, save_findings, triggering
from rewardlab.e2cl.memory import (
    Memory,
    MemoryRecord,
    choose_action,
    guidance_lines,
    refused_here,
)
from rewardlab.generators.fewshot import task_tokens
from rewardlab.pipeline import record_run, refined_reward, train_version
from rewardlab.rundir import RunDir, read_json, write_json
from rewardlab.tasks.registry import TaskSpec
from rewardlab.wrappers import RewardFailure, compile_for_task, make_env

ACCEPTED, REFUSED, EXHAUSTED = "accepted", "refused", "exhausted"
log = logging.getLogger(__name__)


def e2cl_config(cfg: RewardLabConfig) -> E2CLConfig:
    """The run's ``e2cl`` settings."""
    return cfg.e2cl


def _success(run_dir: Path, version: int) -> float | None:
    summary = RunDir(run_dir).version_summary(version)
    return float(summary["success_rate"]) if summary and "success_rate" in summary else None


def _progress(run_dir: Path, version: int) -> float | None:
    summary = RunDir(run_dir).version_summary(version)
    return (
        float(summary["final_eval"]["mean_progress"])
        if summary and "final_eval" in summary
        else None
    )


# --------------------------------------------------------------------------- explore a version


def attach_media(
    task: TaskSpec,
    exploration: Exploration,
    findings: list[Finding],
    vdir: Path,
    config: E2CLConfig,
) -> None:
    """Render frames (and a clip) at the evidence steps of the first ``media_findings``
    errors and warnings; paths relative to ``vdir`` go into their evidence."""
    ids = {t.id for t in exploration.all()}
    shown = [f for f in findings if f.severity != "info" and f.evidence.trajectory in ids][
        : config.media_findings
    ]
    for i, finding in enumerate(shown):
        trajectory = exploration.get(finding.evidence.trajectory)
        name = f"{i:02d}_{finding.kind}"
        if config.frames > 0 and finding.evidence.steps:
            paths = render_frames(task, trajectory, finding.evidence.steps[: config.frames], vdir / "e2cl" / "frames",
                                  prefix=name, size=config.frame_size)  # fmt: skip
            finding.evidence.frames = [p.relative_to(vdir).as_posix() for p in paths]
        if config.clips and finding.evidence.steps:
            clip = render_clip(task, trajectory, finding.evidence.steps[0], vdir / "e2cl" / "clips" / f"{name}.mp4",
                               size=config.frame_size)  # fmt: skip
            finding.evidence.clip = clip.relative_to(vdir).as_posix() if clip is not None else None


def explore_version(
    cfg: RewardLabConfig, task: TaskSpec, run_dir: Path, version: int
) -> list[Finding]:
    """Explore trained version ``version`` and detect its errors; writes ``findings.json``
    and ``e2cl/exploration.json`` (and frames, clips) into its folder."""
    config = e2cl_config(cfg)
    vdir = RunDir(run_dir).version_dir(version)
    source = (vdir / "reward.py").read_text()
    program = compile_for_task(source, task)
    model, normalizer = load_policy(vdir, cfg.algo.name)
    teacher = teacher_actor(config.teacher) if config.teacher else None
    started = time.time()
    exploration = explore(task, program, sb3_actor(model, normalizer), config, teacher=teacher)
    env = make_env(task)
    low, high = env.action_space.low, env.action_space.high  # type: ignore[attr-defined]
    env.close()
    findings = detect(
        exploration, source=source, limits=body_limits(task), robot=task.load_card().robot,
        action_low=low, action_high=high, can_terminate=exploration.can_terminate, vdir=vdir,
        eval_success=_success(run_dir, version), config=config,
        hacking_min_rise=float(cfg.search.hacking_min_rise), hacking_flat_tol=float(cfg.search.hacking_flat_tol),
    )  # fmt: skip
    attach_media(task, exploration, findings, vdir, config)
    write_json(vdir / "e2cl" / "exploration.json", exploration.summary())
    save_findings(vdir / "findings.json", findings, version=version, explored_s=round(time.time() - started, 1),
                  notes=exploration.notes, time=time.strftime("%Y-%m-%d %H:%M:%S"))  # fmt: skip
    log.info(f"explored v{version}: {len(exploration.all())} trajectories, {len(findings)} finding(s)"
        + "".join(f"\n  {f.severity}: {f.message}" for f in findings))  # fmt: skip
    return findings


# --------------------------------------------------------------------------- one round


@dataclass
class RoundResult:
    """What one round did."""

    parent: int
    version: int | None = None
    """The correction written (``None``: nothing to correct)."""
    outcome: str = "clean"
    """``clean`` (no trigger), ``exhausted`` (no untried edit for the offline writer),
    ``accepted`` or ``refused``."""
    reason: str = ""
    triggers: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)
    """Trigger keys still found after the correction."""
    success_parent: float | None = None
    success_candidate: float | None = None
    progress_parent: float | None = None
    progress_candidate: float | None = None

    @property
    def current(self) -> int:
        """The version current after the round."""
        return (
            self.version if self.outcome == ACCEPTED and self.version is not None else self.parent
        )


def _gate(cfg: RewardLabConfig, task: TaskSpec, vdir: Path, source: str) -> tuple[bool, list[str]]:
    """The pre-flight gate's verdict on ``source``: the one the refinement step just recorded
    in ``gate.json`` for this very program, else a fresh :func:`~rewardlab.gate.gate`."""
    from rewardlab.gate import gate

    path = vdir / "gate.json"
    if path.exists() and path.stat().st_mtime >= (vdir / "reward.py").stat().st_mtime:
        data = read_json(path)
        return bool(data.get("ok")), [str(x) for x in data.get("findings", [])]
    report = gate(task, source, cfg)
    write_json(path, report.to_dict())
    return report.ok, list(report.findings)


def _worse(result: RoundResult, config: E2CLConfig) -> str:
    """Why the candidate does worse at the task than its parent (``""``: it does not)."""
    for what, before, after, tol in (
        ("success", result.success_parent, result.success_candidate, config.success_tolerance),
        (
            "task progress",
            result.progress_parent,
            result.progress_candidate,
            config.progress_tolerance,
        ),
    ):
        if before is not None and after is not None and after < before - tol:
            return f"{what} fell from {before:.2f} to {after:.2f}"
    return ""


def run_round(
    cfg: RewardLabConfig,
    task: TaskSpec,
    run_dir: Path,
    parent: int,
    *,
    extra: list[str] | None = None,
) -> RoundResult:
    """One explore -> feedback -> correct -> verify round on version ``parent`` (see the module
    docs); ``extra``: feedback lines added as they are (e.g. the command's tags)."""
    config = e2cl_config(cfg)
    pdir = RunDir(run_dir).version_dir(parent)
    findings = load_findings(pdir / "findings.json") if (pdir / "findings.json").exists() else None
    if findings is None:
        findings = explore_version(cfg, task, run_dir, parent)
    result = RoundResult(
        parent, success_parent=_success(run_dir, parent), progress_parent=_progress(run_dir, parent)
    )
    triggers = triggering(findings)
    result.triggers = [f.key for f in triggers]
    if not triggers:
        result.reason = "no error or warning found"
        log.info(f"v{parent}: nothing to correct ({len(findings)} info finding(s))")
        return result
    memory = Memory(config.memory)
    retrieved = memory.similar(task, task.instruction, {f.kind for f in triggers})
    records = [r for r, _ in retrieved]
    chosen = {
        f.key: choose_action(f, retrieved, refused_here(records, str(run_dir), parent, f))
        for f in triggers
    }
    if cfg.llm.backend == "offline" and not any(chosen.values()):
        # The offline writer acts on edits only: without an untried one it would write the same
        # program again (an LLM can still act on the findings' words).
        result.outcome = EXHAUSTED
        result.reason = "no untried edit for " + ", ".join(result.triggers)
        log.info(f"v{parent}: {result.reason}")
        return result
    lines = feedback_lines(triggers, chosen)
    guidance = guidance_lines(retrieved, config.memory_k)
    source = (pdir / "reward.py").read_text()
    summary = None
    if config.summarise:
        n = len(list((pdir / "e2cl").glob("summary_*")))
        summary = summarise(cfg, task, source, findings, pdir / "e2cl" / f"summary_{n}")
    feedback = [*([f"Summary: {summary}"] if summary else []), *lines, *guidance, *(extra or [])]
    others = [f.message for f in findings if f not in triggers and f.severity != "info"]
    version, candidate, failure = refined_reward(cfg, task, run_dir, parent, feedback,
                                                 observation="; ".join(others))  # fmt: skip
    result.version = version
    vdir = RunDir(run_dir).version_dir(version)
    record = read_json(vdir / "feedback.json")
    record["e2cl"] = {"findings": f"rewards/v{parent}/findings.json", "triggers": [f.to_dict() for f in triggers],
                      "edits": chosen, "summary": summary, "memory": guidance}  # fmt: skip
    write_json(vdir / "feedback.json", record)
    gate_ok, gate_findings = False, list[str]()
    if failure or candidate is None:
        result.outcome, result.reason = REFUSED, f"no acceptable corrected program: {failure}"
    elif candidate.strip() == source.strip():
        result.outcome, result.reason = REFUSED, "the correction did not change the program"
    else:
        gate_ok, gate_findings = _gate(cfg, task, vdir, candidate)
        if not gate_ok:
            result.outcome, result.reason = (
                REFUSED,
                "the pre-flight gate rejected it: " + "; ".join(gate_findings[:3]),
            )
    if result.outcome != REFUSED and candidate is not None:
        try:
            record_run(run_dir, cfg, task, "refining")
            train_version(cfg, task, run_dir, version, candidate)
        except RewardFailure as exc:
            result.outcome, result.reason = REFUSED, f"training stopped: {exc}"
    if result.outcome != REFUSED:
        after = explore_version(cfg, task, run_dir, version)
        keys = {f.key for f in after}
        result.remaining = [k for k in result.triggers if k in keys]
        result.success_candidate = _success(run_dir, version)
        result.progress_candidate = _progress(run_dir, version)
        refusal = _worse(result, config)
        if result.remaining:
            result.outcome = REFUSED
            result.reason = "still found after the correction: " + ", ".join(result.remaining)
        elif refusal:
            result.outcome, result.reason = REFUSED, refusal
        else:
            result.outcome = ACCEPTED
            result.reason = "passed the gate; every trigger is gone in a fresh exploration"
    write_json(vdir / "verification.json", {
        "parent": parent, "version": version, "outcome": result.outcome, "accepted": result.outcome == ACCEPTED,
        "reason": result.reason, "triggers": result.triggers, "remaining": result.remaining, "gate_ok": gate_ok,
        "gate_findings": gate_findings, "success_parent": result.success_parent,
        "success_candidate": result.success_candidate, "progress_parent": result.progress_parent,
        "progress_candidate": result.progress_candidate, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    })  # fmt: skip
    diff = (vdir / "diff.patch").read_text()[:2000] if (vdir / "diff.patch").exists() else ""
    words = task_tokens(task, task.instruction)
    memory.add(MemoryRecord(
        task=task.name, instruction=task.instruction, kind=f.kind, subject=f.subject, message=f.message,
        action=chosen[f.key], outcome=result.outcome, reason=result.reason, feedback=feedback,
        words=words, run=str(run_dir), parent=parent, version=version,
        diff=diff, success_before=result.success_parent, success_after=result.success_candidate,
    ) for f in triggers)  # fmt: skip
    log.info(f"v{version} {result.outcome}: {result.reason}")
    return result


def run_e2cl(
    cfg: RewardLabConfig, task: TaskSpec, run_dir: Path, *, extra: list[str] | None = None
) -> int:
    """``e2cl.rounds`` rounds from ``cfg.version`` (default: the current version), stopping
    early when a round finds nothing to correct; the exit code (0: the rounds ran, whatever
    their verdicts; 2: nothing to refine). Ctrl-C and SIGTERM propagate: the caller's
    :meth:`~rewardlab.rundir.RunDir.running` block records the run as stopped."""
    config = e2cl_config(cfg)
    run = RunDir(run_dir)
    parent = run.resolve_version(cfg.version)
    if parent is None or not run.trained(parent):
        log.info(f"error: {run_dir} has no trained reward version to explore")
        return 2
    if run.source(parent) is None:
        log.info(
            f"error: v{parent} of {run_dir} has no reward program (trained on the env's reward)"
        )
        return 2
    results: list[RoundResult] = []
    for r in range(config.rounds):
        log.info(f"\nE2CL round {r + 1}/{config.rounds} on v{parent}")
        result = run_round(cfg, task, run_dir, parent, extra=extra)
        results.append(result)
        if result.outcome in ("clean", EXHAUSTED):
            break
        parent = result.current
    message = "; ".join(
        f"v{x.parent}->{'v' + str(x.version) if x.version is not None else '-'} {x.outcome}"
        for x in results
    )
    record_run(run_dir, cfg, task, "done", f"E2CL: {message}")
    log.info(f"E2CL done: {message}; current version v{parent}\nrun directory: {run_dir}")
    return 0
