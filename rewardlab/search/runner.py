"""The search loop behind ``rewardlab search``: sample K -> gate -> successive halving ->
keep the best -> reflect -> next iteration; then an optional seed sweep with baselines.

Run directory::

    config.yaml  .hydra/          resolved config
    search.json                   every candidate: gate verdict, budgets, success, rank, alarm;
                                  the best so far after each iteration; seed-sweep scores
    report.md                     tables of the above, the best program, the statistics
    iterations/<i>/prompt.json    the messages sampled in iteration i (+ reflection.md/json)
    iterations/<i>/candidates/<k>/   a normal reward-version folder: reward.py, check.json,
                                  gate.json, llm/, metrics.csv, tb/, checkpoints/, summary.json
    iterations/<i>/batches/rung_<r>/ launcher records of each rung (Hydra launchers)
    final/<method>/seed_<s>/      seed-sweep trainings (best, sparse, expert)
    rewards/v0 -> iterations/<i>/candidates/<k>   the best, so ``rewardlab evaluate run=<dir>``
                                  works on a search too
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rewardlab.gate import GATE_NAME, GateReport, gate, gate_settings, remember_check
from rewardlab.generators.base import Generator, GeneratorError
from rewardlab.generators.loop import generate_reward, make_generator
from rewardlab.generators.prompts import generation_messages
from rewardlab.reward.check import CheckReport
from rewardlab.rundir import read_summary, write_json, write_summary
from rewardlab.search.alarm import alarm_from_metrics
from rewardlab.search.halving import PROMOTIONS, HalvingResult, rung_budgets, successive_halving
from rewardlab.search.launch import Job, launch, launcher_problem, resolve_launcher
from rewardlab.search.reflection import Reflection, reflect, reflection_messages, render_reflection
from rewardlab.search.report import format_candidates, write_search_report
from rewardlab.tasks.registry import TaskSpec

Log = Callable[[str], None]


RUNG_FIELDS = ("budget", "status", "timesteps", "success", "success_low", "success_high", "progress",
               "progress_low", "progress_high", "curve_success", "curve_progress", "best_success", "wall_s")  # fmt: skip
"""What ``search.json`` keeps of every rung result (the full decision is in ``decisions.csv``)."""


def describe_result(res: dict[str, Any]) -> str:
    """``success 0.20 [0.08, 0.42] (20 episodes), progress 0.31 [...]`` for a rung result."""
    decision = res.get("decision")
    if not decision:
        return f"success {res['success']:.2f}, progress {res['progress']:.2f}"
    return (f"success {res['success']:.2f} [{res['success_low']:.2f}, {res['success_high']:.2f}], progress "
            f"{res['progress']:.2f} [{res['progress_low']:.2f}, {res['progress_high']:.2f}] "
            f"({decision['episodes']} episodes on the {decision['engine']})")  # fmt: skip


def settings_problem(search: Any) -> str | None:
    """Why the ``search.*`` settings cannot run (one line), or ``None``."""
    if str(search.promotion) not in PROMOTIONS:
        return f"search.promotion must be one of {', '.join(PROMOTIONS)}, got {search.promotion!r}"
    if int(search.decision_episodes) < 0:
        return f"search.decision_episodes must be >= 0, got {search.decision_episodes}"
    return launcher_problem(search)


def make_search_generator(cfg: Any) -> Generator:
    """The run's back-end; the offline synthesizer gets deterministic weight variants per
    sample (:mod:`rewardlab.search.variants`) so K samples are K different programs."""
    generator = make_generator(cfg.llm)
    if cfg.llm.backend == "offline":
        from rewardlab.search.variants import OfflineVariants

        generator = OfflineVariants(generator, period=int(cfg.search.candidates))
    return generator


def rollout_quantum(cfg: Any) -> int:
    """Steps one training iteration takes (rung budgets are multiples of it)."""
    from omegaconf import OmegaConf

    from rewardlab.config import AlgoConfig
    from rewardlab.training import algo_kwargs

    n_envs = int(cfg.train.n_envs)
    if cfg.algo.name == "ppo":
        algo = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AlgoConfig), cfg.algo))
        assert isinstance(algo, AlgoConfig)
        return int(algo_kwargs(algo, n_envs).get("n_steps", 2048)) * n_envs
    return n_envs


def _describe_gate(cfg: Any) -> str:
    settings, _ = gate_settings(cfg)
    return (f"{GATE_NAME} (static + smoke check; finite, |r| in [{settings.min_abs:g}, {settings.max_abs:g}] and "
            f"varying on reference rollouts; ranking accuracy >= {settings.min_ranking_accuracy:g} where "
            "demonstrations exist)")  # fmt: skip


def _digest(source: str) -> str:
    return hashlib.sha256(source.strip().encode()).hexdigest()


class Search:
    """One search run (see the module docstring); :meth:`run` does everything."""

    def __init__(self, cfg: Any, task: TaskSpec, run_dir: Path, log: Log) -> None:
        self.cfg, self.task, self.run_dir, self.log = cfg, task, run_dir, log
        self.s = cfg.search
        self.budgets = rung_budgets(
            int(self.s.min_steps),
            int(self.s.eta),
            int(self.s.max_steps),
            quantum=rollout_quantum(cfg),
        )
        self.seen: dict[str, str] = {}
        self.best: dict[str, Any] | None = None
        self.started = time.time()
        from rewardlab.pipeline import describe_generator

        self.record: dict[str, Any] = {
            "task": task.name, "instruction": task.instruction, "algo": cfg.algo.name,
            "generator": describe_generator(cfg), "status": "running", "run_dir": str(run_dir),
            "settings": {
                "candidates": int(self.s.candidates), "iterations": int(self.s.iterations),
                "eta": int(self.s.eta), "rung_budgets": self.budgets,
                "target_success": float(self.s.target_success), "launcher": resolve_launcher(self.s),
                "n_jobs": int(self.s.n_jobs), "eval_episodes": int(cfg.train.eval_episodes),
                "decision_episodes": int(self.s.decision_episodes), "promotion": str(self.s.promotion),
                "confidence": float(self.s.confidence),
                "gate": _describe_gate(cfg),
            },
            "iterations": [], "best": None, "llm": {"calls": 0, "cost_usd": 0.0},
            "programs": {"replies": 0, "no_code": 0, "check_rejected": 0, "gate_rejected": 0, "passed": 0},
            "steps_trained": 0, "steps_without_halving": 0,
        }  # fmt: skip

    # ------------------------------------------------------------------ records

    def rel(self, path: Path) -> str:
        return path.relative_to(self.run_dir).as_posix()

    def save(self) -> None:
        self.record["wall_s"] = round(time.time() - self.started, 1)
        self.record["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
        write_json(self.run_dir / "search.json", self.record)
        write_search_report(self.run_dir, self.record)

    # ------------------------------------------------------------------ sampling

    def screen(self, source: str, report: CheckReport) -> GateReport:
        """The gate on a program the generation loop has just checked (its report reused)."""
        remember_check(self.task, source, self.cfg, report)
        return gate(self.task, source, self.cfg)

    def count_programs(self, entry: dict[str, Any], attempts: list[Any]) -> None:
        """Tally what became of every reply (``search.json``: ``programs``), per candidate too."""
        outcomes = []
        for a in attempts:
            if a.reply is None:
                continue
            if a.source is None:
                outcome = "no_code"
            elif a.gate is not None:
                outcome = "passed" if a.gate["ok"] else "gate_rejected"
            else:
                outcome = "check_rejected"
            outcomes.append(outcome)
            self.record["programs"]["replies"] += 1
            self.record["programs"][outcome] += 1
        entry["programs"] = outcomes

    def sample(self, i: int, messages: list[dict[str, str]], previous: str | None, feedback: list[str],
               generator: Generator) -> list[dict[str, Any]]:  # fmt: skip
        """Sample, check and gate the K programs of iteration ``i`` (the gate runs inside the
        generation loop, so its rejections go back to the reward writer for a fix)."""
        K = int(self.s.candidates)
        candidates: list[dict[str, Any]] = []
        for k in range(K):
            cdir = self.run_dir / "iterations" / str(i) / "candidates" / str(k)
            cdir.mkdir(parents=True, exist_ok=True)
            entry: dict[str, Any] = {
                "iteration": i,
                "index": k,
                "sample": i * K + k,
                "dir": self.rel(cdir),
            }
            candidates.append(entry)
            result = generate_reward(
                self.task, self.task.instruction, generator, fix_attempts=int(self.cfg.llm.fix_attempts),
                check=self.cfg.check, out_dir=cdir, messages=messages, previous_source=previous,
                feedback=feedback, sample=i * K + k,
                price_per_mtok=(self.cfg.llm.price_input_per_mtok, self.cfg.llm.price_output_per_mtok),
                screen=self.screen,
            )  # fmt: skip
            self.record["llm"]["calls"] += sum(1 for a in result.attempts if a.reply is not None)
            self.record["llm"]["cost_usd"] += sum(a.cost_usd or 0.0 for a in result.attempts)
            entry["attempts"] = len(result.attempts)
            self.count_programs(entry, result.attempts)
            last = result.attempts[-1] if result.attempts else None
            if (
                result.gate is not None
                and not result.gate.ok
                and last is not None
                and last.source is not None
            ):
                (cdir / "reward.py").write_text(last.source)  # the rejected program, for the record
                if last.check is not None:
                    write_json(cdir / "check.json", last.check)
                self._record_gate(cdir, entry, result.gate)
                entry.update(
                    verdict="rejected",
                    reason="\n".join(result.gate.findings) or result.gate.summary(),
                )
                self.log(f"  it{i}/c{k}: {result.gate.summary()}")
                continue
            if not result.ok or result.source is None:
                entry.update(verdict="generation_failed", reason=result.failure_summary().strip())
                self.log(
                    f"  it{i}/c{k}: no acceptable program ({entry['reason'].splitlines()[0] if entry['reason'] else '?'})"
                )
                continue
            source = result.source
            (cdir / "reward.py").write_text(source)
            if result.report is not None:
                write_json(cdir / "check.json", result.report.to_dict())
            digest = _digest(source)
            if digest in self.seen:
                entry.update(verdict="duplicate", duplicate_of=self.seen[digest])
                self.log(f"  it{i}/c{k}: duplicate of {self.seen[digest]} (not trained again)")
                continue
            self.seen[digest] = entry["dir"]
            report = result.gate
            if report is None:  # the loop always screens; kept for generators that bypass it
                if result.report is not None:
                    remember_check(self.task, source, self.cfg, result.report)
                report = gate(self.task, source, self.cfg)
            self._record_gate(cdir, entry, report)
            if not report.ok:
                entry.update(
                    verdict="rejected", reason="\n".join(report.findings) or report.summary()
                )
                self.log(f"  it{i}/c{k}: {report.summary()}")
                continue
            entry["verdict"] = "trained"
        return candidates

    def _record_gate(self, cdir: Path, entry: dict[str, Any], report: GateReport) -> None:
        write_json(cdir / "gate.json", report.to_dict())
        entry["gate"] = {"ok": report.ok, "gate": report.gate, "findings": report.findings, "warnings": report.warnings,
                         "ranking_accuracy": report.ranking_accuracy, "progress_order": report.progress_order,
                         "seconds": (report.stats.get("timing") or {}).get("gate_s")}  # fmt: skip

    # ------------------------------------------------------------------ training

    def halve(self, i: int, candidates: list[dict[str, Any]]) -> HalvingResult:
        """Successive halving over the gated candidates of iteration ``i``."""
        by_key = {str(c["index"]): c for c in candidates if c.get("verdict") == "trained"}
        idir = self.run_dir / "iterations" / str(i)

        def train(keys: list[str], budget: int) -> dict[str, dict[str, Any]]:
            r = self.budgets.index(budget)
            self.log(f"  it{i} rung {r}: {len(keys)} candidate(s) -> {budget:,} steps")
            jobs = [
                Job(name=f"it{i}/c{k}@{budget}", directory=str(self.run_dir / by_key[k]["dir"]),
                    source_file=str(self.run_dir / by_key[k]["dir"] / "reward.py"), budget=budget,
                    seed=int(self.cfg.train.seed), stop_at_success=float(self.s.target_success),
                    checkpoint_freq=self.budgets[0], decision_episodes=int(self.s.decision_episodes),
                    confidence=float(self.s.confidence))
                for k in keys
            ]  # fmt: skip
            results = launch(self.cfg, self.task, jobs, idir / "batches" / f"rung_{r}", self.log)
            for k, res in zip(keys, results, strict=True):
                if res.get("status") == "ok":
                    self.log(
                        f"    c{k}: {describe_result(res)} after {res['timesteps']:,} steps ({res['wall_s']:.0f} s)"
                    )
                else:
                    self.log(f"    c{k}: training failed: {str(res.get('error'))[:200]}")
            return dict(zip(keys, results, strict=True))

        def on_rung(r: int, budget: int, state: HalvingResult) -> None:
            self._apply(by_key, state)
            if state.decisions and state.decisions[-1]["budget"] == budget:
                d = state.decisions[-1]
                extra = [k for k in d["promoted"] if k not in d["by_rank"]]
                if extra:
                    self.log(f"  kept c{', c'.join(extra)} too: not clearly worse than c{d['ranked'][0]} "
                             f"(interval rule; the rank rule would have pruned them)")  # fmt: skip
            self.record["iterations"][i]["decisions"] = state.decisions
            self.save()

        return successive_halving(
            list(by_key), self.budgets, int(self.s.eta), train,
            target_success=float(self.s.target_success), on_rung=on_rung, promotion=str(self.s.promotion),
        )  # fmt: skip

    def _apply(self, by_key: dict[str, dict[str, Any]], state: HalvingResult) -> None:
        """Copy the halving state into the candidates' records."""
        for rank, key in enumerate(state.ranking, start=1):
            c = by_key[key]
            rungs = state.history[key]
            last = rungs[-1]
            c["rungs"] = [{k: r.get(k) for k in RUNG_FIELDS if k in r} for r in rungs]
            c["rank"] = rank
            c["pruned_at"] = state.pruned.get(key)
            if key in state.failed:
                c.update(status="failed", reason=state.failed[key])
            elif state.target_reached == key:
                c["status"] = "target_reached"
            elif key in state.pruned:
                c["status"] = "pruned"
            else:
                c["status"] = (
                    "finished"
                    if last["budget"] == self.budgets[-1] or state.target_reached
                    else "training"
                )
            ok = [r for r in rungs if r.get("status") == "ok"]
            if ok:
                c.update(budget_reached=int(ok[-1]["timesteps"]), success=float(ok[-1]["success"]),
                         progress=float(ok[-1]["progress"]), best_success=float(ok[-1].get("best_success", 0.0)))  # fmt: skip
                c.update(
                    {
                        k: ok[-1][k]
                        for k in ("success_low", "success_high", "progress_low", "progress_high")
                        if k in ok[-1]
                    }
                )

    def finish_candidates(self, candidates: list[dict[str, Any]]) -> None:
        """Per trained candidate: hacking alarm, ``summary.json`` and ``curves.png``."""
        from rewardlab.report import plot_curves

        for c in candidates:
            if c.get("verdict") != "trained" or "rungs" not in c:
                continue
            cdir = self.run_dir / c["dir"]
            alarm = alarm_from_metrics(cdir / "metrics.csv", min_rise=float(self.s.hacking_min_rise),
                                       flat_tol=float(self.s.hacking_flat_tol))  # fmt: skip
            c["hacking"] = {"flagged": alarm.flagged, "reason": alarm.reason}
            if alarm.flagged:
                self.log(f"  reward-hacking alarm on {c['dir']}: {alarm.reason}")
            self.record["steps_trained"] += int(c.get("budget_reached", 0))
            write_summary(cdir, {
                "status": c.get("status"), "timesteps": c.get("budget_reached"),
                "success_rate": c.get("success"), "best_success_rate": c.get("best_success"),
                "progress": c.get("progress"), "rank": c.get("rank"), "pruned_at": c.get("pruned_at"),
                "rungs": c.get("rungs"), "hacking": alarm.to_dict(),
                "train_wall_s": round(sum(float(r.get("wall_s") or 0.0) for r in c.get("rungs", [])), 1),
            })  # fmt: skip
            try:
                plot_curves(cdir)
            except Exception as exc:  # plotting must never end a search
                self.log(f"  (no curves for {c['dir']}: {exc})")
        trained = sum(1 for c in candidates if c.get("verdict") == "trained")
        self.record["steps_without_halving"] += trained * self.budgets[-1]

    # ------------------------------------------------------------------ reflection

    def reflection(self, i: int, candidates: list[dict[str, Any]]) -> Reflection | None:
        """Reflection on the best candidate so far, with iteration ``i``'s gate findings."""
        if self.best is None:
            return None
        notes = []
        for c in candidates:
            if c.get("verdict") in ("generation_failed", "rejected"):
                reason = str(c.get("reason", "")).replace("rejected: ", "")
                notes.append(
                    f"candidate {c['index']} of iteration {i}: {reason.splitlines()[0] if reason else 'rejected'}"
                )
            for w in (c.get("gate") or {}).get("warnings", []):
                notes.append(f"candidate {c['index']} of iteration {i} (trained anyway): {w}")
        others = [
            f"iteration {c['iteration']} candidate {c['index']}: {c.get('status')}, trained {c.get('budget_reached', 0):,} "
            f"steps, success {c.get('success', 0.0):.2f}, progress {c.get('progress', 0.0):.2f}"
            for c in candidates if c.get("verdict") == "trained" and "rungs" in c and c["dir"] != self.best["dir"]
        ]  # fmt: skip
        hacking = self.best.get("hacking") or {}
        return reflect(
            self.run_dir / self.best["dir"], label=self.best["dir"], gate_notes=notes,
            hacking=hacking.get("reason") if hacking.get("flagged") else None, others=others,
            snapshots=int(self.s.snapshots),
        )  # fmt: skip

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        """Run the search; the exit code (0 when a best reward was found, 1 when none could be
        trained, 2 for a configuration error, 130 when interrupted)."""
        problem = settings_problem(self.s)
        if problem:
            self.record.update(status="failed", message=problem)
            self.save()
            self.log(f"error: {problem}")
            return 2
        try:
            return self._run()
        except KeyboardInterrupt:
            self.record.update(status="interrupted", message="interrupted by the user")
            self.save()
            self.log(f"\ninterrupted; everything so far is in {self.run_dir}")
            return 130

    def _run(self) -> int:
        K, N = int(self.s.candidates), int(self.s.iterations)
        self.log(f"searching rewards for {self.task.name}: {N} iteration(s) x {K} candidate(s), rung budgets "
                 f"{', '.join(f'{b:,}' for b in self.budgets)}, launcher {self.record['settings']['launcher']}")  # fmt: skip
        try:
            generator = make_search_generator(self.cfg)
        except GeneratorError as exc:
            self.record.update(status="failed", message=str(exc))
            self.save()
            self.log(f"error: {exc}")
            return 1
        base = generation_messages(
            self.task, self.task.instruction, few_shot=bool(self.cfg.llm.few_shot)
        )
        messages, previous = base, None
        feedback: list[str] = []
        target_hit = False
        for i in range(N):
            idir = self.run_dir / "iterations" / str(i)
            idir.mkdir(parents=True, exist_ok=True)
            write_json(
                idir / "prompt.json",
                {"messages": messages, "previous_source": previous, "feedback": feedback},
            )
            it_started = time.time()
            it: dict[str, Any] = {
                "index": i,
                "prompt": self.rel(idir / "prompt.json"),
                "candidates": [],
            }
            if (idir / "reflection.md").exists():
                it["reflection"] = self.rel(idir / "reflection.md")
            self.record["iterations"].append(it)
            self.log(f"iteration {i}: sampling {K} program(s) with {self.record['generator']}")
            it["candidates"] = self.sample(i, messages, previous, feedback, generator)
            self.save()
            halving = self.halve(i, it["candidates"])
            self.finish_candidates(it["candidates"])
            best_key = halving.best
            if best_key is not None:
                cand = next(c for c in it["candidates"] if str(c["index"]) == best_key)
                it["best"] = cand["dir"]
                if self.best is None or (cand["success"], cand["progress"]) > (
                    self.best["success"],
                    self.best["progress"],
                ):
                    self.best = {
                        k: cand.get(k)
                        for k in (
                            "dir",
                            "iteration",
                            "index",
                            "success",
                            "progress",
                            "budget_reached",
                            "hacking",
                        )
                    }
                    self.log(
                        f"  new best: {cand['dir']} (success {cand['success']:.2f}, progress {cand['progress']:.2f})"
                    )
            it["best_so_far"] = dict(self.best) if self.best else None
            it["wall_s"] = round(time.time() - it_started, 1)
            self.record["best"] = self.best
            self.save()
            if halving.target_reached is not None:
                self.log(
                    f"  target success {float(self.s.target_success):.2f} reached: search stops early"
                )
                target_hit = True
                break
            if i + 1 < N:
                refl = self.reflection(i, it["candidates"])
                if refl is not None:
                    nxt = self.run_dir / "iterations" / str(i + 1)
                    nxt.mkdir(parents=True, exist_ok=True)
                    (nxt / "reflection.md").write_text(render_reflection(refl) + "\n")
                    write_json(nxt / "reflection.json", refl.to_dict())
                    previous = (
                        (self.run_dir / self.best["dir"] / "reward.py").read_text()
                        if self.best
                        else None
                    )
                    assert previous is not None
                    messages = reflection_messages(self.task, self.task.instruction, previous, refl,
                                                   few_shot=bool(self.cfg.llm.few_shot))  # fmt: skip
                    feedback = refl.edits or ["keep the current weights"]
        if self.best is None:
            self.record.update(
                status="failed", message="no candidate could be trained in any iteration"
            )
            self.save()
            self.log(
                "no candidate could be trained; see search.json and the candidates' check.json/gate.json"
            )
            return 1
        self.finalize_best()
        if list(self.s.seeds):
            self.seed_sweep()
        self.record["status"] = "target_reached" if target_hit else "done"
        self.save()
        self.log(format_candidates(self.record))
        self.log(f"best: {self.best['dir']} (success {self.best['success']:.2f})")
        self.log(f"run directory: {self.run_dir}\n  report: {self.run_dir / 'report.md'}")
        return 0

    # ------------------------------------------------------------------ after the search

    def finalize_best(self) -> None:
        """Evaluate the best policy with videos and link it as ``rewards/v0``."""
        from rewardlab.checkpoints import load_policy
        from rewardlab.evaluation import run_episodes, summarize
        from rewardlab.wrappers import compile_for_task

        assert self.best is not None
        cdir = self.run_dir / self.best["dir"]
        train = self.cfg.train
        try:
            model, normalizer = load_policy(cdir, self.cfg.algo.name)
            program = compile_for_task((cdir / "reward.py").read_text(), self.task)
            final = summarize(run_episodes(
                self.task, model, episodes=int(train.eval_episodes), seed=20_000 + int(train.seed),
                program=program, normalizer=normalizer, video_dir=cdir / "videos",
                video_episodes=int(train.video_episodes), video_size=int(train.video_size),
            ))  # fmt: skip
        except Exception as exc:  # the search result stands without the final videos
            self.log(f"final evaluation of the best failed: {exc}")
            return
        summary = read_summary(cdir) or {}
        videos = [e["video"] for e in final["per_episode"] if e["video"]]
        # status `done`: as rewards/v0 of the run it is a trained version (RunDir.trained)
        summary.update(status="done", final_eval=final, videos=videos, best=True)
        write_summary(cdir, summary)
        self.best.update(final_success=final["success_rate"], videos=videos)
        link = self.run_dir / "rewards" / "v0"
        link.parent.mkdir(exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path("..") / self.best["dir"], target_is_directory=True)
        self.log(f"best {self.best['dir']}: final evaluation success {final['success_rate']:.2f}")
        for v in videos:
            self.log(f"  video: {v}")

    def seed_sweep(self) -> None:
        """Retrain the best reward (and the baselines) from scratch on ``search.seeds``."""
        from rewardlab.search.baselines import expert_program, sparse_program
        from rewardlab.stats import format_table, score_table

        assert self.best is not None
        budget = int(self.s.final_steps) or self.budgets[-1]
        final = self.run_dir / "final"
        methods: dict[str, tuple[str | None, str]] = {
            "search": (
                (self.run_dir / self.best["dir"] / "reward.py").read_text(),
                f"the best reward ({self.best['dir']})",
            ),
        }
        if bool(self.s.baselines):
            sparse = sparse_program(self.task)
            if sparse is not None:
                methods["sparse"] = (sparse, f"success indicator ({self.task.success.metric})")
            else:
                self.log(
                    f"  no sparse baseline: the {self.task.success.metric!r} metric is not readable by reward programs"
                )
            methods["expert"] = expert_program(self.task)
        jobs: list[Job] = []
        for name, (source, _) in methods.items():
            mdir = final / name
            mdir.mkdir(parents=True, exist_ok=True)
            source_file = None
            if source is not None:
                (mdir / "reward.py").write_text(source)
                source_file = str(mdir / "reward.py")
            for seed in self.s.seeds:
                jobs.append(Job(name=f"{name}/seed_{seed}", directory=str(mdir / f"seed_{seed}"), source_file=source_file,
                                budget=budget, seed=int(seed), stop_at_success=float(self.cfg.train.stop_at_success)))  # fmt: skip
        self.log(
            f"seed sweep: {', '.join(methods)} x seeds {list(self.s.seeds)} for {budget:,} steps"
        )
        results = launch(self.cfg, self.task, jobs, final / "batch", self.log)
        scores: dict[str, list[float]] = {name: [] for name in methods}
        metric = "progress" if str(self.s.score) == "progress" else "success"
        runs = []
        for job, res in zip(jobs, results, strict=True):
            name = job.name.split("/")[0]
            runs.append({"method": name, "seed": job.seed, "dir": self.rel(Path(job.directory)), **{
                k: res.get(k) for k in ("status", "timesteps", "success", "progress", "error")}})  # fmt: skip
            if res.get("status") == "ok":
                scores[name].append(float(res[metric]))
        table = score_table(
            {self.task.name: {k: v for k, v in scores.items() if v}}, clip=bool(self.s.clip_normalized),
            reps=int(self.s.bootstrap_reps), confidence=float(self.s.confidence), seed=int(self.s.bootstrap_seed),
        )  # fmt: skip
        self.record["final"] = {
            "budget": budget, "seeds": list(self.s.seeds), "score": metric,
            "methods": {k: v[1] for k, v in methods.items()}, "runs": runs, "scores": table,
        }  # fmt: skip
        write_json(final / "scores.json", table)
        self.log(format_table(table))


def run_search(cfg: Any, task: TaskSpec, run_dir: Path, log: Log) -> int:
    """Run ``rewardlab search`` in ``run_dir``; the exit code."""
    return Search(cfg, task, run_dir, log).run()
