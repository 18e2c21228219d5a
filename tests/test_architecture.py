"""Structure that must not erode: no import cycle between rewardlab's modules and
subpackages (deferred imports inside functions and ``TYPE_CHECKING`` imports count too),
and every module's docstring examples run."""

from __future__ import annotations

import ast
import doctest
import importlib
from pathlib import Path

import pytest

import rewardlab

PACKAGE = Path(rewardlab.__file__).parent


def unit_of(module: str) -> str:
    """``rewardlab.gate`` -> ``search``; ``rewardlab.training`` -> ``training``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every rewardlab module ``path`` imports, wherever the import statement is."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
    return {m for m in found if m.startswith("rewardlab.")}


def unit_graph() -> dict[str, dict[str, set[str]]]:
    """``{unit: {imported unit: {importing modules}}}`` over the package (the root
    ``rewardlab/__init__.py``, the public facade, is left out)."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        if source == "rewardlab":
            continue
        for target in imports(path):
            a, b = unit_of(source), unit_of(target)
            if a != b and b:
                graph.setdefault(a, {}).setdefault(b, set()).add(source)
    return graph


def cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b": {"x"}}, "b": {"c": {"y"}}, "c": {"a": {"z"}}, "d": {"a": {"w"}}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b": {"x"}}}) == []


def test_no_import_cycle_between_modules() -> None:
    graph = unit_graph()
    assert graph, "the import graph was read"
    found = cycles(graph)
    detail = [
        f"{a} -> {b} ({', '.join(sorted(graph[a][b]))})"
        for cycle in found
        for a in cycle
        for b in cycle
        if b in graph.get(a, {})
    ]
    assert not found, "import cycles:\n" + "\n".join(detail)


MODULES = sorted(module_name(p) for p in PACKAGE.rglob("*.py") if "__main__" not in p.name)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    """CI runs every module's examples (most modules have a few)."""
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # an optional extra (mjx, maniskill) that is not installed
        pytest.skip(f"{name}: {exc}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, name
