"""Lift a per-world reward program to arrays: a small, exact source rewrite.

Reward programs are written for one world: Python ``min``/``max`` of two numbers, conditional
expressions, ``math.cos``, ``float(...)``, ``np.dot(action, action)``. Over batched proxies
(values of shape ``(N,)``, vectors ``(k, N)`` with the batch axis last) these raise (``min`` of
arrays asks for the truth value of an array; ``math.cos`` wants a scalar) or reduce over the
batch. :func:`lift_source` rewrites exactly those constructs into their elementwise numpy
equivalents, which compute the same value per world:

==================================  ==========================================================
per world                           lifted
==================================  ==========================================================
``min(a, b, ...)`` / ``max``        ``np.minimum`` / ``np.maximum`` (nested)
``a if c else b``                   ``np.where(c, a, b)`` (both sides are evaluated)
``a and b`` / ``a or b``            ``np.where(a, b, a)`` / ``np.where(a, a, b)``
``not a``; ``a < b < c``            ``np.logical_not(a)``; ``np.logical_and(a < b, b < c)``
``math.cos(x)`` (and other math     ``np.cos(x)`` ...
functions with a numpy twin)
``float(x)``                        ``np.asarray(x, dtype=np.float64)``
``np.dot(a, b)``, ``a @ b``         ``np.sum(a * b, axis=0)`` (1-D vectors per world)
``np.sum(x)`` / ``x.sum()`` ...     ``axis=0`` added (sum, mean, max, min, prod, any, all,
                                    linalg.norm) when no axis is given
==================================  ==========================================================

Statement-level branching (``if x > 0: ...``), loops over values and ``int``/``bool`` of
values are left alone: such a program still raises over arrays and is evaluated per world.
The rewrite is only ever *trusted after checking* (see :mod:`rewardlab.rollout.reward`):
the lifted program's batched output must equal the per-world output of the original on real
states, or it is not used. The result is ordinary source; it is vetted and sandboxed like
any other program.

Example:
    >>> src = '''
    ... import math
    ... def compute_dense_reward(self, action):
    ...     up = math.cos(self.r.pitch)
    ...     return min(max(up, -1.0), 0.5) if up > 0 else 0.0
    ... '''
    >>> lifted, changes = lift_source(src)
    >>> print(lifted.splitlines()[-1].strip())
    return rl_np_.where(up > 0, rl_np_.minimum(rl_np_.maximum(up, -1.0), 0.5), 0.0)
    >>> changes
    ['math.cos -> numpy.cos', 'max -> numpy.maximum', 'min -> numpy.minimum', 'conditional expression -> numpy.where']
"""

from __future__ import annotations

import ast
from typing import Any

NP = "rl_np_"
"""The name the lifted source imports numpy under (chosen not to collide with user names)."""

MATH_TO_NUMPY = {
    "cos": "cos", "sin": "sin", "tan": "tan", "acos": "arccos", "asin": "arcsin",
    "atan": "arctan", "atan2": "arctan2", "cosh": "cosh", "sinh": "sinh", "tanh": "tanh",
    "exp": "exp", "expm1": "expm1", "log": "log", "log10": "log10", "log2": "log2",
    "log1p": "log1p", "sqrt": "sqrt", "fabs": "fabs", "hypot": "hypot", "floor": "floor",
    "ceil": "ceil", "copysign": "copysign", "degrees": "degrees", "radians": "radians",
    "isfinite": "isfinite", "isnan": "isnan", "isinf": "isinf",
}  # fmt: skip
"""``math`` functions with an elementwise numpy twin that agrees on finite inputs."""

REDUCTIONS = frozenset({"sum", "mean", "max", "min", "prod", "any", "all", "amax", "amin"})


def _np(attr: str) -> ast.Attribute:
    return ast.Attribute(ast.Name(NP, ast.Load()), attr, ast.Load())


def _call(attr: str, *args: ast.expr, **kwargs: ast.expr) -> ast.Call:
    return ast.Call(_np(attr), list(args), [ast.keyword(k, v) for k, v in kwargs.items()])


def _module_aliases(tree: ast.Module, module: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.asname or a.name for a in node.names if a.name == module)
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

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        self.generic_visit(node)
        if isinstance(node.op, ast.MatMult):
            self._note("a @ b -> numpy.sum(a * b, axis=0)")
            product = ast.BinOp(node.left, ast.Mult(), node.right)
            return ast.copy_location(_call("sum", product, axis=ast.Constant(0)), node)
        return node

    def visit_Call(self, node: ast.Call) -> Any:
        self.generic_visit(node)
        func = node.func
        plain = not node.keywords and not any(isinstance(a, ast.Starred) for a in node.args)
        if isinstance(func, ast.Name) and plain:
            if func.id in ("min", "max") and len(node.args) >= 2:
                fn = "minimum" if func.id == "min" else "maximum"
                self._note(f"{func.id} -> numpy.{fn}")
                out = node.args[0]
                for arg in node.args[1:]:
                    out = _call(fn, out, arg)
                return ast.copy_location(out, node)
            if func.id == "float" and len(node.args) == 1:
                self._note("float() -> numpy.asarray(float64)")
                return ast.copy_location(_call("asarray", node.args[0], dtype=_np("float64")), node)
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner = func.value.id
            if owner in self.math_names and func.attr in MATH_TO_NUMPY and plain:
                self._note(f"math.{func.attr} -> numpy.{MATH_TO_NUMPY[func.attr]}")
                return ast.copy_location(
                    ast.Call(_np(MATH_TO_NUMPY[func.attr]), node.args, []), node
                )
            if owner in self.numpy_names and func.attr == "dot" and plain and len(node.args) == 2:
                self._note("numpy.dot -> numpy.sum(a * b, axis=0)")
                product = ast.BinOp(node.args[0], ast.Mult(), node.args[1])
                return ast.copy_location(_call("sum", product, axis=ast.Constant(0)), node)
            if owner in self.numpy_names and func.attr in REDUCTIONS:
                return self._add_axis(node, f"numpy.{func.attr}", positional=1)
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "norm"
            and isinstance(func.value, ast.Attribute)
            and func.value.attr == "linalg"
            and isinstance(func.value.value, ast.Name)
            and func.value.value.id in self.numpy_names
        ):
            return self._add_axis(node, "numpy.linalg.norm", positional=1)
        if (
            isinstance(func, ast.Attribute)
            and func.attr in REDUCTIONS
            and not (
                isinstance(func.value, ast.Name)
                and func.value.id in self.numpy_names | self.math_names
            )
        ):
            return self._add_axis(node, f".{func.attr}()", positional=0)
        return node

    def _add_axis(self, node: ast.Call, what: str, positional: int) -> ast.Call:
        if len(node.args) != positional or any(k.arg in ("axis", None) for k in node.keywords):
            return node
        self._note(f"{what} -> axis=0")
        node.keywords = [*node.keywords, ast.keyword("axis", ast.Constant(0))]
        return node


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
