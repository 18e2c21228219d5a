"""Generate a reward program that passes the checks: prompt -> reply -> code -> check -> fix.

Every call is recorded under ``<out_dir>/llm/attempt_<n>.json`` (messages, raw reply, model,
parameters, token usage, latency, extracted code, findings) before the next one starts, so
nothing is lost when a later call fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardlab.config import CheckConfig, LLMConfig
from rewardlab.generators.base import (
    GenerationRequest,
    Generator,
    GeneratorError,
    Reply,
    WriterRefusal,
    extract_code,
)
from rewardlab.generators.prompts import fix_messages, generation_messages
from rewardlab.reward.check import CheckReport, check_program
from rewardlab.rundir import write_json
from rewardlab.tasks.registry import TaskSpec

if TYPE_CHECKING:
    from rewardlab.gate import GateReport

Screen = Callable[[str, CheckReport], "GateReport"]
"""A further test of a program that passed the check (``rewardlab.gate.gate`` bound to
the task and config): ``screen(source, check_report) -> GateReport``."""


def make_generator(llm: LLMConfig) -> Generator:
    """The back-end named by ``llm.backend`` (LLM back-ends wrapped in the reply cache)."""
    if llm.backend == "offline":
        from rewardlab.generators.offline import OfflineGenerator

        return OfflineGenerator()
    if llm.backend == "replay":
        from rewardlab.generators.records import ReplayGenerator

        if not llm.replay_from:
            raise GeneratorError("llm=replay needs llm.replay_from=<run dir or cache dir>[,<more>]")
        return ReplayGenerator([Path(p.strip()) for p in llm.replay_from.split(",")])
    if llm.backend == "openai":
        from rewardlab.generators.openai_backend import OpenAIConfig, OpenAIGenerator
        from rewardlab.generators.records import CachedGenerator

        generator: Generator = OpenAIGenerator(
            OpenAIConfig(
                model=llm.model,
                base_url=llm.base_url,
                api_key_env=llm.api_key_env,
                temperature=llm.temperature,
                max_tokens=llm.max_tokens,
                timeout_s=llm.timeout_s,
                max_retries=llm.max_retries,
                backoff_s=llm.backoff_s,
            )  # fmt: skip
        )
        if llm.cache_dir:
            identity = {"backend": llm.backend, "model": llm.model, "base_url": llm.base_url,
                        "temperature": llm.temperature, "max_tokens": llm.max_tokens}  # fmt: skip
            generator = CachedGenerator(generator, Path(llm.cache_dir).expanduser(), identity)
        return generator
    raise ValueError(f"unknown llm.backend {llm.backend!r}; use 'offline', 'openai' or 'replay'")


def call_cost(reply: Reply, price_per_mtok: tuple[float, float]) -> float | None:
    """US dollars for one call from its token usage and a (input, output) price per million
    tokens; ``None`` when either is unknown, 0 for cache hits and replays."""
    if reply.params.get("cache") == "hit" or reply.params.get("replayed"):
        return 0.0
    if not any(price_per_mtok) or not reply.usage:
        return None
    prompt, completion = (
        reply.usage.get("prompt_tokens", 0),
        reply.usage.get("completion_tokens", 0),
    )
    return (prompt * price_per_mtok[0] + completion * price_per_mtok[1]) / 1e6


@dataclass
class Attempt:
    """One call to the back-end and what came of it."""

    index: int
    messages: list[dict[str, str]]
    sample: int = 0
    reply: dict[str, Any] | None = None
    cost_usd: float | None = None
    source: str | None = None
    findings: list[str] = field(default_factory=list)
    check: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None
    """The pre-flight gate's report, when a screen ran on the checked program."""
    error: str | None = None


@dataclass
class GenerationResult:
    """The accepted program (or ``None``) and every attempt.

    ``gate`` is the screen's report on the last attempt's program (the accepted one when
    ``source`` is set); ``None`` when that program did not reach the screen.
    """

    source: str | None
    report: CheckReport | None
    attempts: list[Attempt]
    gate: GateReport | None = None

    @property
    def ok(self) -> bool:
        return self.source is not None

    def notes(self) -> list[str]:
        """What the writer said it understood and did (``params["report"]`` of the last reply;
        the offline writer fills it, LLM back-ends do not)."""
        reply = self.attempts[-1].reply if self.attempts else None
        report = (reply or {}).get("params", {}).get("report", [])
        return [str(line) for line in report] if isinstance(report, list) else []

    def failure_summary(self) -> str:
        last = self.attempts[-1] if self.attempts else None
        if last is None:
            return "no attempt was made"
        if last.error:
            return last.error
        return "\n".join(f"  {f}" for f in last.findings)


def generate_reward(
    task: TaskSpec,
    instruction: str,
    generator: Generator,
    *,
    fix_attempts: int,
    check: CheckConfig,
    out_dir: Path | None = None,
    messages: list[dict[str, str]] | None = None,
    previous_source: str | None = None,
    feedback: list[str] | None = None,
    sample: int = 0,
    price_per_mtok: tuple[float, float] = (0.0, 0.0),
    screen: Screen | None = None,
) -> GenerationResult:
    """Ask ``generator`` for a program; on rejection send the findings back, up to
    ``fix_attempts`` times. A back-end failure (after its own retries) ends the loop.

    For a refinement, pass the rendered feedback ``messages``, the ``previous_source`` being
    refined and the ``feedback`` lines; otherwise the zero-shot generation prompt is used.
    With a ``screen`` (the pre-flight gate), a program that passes the check must pass it too;
    a rejection is sent back like a check failure, with the gate's findings and numbers
    (:meth:`rewardlab.gate.GateReport.feedback_lines`).
    """
    messages = messages if messages is not None else generation_messages(task, instruction)
    feedback = list(feedback or [])
    attempts: list[Attempt] = []
    findings: list[str] = []
    report: CheckReport | None = None
    screened: GateReport | None = None
    for index in range(fix_attempts + 1):
        screened = None
        attempt = Attempt(index=index, messages=messages, sample=sample)
        attempts.append(attempt)
        request = GenerationRequest(
            task=task, instruction=instruction, messages=messages, attempt=index,
            previous_source=previous_source, findings=findings, feedback=feedback, sample=sample,
        )  # fmt: skip
        started = time.time()
        try:
            reply: Reply = generator.propose(request)
        except WriterRefusal as exc:
            attempt.error = f"the {generator.name} writer refused: {exc}"
            _record(out_dir, attempt)
            return GenerationResult(None, report, attempts, screened)
        except GeneratorError as exc:
            attempt.error = (
                f"{generator.name} back-end failed after {time.time() - started:.1f}s: {exc}"
            )
            _record(out_dir, attempt)
            return GenerationResult(None, report, attempts, screened)
        attempt.reply = asdict(reply)
        attempt.cost_usd = call_cost(reply, price_per_mtok)
        source = extract_code(reply.text)
        attempt.source = source
        if source is None:
            findings = [
                "the reply contains no ```python code block defining compute_dense_reward(self, action)"
            ]
        else:
            report = check_program(
                task,
                source,
                steps=check.steps,
                timeout_s=check.timeout_s,
                memory_mb=check.memory_mb,
            )
            attempt.check = report.to_dict()
            findings = [str(f) for f in report.findings]
            if report.ok and screen is not None:
                screened = screen(source, report)
                attempt.gate = screened.to_dict()
                findings = [] if screened.ok else screened.feedback_lines()
            if report.ok and not findings:
                _record(out_dir, attempt)
                return GenerationResult(source, report, attempts, screened)
        attempt.findings = findings
        _record(out_dir, attempt)
        messages = fix_messages(messages, reply.text, source or reply.text, findings)
    return GenerationResult(None, report, attempts, screened)


def _record(out_dir: Path | None, attempt: Attempt) -> None:
    if out_dir is not None:
        write_json(out_dir / "llm" / f"attempt_{attempt.index}.json", asdict(attempt))
