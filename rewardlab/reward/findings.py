"""What the checks and the sandbox report about a reward program (:class:`Finding`), and the
two exceptions reward code meets at its limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One problem found in a reward program."""

    stage: str  # "syntax" | "static" | "compile" | "runtime" | "output" | "smoke" | "timeout"
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"[{self.stage}] {where}{self.message}"


class BudgetExceeded(BaseException):
    """Raised inside reward code when it exceeds its per-call budget.

    A ``BaseException`` so ``except Exception`` in reward code cannot swallow it (bare
    ``except:`` is rejected statically).
    """


class SandboxViolation(Exception):
    """Raised at run time when reward code reaches for something it may not have."""
