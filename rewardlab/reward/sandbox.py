"""The sandbox for untrusted reward code: the restricted runtime a vetted, instrumented
program runs in (:func:`sandbox_globals`).

Reward programs come from an LLM (or a person) and are treated as hostile. Defences, in order:

1. **Static vetting** (:mod:`rewardlab.reward.vetting`): imports outside the facades, names
   such as ``eval``/``open``/``getattr``, private/dunder or frame/file attributes (one rule for
   every attribute the grammar reads: ``.name``, ``match`` class patterns, imports), classes,
   ``global``, ``with``, ``async``, unknown names and ``self.`` paths the card lacks are
   findings with their line numbers.
2. **Instrumentation** (:mod:`rewardlab.reward.instrument`): budget ticks in every loop, call and
   comprehension element; arithmetic, ``%``-formatting, format specs and the growing
   ``str``/``list``/ndarray methods go through the size, integer and object-array guards of
   :mod:`rewardlab.reward.guards`.
3. **Restricted runtime** (here and :mod:`rewardlab.reward.facades`): a small builtins table,
   ``np``/``math`` pre-bound, ``import`` yielding read-only facades; module-level values are
   frozen after the module code ran (:func:`rewardlab.reward.program.freeze_module_state`), so
   no call can leave state for the next.
4. **The OS wall** (:mod:`rewardlab.reward.confine`): every execution of generated code happens
   in a worker process with seccomp, Landlock, ``no_new_privs`` and rlimits.
"""

from __future__ import annotations

import builtins
from typing import Any

from rewardlab.reward.facades import PREBOUND, facade
from rewardlab.reward.findings import BudgetExceeded, Finding, SandboxViolation
from rewardlab.reward.guards import bounded, check_count, guard_pow
from rewardlab.reward.instrument import HELPERS, TICK, instrument
from rewardlab.reward.limits import DEFAULT_SECONDS, DEFAULT_TICKS, Budget, limit_process_memory
from rewardlab.reward.vetting import ALLOWED_BUILTIN_NAMES, Vetting, vet

__all__ = [
    "DEFAULT_SECONDS", "DEFAULT_TICKS", "SAFE_BUILTINS", "Budget", "BudgetExceeded", "Finding",
    "SandboxViolation", "Vetting", "instrument", "limit_process_memory", "sandbox_globals", "vet",
]  # fmt: skip


def _safe_range(*args: int) -> range:
    r = range(*args)
    check_count(float(len(r)), "range")
    return r


def _safe_sum(iterable: Any, /, start: Any = 0) -> Any:
    if isinstance(start, (list, tuple)):
        raise SandboxViolation(
            "sum() of lists/tuples is not allowed (quadratic); build the list with a comprehension"
        )
    return sum(bounded(iterable, "sum"), start)


def _safe_pow(base: Any, exp: Any, mod: Any = None) -> Any:
    if mod is not None:
        return pow(base, exp, mod)
    return guard_pow(base, exp)


def _safe_import(
    name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
) -> Any:
    if level != 0:
        raise SandboxViolation("relative imports are not allowed")
    return facade(name if fromlist else name.split(".")[0])


def _no_print(*args: Any, **kwargs: Any) -> None:
    """``print`` is accepted and ignored (reward code runs thousands of times per second)."""


SAFE_BUILTINS: dict[str, Any] = {
    n: getattr(builtins, n) for n in ALLOWED_BUILTIN_NAMES if hasattr(builtins, n)
}
"""The builtins table of every program (``range``/``pow``/``sum``/``print`` are checked
stand-ins; ``__import__`` yields facades)."""
SAFE_BUILTINS.update(
    range=_safe_range, pow=_safe_pow, sum=_safe_sum, print=_no_print, __import__=_safe_import
)


def sandbox_globals(budget: Budget) -> dict[str, Any]:
    """The globals a compiled reward program runs in."""
    return {
        "__builtins__": dict(SAFE_BUILTINS),
        "__name__": "reward_program",
        TICK: budget.tick,
        **HELPERS,
        **{name: facade(module) for name, module in PREBOUND.items()},
    }
