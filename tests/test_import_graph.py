"""Imports inside spinemodels and inside spinedata form a DAG: no module imports, directly or through others,
one that imports it back (imports inside functions and under TYPE_CHECKING included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_names(package: str) -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package) of every module under ``package``."""
    modules = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def imported(name: str, path: Path, is_package: bool, known: set[str]) -> set[str]:
    """Every module (and ``module.name``) an ``import`` statement anywhere in the file names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names = {f"{module}.{alias.name}" for alias in node.names}
            found.update(names)
            if not names <= known:  # ``from package import submodule`` imports the submodule, not a cycle
                found.add(module)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    modules = module_names(package)
    return {name: {m for m in imported(name, *where, set(modules)) if m in modules and m != name}
            for name, where in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", ["spinemodels", "spinedata"])
def test_package_imports_form_a_dag(package):
    graph = import_graph(package)
    assert len(graph) > 10
    assert cycles(graph) == []
