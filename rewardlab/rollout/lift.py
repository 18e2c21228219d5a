"""Lift a per-world reward program to batch values: a small, exact source rewrite.

Reward programs are written for one world: Python ``min``/``max`` of two numbers, conditional
expressions, ``math.cos``, ``float(...)``, ``np.array([a, b])``. Over
:class:`~rewardlab.rollout.batch.BatchValue` inputs these raise
:class:`~rewardlab.rollout.batch.NotBatchable` (``min`` asks for the truth value of a
comparison, ``math.cos`` and ``float`` for a Python float, ``np.array`` for a plain array).
:func:`lift_source` rewrites exactly those constructs into numpy calls that compute the same
value per world:

==================================  ==========================================================
per world                           lifted
==================================  ==========================================================
``min(a, b, ...)`` / ``max``        ``np.fmin`` / ``np.fmax`` (nested; also ``max([a, b])``)
``a if c else b``                   ``np.where(c, a, b)`` (both sides are evaluated)
``a and b`` / ``a or b``            ``np.where(a, b, a)`` / ``np.where(a, a, b)``
``not a``; ``a < b < c``            ``np.logical_not(a)``; ``np.logical_and(a < b, b < c)``
``math.cos(x)`` (and other math     ``np.cos(x, dtype=np.float64)`` ...
functions with a numpy twin)
``float(x)``                        ``np.positive(x, dtype=np.float64)``
``np.array([a, b])`` (a literal)    ``np.stack([a, b])`` (nested literals too; ``dtype=`` ->
                                    ``.astype``)
==================================  ==========================================================

Reductions, ``np.dot``/``@``, indexing and ``len`` need no rewrite: batch values apply them
per world. Statement-level branching (``if x > 0: ...``), loops over values and ``int``/``bool``
of values are left alone: such a program still refuses batch values and is evaluated per
world. A program with ``try`` is never lifted (:func:`has_try`): its ``except`` clauses catch
errors of single worlds, which a batched call cannot raise per world.

``fmin``/``fmax`` stand for the builtins (they differ from ``min``/``max`` only on NaN, which a
batched call never produces: see below). A numpy ufunc called with ``dtype=np.float64`` (the
lifted ``float`` and ``math.*``), ``fmin``/``fmax`` of Python floats and ``np.where`` between
Python floats (a conditional expression) give values that behave as Python floats per world,
as the builtins do (:mod:`rewardlab.rollout.batch`).

Both sides of a conditional are evaluated for every world: an error there (``math.sqrt`` of
a negative value in the branch not taken) is a floating-point exception that makes the
evaluator run that step per world (:mod:`rewardlab.rollout.reward`). The rewrite is only ever
trusted after checking: the lifted program's output must equal the per-world output of the
original on real states. The result is ordinary source, vetted and sandboxed like any other.

Example:
    >>> src = '''
    ... import math
    ... def compute_dense_reward(self, action):
    ...     up = math.cos(self.r.pitch)
    ...     return min(max(up, -1.0), 0.5) if up > 0 else 0.0
    ... '''
    >>> lifted, changes = lift_source(src)
    >>> print(lifted.splitlines()[-1].strip())
    return rl_np_.where(up > 0, rl_np_.fmin(rl_np_.fmax(up, -1.0), 0.5), 0.0)
    >>> print(lifted.splitlines()[-2].strip())
    up = rl_np_.cos(self.r.pitch, dtype=rl_np_.float64)
    >>> changes
    ['math.cos -> numpy.cos', 'max -> numpy.fmax', 'min -> numpy.fmin', 'conditional expression -> numpy.where']
"""

from __future__ import annotations

import ast
from typing import Any

from rewardlab.reward.sandbox import PREBOUND

NP = "rl_np_"
"""The name the lifted source imports numpy under (chosen not to collide with user names)."""

MATH_TO_NUMPY = {
    "cos": "cos", "sin": "sin", "tan": "tan", "acos": "arccos", "asin": "arcsin",
    "atan": "arctan", "atan2": "arctan2", "cosh": "cosh", "sinh": "sinh", "tanh": "tanh",
    "exp": "exp", "expm1": "expm1", "log": "log", "log10": "log10", "log2": "log2",
    "log1p": "log1p", "sqrt": "sqrt", "fabs": "fabs", "hypot": "hypot", "floor": "floor",
    "ceil": "ceil", "copysign": "copysign", "degrees": "degrees", "radians": "radians",
}  # fmt: skip
"""``math`` functions with an elementwise numpy twin that agrees on finite inputs (computed in
float64, as ``math`` does; where ``math`` raises, numpy signals a floating-point error)."""

BINARY = frozenset({"atan2", "hypot", "copysign"})
"""The lifted ``math`` functions of two arguments (the others take one)."""


def _np(attr: str) -> ast.Attribute:
    return ast.Attribute(ast.Name(NP, ast.Load()), attr, ast.Load())


def _call(attr: str, *args: ast.expr, **kwargs: ast.expr) -> ast.Call:
    return ast.Call(_np(attr), list(args), [ast.keyword(k, v) for k, v in kwargs.items()])


def _module_aliases(tree: ast.Module, module: str) -> set[str]:
    """Names under which ``module`` is reachable: its imports, and its pre-bound name unless
    the program binds that name to something else."""
    names: set[str] = set()
    rebound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                (names if alias.name == module else rebound).add(bound)
        elif isinstance(node, ast.ImportFrom):
            rebound.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            rebound.add(node.id)
        elif isinstance(node, ast.arg):
            rebound.add(node.arg)
    names.update(n for n, m in PREBOUND.items() if m == module and n not in rebound)
    return names


class _Lift(ast.NodeTransformer):
    def __init__(self, numpy_names: set[str], math_names: set[str]) -> None:
        self.numpy_names = numpy_names | {NP}
        self.math_names = math_names
        self.changes: list[str] = []

    def _note(self, change: str) -> None:
        if change not in self.changes:
            self.changes.append(change)

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        # ``a and b`` is ``b if a else a`` and ``a or b`` is ``a if a else b``: exactly that
        # per element (values, not just booleans, as Python returns them).
        self.generic_visit(node)
        op = "and" if isinstance(node.op, ast.And) else "or"
        self._note(f"{op} -> numpy.where")
        out = node.values[0]
        for value in node.values[1:]:
            out = (
                _call("where", out, value, out) if op == "and" else _call("where", out, out, value)
            )
        return ast.copy_location(out, node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            self._note("not -> numpy.logical_not")
            return ast.copy_location(_call("logical_not", node.operand), node)
        return node

    def visit_Compare(self, node: ast.Compare) -> Any:
        self.generic_visit(node)
        if len(node.ops) == 1:
            return node
        self._note("chained comparison -> numpy.logical_and")
        left, parts = node.left, []
        for op, right in zip(node.ops, node.comparators, strict=True):
            parts.append(ast.Compare(left, [op], [right]))
            left = right
        out: ast.expr = parts[0]
        for part in parts[1:]:
            out = _call("logical_and", out, part)
        return ast.copy_location(out, node)

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        self.generic_visit(node)
        self._note("conditional expression -> numpy.where")
        return ast.copy_location(_call("where", node.test, node.body, node.orelse), node)

    def visit_Call(self, node: ast.Call) -> Any:
        self.generic_visit(node)
        func = node.func
        plain = not node.keywords and not any(isinstance(a, ast.Starred) for a in node.args)
        if isinstance(func, ast.Name) and plain:
            args = node.args
            if (
                func.id in ("min", "max")
                and len(args) == 1
                and isinstance(args[0], (ast.List, ast.Tuple))
            ):
                args = args[0].elts
            if (
                func.id in ("min", "max")
                and len(args) >= 2
                and not any(isinstance(a, ast.Starred) for a in args)
            ):
                fn = "fmin" if func.id == "min" else "fmax"
                self._note(f"{func.id} -> numpy.{fn}")
                out = args[0]
                for arg in args[1:]:
                    out = _call(fn, out, arg)
                return ast.copy_location(out, node)
            if func.id == "float" and len(args) == 1:
                self._note("float() -> numpy.positive(dtype=float64)")
                return ast.copy_location(_call("positive", args[0], dtype=_np("float64")), node)
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner = func.value.id
            arity = 2 if func.attr in BINARY else 1
            if (
                owner in self.math_names
                and func.attr in MATH_TO_NUMPY
                and plain
                and len(node.args) == arity
            ):
                self._note(f"math.{func.attr} -> numpy.{MATH_TO_NUMPY[func.attr]}")
                return ast.copy_location(
                    _call(MATH_TO_NUMPY[func.attr], *node.args, dtype=_np("float64")), node
                )
            if owner in self.numpy_names and func.attr in ("array", "asarray"):
                return self._literal_array(node)
        return node

    def _literal_array(self, node: ast.Call) -> Any:
        dtype = [k for k in node.keywords if k.arg == "dtype"]
        if (
            len(node.args) != 1
            or len(dtype) != len(node.keywords)
            or not _nonempty_literal(node.args[0])
        ):
            return node
        self._note("numpy.array([...]) -> numpy.stack")
        out: ast.expr = _stacked(node.args[0])
        if dtype:
            out = ast.Call(ast.Attribute(out, "astype", ast.Load()), [dtype[0].value], [])
        return ast.copy_location(out, node)


def _nonempty_literal(node: ast.expr) -> bool:
    if not isinstance(node, (ast.List, ast.Tuple)) or not node.elts:
        return False
    return not any(isinstance(e, ast.Starred) for e in node.elts)


def _stacked(node: ast.expr) -> ast.expr:
    if isinstance(node, (ast.List, ast.Tuple)) and _nonempty_literal(node):
        return _call("stack", ast.List([_stacked(e) for e in node.elts], ast.Load()))
    return node


def has_try(source: str) -> bool:
    """Whether ``source`` has a ``try`` statement (such programs are never batched)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(n, (ast.Try, getattr(ast, "TryStar", ast.Try))) for n in ast.walk(tree))


def lift_source(source: str) -> tuple[str, list[str]]:
    """Rewrite ``source`` for batched (batch-axis-last) inputs; return ``(source, changes)``.

    ``changes`` lists each kind of rewrite made (empty: the program is unchanged). Raises
    :class:`SyntaxError` for unparsable source.
    """
    tree = ast.parse(source)
    if any(isinstance(n, ast.Name) and n.id == NP for n in ast.walk(tree)):
        return source, []
    lifter = _Lift(_module_aliases(tree, "numpy"), _module_aliases(tree, "math"))
    new = lifter.visit(tree)
    if not lifter.changes:
        return source, []
    new.body.insert(0, ast.Import([ast.alias("numpy", NP)]))
    return ast.unparse(ast.fix_missing_locations(new)), lifter.changes
