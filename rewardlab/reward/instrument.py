"""Instrumentation of vetted reward programs (:func:`instrument`).

* Every loop iteration, function call, lambda call and comprehension element ticks the
  per-call :class:`~rewardlab.reward.limits.Budget`.
* Arithmetic operators (and their augmented forms, also on items: ``x[i] += y``) go through
  the guards of :mod:`rewardlab.reward.guards` unless an operand is a numeric literal (then no
  huge sequence, integer, broadcast or object array can come out of it): ``*``, ``**``,
  ``<<`` with their size checks, ``+`` against concatenation and integer doubling, every
  other operator against oversized broadcasts and object arrays, ``%`` against huge
  ``%``-format widths.
* f-string fields with a format spec go through :func:`~rewardlab.reward.guards.guard_format`.
* ``obj.name`` for the names in :data:`~rewardlab.reward.guards.CHECKED_METHODS` goes through
  :func:`~rewardlab.reward.guards.guard_attr`.

The helpers are bound in the program's globals under ``__rl_*__`` names (:data:`HELPERS`),
which vetting keeps reward code from naming.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

from rewardlab.reward.guards import (
    CHECKED_METHODS,
    guard_add,
    guard_arith,
    guard_attr,
    guard_format,
    guard_lshift,
    guard_mod,
    guard_mul,
    guard_pow,
)
from rewardlab.reward.vetting import float_constant, numeric_constant, small_number

TICK = "__rl_tick__"
"""Global name of the budget's tick function."""

_OPERATORS: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Mult: ("__rl_mul__", guard_mul),
    ast.Pow: ("__rl_pow__", guard_pow),
    ast.LShift: ("__rl_lshift__", guard_lshift),
    ast.Add: ("__rl_add__", guard_add),
    ast.Mod: ("__rl_mod__", guard_mod),
    ast.Sub: ("__rl_sub__", guard_arith(operator.sub, "-")),
    ast.Div: ("__rl_truediv__", guard_arith(operator.truediv, "/")),
    ast.FloorDiv: ("__rl_floordiv__", guard_arith(operator.floordiv, "//")),
    ast.MatMult: ("__rl_matmul__", guard_arith(operator.matmul, "@")),
    ast.RShift: ("__rl_rshift__", guard_arith(operator.rshift, ">>")),
    ast.BitAnd: ("__rl_and__", guard_arith(operator.and_, "&")),
    ast.BitOr: ("__rl_or__", guard_arith(operator.or_, "|")),
    ast.BitXor: ("__rl_xor__", guard_arith(operator.xor, "^")),
}
_ATTR = "__rl_attr__"
_FORMAT = "__rl_format__"

HELPERS: dict[str, Callable[..., Any]] = {
    **dict(_OPERATORS.values()),
    _ATTR: guard_attr,
    _FORMAT: guard_format,
}
"""What the instrumented code calls, by global name (the tick function is added per program)."""


def _needs_guard(op: ast.operator, left: ast.AST, right: ast.AST) -> bool:
    if isinstance(op, ast.Mult):  # 3 * s repeats a sequence: only a float literal is harmless
        return not (float_constant(left) or float_constant(right))
    if isinstance(op, ast.Pow):  # x ** 2 repeated in a loop grows integers doubly exponentially
        return not (float_constant(left) or (small_number(left) and small_number(right)))
    if isinstance(op, ast.LShift):
        return not (small_number(left) and small_number(right))
    if isinstance(op, ast.Mod):  # "%9999999999d" % 1: the format string is the left operand
        return not numeric_constant(left)
    return not (numeric_constant(left) or numeric_constant(right))


def _call(name: str, args: list[ast.expr], like: ast.AST) -> ast.Call:
    return ast.copy_location(ast.Call(ast.Name(name, ast.Load()), args, []), like)


class _Instrument(ast.NodeTransformer):
    def __init__(self) -> None:
        self.temporaries = 0

    def _tick(self, node: ast.AST) -> ast.Expr:
        return ast.Expr(_call(TICK, [ast.Constant(getattr(node, "lineno", 0))], node))

    def _loop(self, node: Any) -> Any:
        self.generic_visit(node)
        node.body.insert(0, self._tick(node))
        return node

    visit_For = visit_While = visit_FunctionDef = _loop

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        self.generic_visit(node)
        node.body = ast.BoolOp(ast.Or(), [self._tick(node).value, node.body])  # tick() is None
        return node

    def visit_comprehension(self, node: ast.comprehension) -> Any:
        self.generic_visit(node)
        tick = self._tick(node.target).value
        node.ifs.insert(0, ast.Compare(tick, [ast.Is()], [ast.Constant(None)]))
        return node

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        self.generic_visit(node)
        if isinstance(node.ctx, ast.Load) and node.attr in CHECKED_METHODS:
            return _call(_ATTR, [node.value, ast.Constant(node.attr)], node)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        self.generic_visit(node)
        if type(node.op) in _OPERATORS and _needs_guard(node.op, node.left, node.right):
            return _call(_OPERATORS[type(node.op)][0], [node.left, node.right], node)
        return node

    def visit_FormattedValue(self, node: ast.FormattedValue) -> Any:
        self.generic_visit(node)
        if node.format_spec is None:
            return node
        value = _call(_FORMAT, [node.value, ast.Constant(node.conversion), node.format_spec], node)
        return ast.copy_location(ast.FormattedValue(value, -1, None), node)

    def _temporary(self) -> str:
        self.temporaries += 1
        return f"__rl_t{self.temporaries}__"

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        self.generic_visit(node)
        if type(node.op) not in _OPERATORS or not _needs_guard(node.op, node.target, node.value):
            return node
        guard = _OPERATORS[type(node.op)][0]
        if isinstance(node.target, ast.Name):  # x += y  ->  x = guard(x, y)
            load = ast.Name(node.target.id, ast.Load())
            return ast.copy_location(
                ast.Assign([node.target], _call(guard, [load, node.value], node)), node
            )
        if isinstance(node.target, ast.Subscript):
            # c[k] += y  ->  t1 = c; t2 = k; t1[t2] = guard(t1[t2], y)  (c and k evaluated once)
            box, key = self._temporary(), self._temporary()
            store = [
                ast.Assign([ast.Name(box, ast.Store())], node.target.value),
                ast.Assign([ast.Name(key, ast.Store())], node.target.slice),
            ]
            item = ast.Subscript(ast.Name(box, ast.Load()), ast.Name(key, ast.Load()), ast.Load())
            target = ast.Subscript(
                ast.Name(box, ast.Load()), ast.Name(key, ast.Load()), ast.Store()
            )
            store.append(ast.Assign([target], _call(guard, [item, node.value], node)))
            return [ast.copy_location(s, node) for s in store]
        return node  # attribute targets are refused by vetting


def instrument(tree: ast.Module) -> ast.Module:
    """Insert budget ticks and guards (see the module docstring); returns a new,
    location-fixed tree."""
    new = _Instrument().visit(tree)
    return ast.fix_missing_locations(new)
