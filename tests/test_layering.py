"""The package's layers, read from the source (ast, nothing imported): data does not import the training loop, the
loop does not import the doctor, and no module-level import cycle exists anywhere (nor, inside the doctor, one
hidden in a function-level import)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "gradwise"


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts).removesuffix(".__init__")] = p
    return out


MODULES = _modules()


def _imports(name: str, path: Path, top_level_only: bool) -> set[str]:
    """The gradwise modules `name` imports (at module level only, or anywhere in it, functions included)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` packages up
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            named = {f"{base}.{a.name}" for a in node.names} & MODULES.keys()
            # `from pkg import submodule` depends on the submodule; `from pkg import name` on the package itself
            found |= named or {base}
    return {m for m in found if m in MODULES and m != name}


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    return {m: _imports(m, p, top_level_only) for m, p in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative enough for this size)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize(("lower", "upper"), [("gradwise.data", "gradwise.train"),
                                              ("gradwise.data", "gradwise.doctor"),
                                              ("gradwise.train", "gradwise.doctor")])
def test_lower_layer_does_not_import_upper(lower: str, upper: str) -> None:
    """Function-level imports count too: a lazy import is still a dependency."""
    leaks = [f"{m} -> {d}" for m, deps in _graph(top_level_only=False).items() if m.startswith(lower + ".")
             or m == lower for d in deps if d == upper or d.startswith(upper + ".")]
    assert not leaks, leaks


def test_no_module_level_import_cycles() -> None:
    assert _cycles(_graph(top_level_only=True)) == []


def test_doctor_has_no_hidden_import_cycles() -> None:
    """Inside the doctor even function-level imports form no cycle (the checks package imports the measuring
    step, never the other way round)."""
    graph = {m: {d for d in deps if d.startswith("gradwise.doctor")} for m, deps in
             _graph(top_level_only=False).items() if m.startswith("gradwise.doctor")}
    assert _cycles(graph) == []


def test_no_empty_packages() -> None:
    """A package holds at least one module besides its __init__ (or code in the __init__ itself)."""
    empty = [p.parent.name for p in ROOT.rglob("__init__.py")
             if not any(q.name != "__init__.py" for q in p.parent.glob("*.py")) and not p.read_text().strip()]
    assert empty == []
