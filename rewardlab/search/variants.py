"""Deterministic variants of the offline synthesizer's programs, so that offline candidate
search samples K *different* rewards instead of K copies.

The offline synthesizer (:mod:`rewardlab.generators.offline`) is deterministic: the same
request always yields the same program. :class:`OfflineVariants` wraps it and, for
``request.sample > 0``, rescales the weights of the program's named terms:

* sample 0 is the synthesizer's own program (unchanged);
* samples ``1 .. 2n`` (``n`` terms, task terms first, the ``action`` regulariser last) are
  one-at-a-time perturbations: sample ``2j+1`` doubles term ``j``'s weight, sample ``2j+2``
  halves it (a coordinate search around the current weights);
* later samples rescale every term by a factor from ``{0.5, 1, 2}`` drawn from a generator
  seeded by the sample index (never all 1).

Together with reward reflection, whose edits the synthesizer applies to the previous best
program (``"reduce alive"``, ``"more progress"``), iterations become a hill climb over term
weights. Programs keep their term names, so reflection statistics stay comparable. The
reply text says which perturbation a sample is.

Example:
    >>> variant_factors(["progress", "alive", "action"], 1)
    {'progress': 2.0, 'alive': 1.0, 'action': 1.0}
    >>> variant_factors(["progress", "alive", "action"], 4)
    {'progress': 1.0, 'alive': 0.5, 'action': 1.0}
"""

from __future__ import annotations

import random
import re

from rewardlab.generators.base import GenerationRequest, Generator, Reply, extract_code
from rewardlab.generators.offline import parse_terms

REGULARISERS = ("action",)
"""Terms perturbed last (they are small regularisers)."""

_TERM_LINE = re.compile(
    r'^(?P<indent>\s*)"(?P<name>\w+)": (?P<weight>[-+0-9.eE]+) \* (?P<rest>\(.*\),)$'
)


def variant_factors(names: list[str], sample: int) -> dict[str, float]:
    """Weight multipliers of each term for ``sample`` (see the module docstring)."""
    order = [n for n in names if n not in REGULARISERS] + [n for n in names if n in REGULARISERS]
    factors = {n: 1.0 for n in names}
    if sample <= 0 or not names:
        return factors
    if sample <= 2 * len(order):
        j, halve = divmod(sample - 1, 2)
        factors[order[j]] = 0.5 if halve else 2.0
        return factors
    rng = random.Random(sample)
    for name in order:
        factors[name] = rng.choice((0.5, 1.0, 2.0))
    if all(f == 1.0 for f in factors.values()):
        factors[order[0]] = 2.0
    return factors


def perturb_source(source: str, factors: dict[str, float]) -> str:
    """Rescale the ``"name": weight * (expr),`` lines of an offline program."""
    out = []
    for line in source.splitlines():
        m = _TERM_LINE.match(line)
        if m and factors.get(m["name"], 1.0) != 1.0:
            weight = float(m["weight"]) * factors[m["name"]]
            line = f'{m["indent"]}"{m["name"]}": {weight!r} * {m["rest"]}'
        out.append(line)
    return "\n".join(out) + ("\n" if source.endswith("\n") else "")


class OfflineVariants:
    """Wrap the offline synthesizer: sample ``k > 0`` is a weight perturbation of its program."""

    def __init__(self, inner: Generator, period: int = 0) -> None:
        """Wrap ``inner``.

        Args:
            inner: The offline generator (any generator whose programs have
                ``"name": weight * (expr)`` component lines).
            period: When > 0, the variant of sample ``s`` is ``s % period`` (the search
                numbers samples ``iteration * K + k``, and every iteration starts again from
                the unperturbed program).
        """
        self.inner = inner
        self.name = inner.name
        self.period = period

    def propose(self, request: GenerationRequest) -> Reply:
        """The inner reply, with the weights of its program perturbed for ``sample > 0``."""
        reply = self.inner.propose(request)
        variant = request.sample % self.period if self.period > 0 else request.sample
        if variant <= 0:
            return reply
        source = extract_code(reply.text)
        terms = parse_terms(source) if source is not None else None
        if source is None or not terms:
            return reply
        factors = variant_factors([t.name for t in terms], variant)
        changed = {n: f for n, f in factors.items() if f != 1.0}
        varied = perturb_source(source, factors)
        note = ", ".join(f"{n} x{f:g}" for n, f in changed.items()) or "none"
        head = reply.text.split("```", 1)[0].rstrip()
        text = f"{head} Variant {variant}: weights {note}.\n\n```python\n{varied}```\n"
        return Reply(
            text=text, model=reply.model, params={**reply.params, "variant": variant,
                                                   "factors": changed},
            usage=reply.usage, latency_s=reply.latency_s,
        )  # fmt: skip
