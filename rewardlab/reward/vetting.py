"""Static vetting of reward programs (:func:`vet`).

The source is parsed and walked once (:class:`_Vetter`); every place where the grammar reads an
attribute or binds a name from a module goes through one rule, :func:`attribute_problem`:
``obj.name`` (:class:`ast.Attribute`), the keyword attributes of a ``match`` class pattern
(``case np.ndarray(__array_ufunc__=f)``) and ``from module import name``. A class pattern's
positional sub-patterns read the class's ``__match_args__``: they are allowed only for the
builtin types that match the subject itself (``case float(x)``). ``str.format``/``format_map``
(which read attributes named in the format string) are forbidden attributes; format *specs*
(``f"{x:>{w}}"``) and ``%`` formatting are size-checked at run time
(:mod:`rewardlab.reward.instrument`). ``getattr``-style builtins are forbidden names, and no
facade exposes an ``operator``/``functools``-style function that turns a string into an
attribute access (tested). Imports are checked down to the member against the facades;
an unused import of an allowed module is a warning.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from rewardlab.reward.facades import ALLOWED_MODULES, PREBOUND, UNAVAILABLE_HINTS, facade
from rewardlab.reward.findings import Finding, SandboxViolation

ALLOWED_BUILTIN_NAMES = frozenset(
    """abs all any bool dict divmod enumerate filter float frozenset int isinstance len list map
    max min reversed round set slice sorted str sum tuple zip True False None range pow print
    ArithmeticError AssertionError Exception IndexError KeyError LookupError OverflowError
    RuntimeError TypeError ValueError ZeroDivisionError FloatingPointError NotImplementedError
    """.split()  # noqa: SIM905
)
"""The builtins reward code may name (``range``, ``pow``, ``sum`` and ``print`` are checked
stand-ins, see :data:`rewardlab.reward.sandbox.SAFE_BUILTINS`)."""

FORBIDDEN_NAMES = frozenset(
    """eval exec compile open input __import__ getattr setattr delattr globals locals vars dir
    breakpoint help memoryview type object super classmethod staticmethod property exit quit
    iter next callable id hash issubclass bytearray bytes __builtins__ __loader__ __spec__
    reload os sys subprocess importlib builtins""".split()  # noqa: SIM905
)

FORBIDDEN_ATTRIBUTES = frozenset(
    """format format_map mro tofile dump dumps load loads save savez savetxt fromfile memmap
    ctypes gi_frame gi_code gi_yieldfrom cr_frame cr_code cr_await ag_frame ag_code f_back
    f_globals f_locals f_builtins f_code tb_frame tb_next co_code func_globals func_code
    im_func im_self system popen""".split()  # noqa: SIM905
)

SELF_MATCHING_CLASSES = frozenset(
    ["bool", "dict", "float", "frozenset", "int", "list", "set", "str", "tuple"]
)
"""Builtin classes whose ``case C(x)`` pattern matches the subject itself (no attribute read)."""

MAX_INT_LITERAL = 2**63
"""Integer literals must fit in a signed 64-bit integer (wider ones would become object arrays
inside numpy)."""


def attribute_problem(name: str) -> str | None:
    """Why reward code may not read attribute ``name`` (``None``: it may). The one rule for
    every attribute read the grammar allows (see the module docstring)."""
    if name.startswith("_"):
        return f"access to private/dunder attribute {name!r} is not allowed"
    if name in FORBIDDEN_ATTRIBUTES:
        return f"attribute {name!r} is not allowed in reward code"
    return None


@dataclass
class Vetting:
    """What :func:`vet` found."""

    tree: ast.Module | None
    """The parsed program; ``None`` if it does not parse."""
    findings: list[Finding]
    """Reasons to reject the program."""
    warnings: list[Finding]
    """Problems that do not reject it (stage ``warning``)."""


def small_number(node: ast.AST, limit: float = 64) -> bool:
    """``node`` is an int or float literal of magnitude at most ``limit``."""
    return numeric_constant(node) and abs(node.value) <= limit  # type: ignore[attr-defined]


def numeric_constant(node: ast.AST) -> bool:
    """``node`` is an int or float literal (not a bool)."""
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    )


def float_constant(node: ast.AST) -> bool:
    """``node`` is a float literal."""
    return isinstance(node, ast.Constant) and isinstance(node.value, float)


def _defined_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)  # match captures: case [a, b, *rest]
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
    return names | set(PREBOUND) | ALLOWED_BUILTIN_NAMES


def _import_bindings(node: ast.Import | ast.ImportFrom) -> list[tuple[str, str | None, str]]:
    """``(module, member, bound name)`` for every name an import statement binds."""
    out: list[tuple[str, str | None, str]] = []
    for alias in node.names:
        if isinstance(node, ast.Import):
            out.append((alias.name, None, alias.asname or alias.name.split(".")[0]))
        else:
            out.append((node.module or "", alias.name, alias.asname or alias.name))
    return out


def _import_problem(module: str, member: str | None, level: int = 0) -> str | None:
    """Why ``import module`` / ``from module import member`` is refused (``None``: allowed)."""
    root = module.split(".")[0]
    allowed = ", ".join(sorted(ALLOWED_MODULES))
    if level:
        return "relative imports are not allowed"
    if root not in ALLOWED_MODULES:
        verb = "import from" if member is not None else "import of"
        return (
            UNAVAILABLE_HINTS.get(root) or f"{verb} {module!r} is not allowed (allowed: {allowed})"
        )
    if any(part.startswith("_") for part in module.split(".")):
        return f"importing {'from ' if member is not None else ''}private module {module!r} is not allowed"
    if member == "*":
        return "star imports are not allowed"
    if member is not None and attribute_problem(member):
        return f"importing {member!r}: {attribute_problem(member)}"
    try:
        target = facade(module)
    except ImportError:
        return f"{root} is not installed"
    except (AttributeError, SandboxViolation):
        return f"module {module!r} is not available to reward programs"
    if member is not None and not hasattr(target, member):
        return f"{module}.{member} is not available to reward programs (available: {', '.join(dir(target))})"
    return None


def _attribute_chain(node: ast.Attribute) -> list[str] | None:
    parts: list[str] = []
    cur: ast.AST = node
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    if isinstance(cur, ast.Name):
        parts.append(cur.id)
        return parts[::-1]
    return None


class _Vetter(ast.NodeVisitor):
    """One walk over the program; :attr:`findings` and :attr:`warnings` collect the results."""

    def __init__(self, tree: ast.Module) -> None:
        self.findings: list[Finding] = []
        self.warnings: list[Finding] = []
        self.defined = _defined_names(tree)
        self.loaded = {
            n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
        }

    def bad(self, node: ast.AST, message: str) -> None:
        self.findings.append(Finding("static", message, getattr(node, "lineno", None)))

    def _imports(self, node: ast.Import | ast.ImportFrom) -> None:
        level = node.level if isinstance(node, ast.ImportFrom) else 0
        for module, member, bound in _import_bindings(node):
            problem = _import_problem(module, member, level)
            if problem:
                self.bad(node, problem)
            elif bound not in self.loaded:
                what = f"{module}.{member}" if member is not None else module
                self.warnings.append(Finding("warning", f"unused import of {what!r}", node.lineno))

    visit_Import = visit_ImportFrom = _imports

    def visit_Attribute(self, node: ast.Attribute) -> None:
        problem = attribute_problem(node.attr)
        if problem:
            self.bad(node, problem)
        elif isinstance(node.ctx, (ast.Store, ast.Del)):
            self.bad(
                node,
                f"assigning attribute {node.attr!r} is not allowed: the environment is read-only",
            )
        self.generic_visit(node)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        for name in node.kwd_attrs:
            problem = attribute_problem(name)
            if problem:
                self.bad(node, f"match class pattern: {problem}")
        if node.patterns and not (
            isinstance(node.cls, ast.Name) and node.cls.id in SELF_MATCHING_CLASSES
        ):
            self.bad(node, "positional sub-patterns of a class pattern read the class's __match_args__; "
                           f"they are allowed only for {', '.join(sorted(SELF_MATCHING_CLASSES))}")  # fmt: skip
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES or node.id.startswith("__"):
            self.bad(node, f"use of {node.id!r} is not allowed in reward code")
        elif isinstance(node.ctx, ast.Load) and node.id not in self.defined:
            self.bad(
                node, f"name {node.id!r} is not defined (not a variable, import or allowed builtin)"
            )

    def _refused(self, node: ast.AST) -> None:
        self.bad(node, f"{type(node).__name__} is not allowed in reward code")
        self.generic_visit(node)

    visit_ClassDef = visit_AsyncFunctionDef = visit_AsyncFor = visit_AsyncWith = visit_Await = (
        _refused
    )

    def _statement(self, node: ast.AST) -> None:
        self.bad(node, f"'{type(node).__name__.lower()}' statements are not allowed in reward code")
        self.generic_visit(node)

    visit_With = visit_Global = visit_Nonlocal = _statement

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is None or (
            isinstance(node.type, ast.Name) and node.type.id == "BaseException"
        ):
            self.bad(
                node,
                "bare 'except:' / 'except BaseException' is not allowed; catch specific errors",
            )
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, (str, bytes)) and len(value) > 10_000:
            self.bad(node, "string constant longer than 10,000 characters")
        elif (
            isinstance(value, int) and not isinstance(value, bool) and abs(value) >= MAX_INT_LITERAL
        ):
            self.bad(node, "integer literal wider than 64 bits (write a float, e.g. 1e20)")


def vet(
    source: str,
    *,
    entry: str = "compute_dense_reward",
    self_paths: set[str] | None = None,
    self_leaves: set[str] | None = None,
) -> Vetting:
    """Parse and statically check ``source``; return the tree, every finding and the warnings
    (an unused import of an allowed module is a warning; any import of another module, used
    or not, is a finding).

    Args:
        source: the reward program.
        entry: the function that must be defined.
        self_paths: every ``self.a.b`` path the environment card defines; reads of other
            paths rooted at the entry function's first parameter are reported by name.
        self_leaves: the paths whose values are plain data (floats, arrays): attribute
            access beyond them (``.copy()``, ``.shape``) is not checked against the card.
    """
    if len(source) > 100_000:
        return Vetting(None, [Finding("static", "program is longer than 100,000 characters")], [])
    try:
        tree = ast.parse(source, filename="<reward>")
    except SyntaxError as exc:
        return Vetting(None, [Finding("syntax", f"{exc.msg}", exc.lineno)], [])
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        return Vetting(
            None, [Finding("syntax", f"the program cannot be parsed: {type(exc).__name__}")], []
        )
    vetter = _Vetter(tree)
    vetter.visit(tree)
    findings = vetter.findings
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == entry), None)
    if fn is None:
        findings.append(Finding("static", f"no top-level function {entry}(self, action) defined"))
    else:
        args = fn.args
        n_pos = len(args.posonlyargs) + len(args.args)
        if args.vararg or args.kwarg or n_pos not in (2, 3):
            findings.append(
                Finding(
                    "static", f"{entry} must take (self, action) or (self, action, obs)", fn.lineno
                )
            )
        if self_paths is not None and n_pos:
            self_name = (args.posonlyargs + args.args)[0].arg
            findings += _check_self_paths(fn, self_name, self_paths, self_leaves or set())
    for stmt in tree.body:
        if not isinstance(
            stmt, (ast.FunctionDef, ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.Expr)
        ):
            findings.append(
                Finding(
                    "static",
                    f"top-level {type(stmt).__name__} is not allowed: only imports, constants and functions",
                    stmt.lineno,
                )
            )
    return Vetting(tree, findings, vetter.warnings)


def _check_self_paths(
    fn: ast.FunctionDef, self_name: str, paths: set[str], leaves: set[str]
) -> list[Finding]:
    findings: list[Finding] = []
    seen: set[tuple[str, int]] = set()
    for node in ast.walk(fn):
        if not isinstance(node, ast.Attribute) or not isinstance(node.ctx, ast.Load):
            continue
        chain = _attribute_chain(node)
        if not chain or chain[0] != self_name:
            continue
        path = "self"
        for part in chain[1:]:
            if path in leaves:
                break
            candidate = f"{path}.{part}"
            if candidate not in paths:
                members = sorted(p.rsplit(".", 1)[1] for p in paths if p.rsplit(".", 1)[0] == path)
                key = (candidate, node.lineno)
                if key not in seen:
                    seen.add(key)
                    findings.append(
                        Finding(
                            "static",
                            f"{candidate} is not defined by the environment card; "
                            f"{path} has: {', '.join(members) or '(nothing)'}",
                            node.lineno,
                        )
                    )
                break
            path = candidate
    return findings
