"""The library's layout: a core below, the model organism as a wing on top, no import cycles.

Imports are read from the source (every ``import`` / ``from ... import``, at module level or inside
functions), so a lazy import counts as much as a top-level one.
"""
from __future__ import annotations

from pathlib import Path

from loco_lib.fingerprint import import_graph

LIB = Path(__file__).resolve().parent.parent / "loco_lib"
# Modules above both the core and the wing: the package facade, the command line, the Colab set-up.
FRONT = {"loco_lib", "loco_lib.__main__", "loco_lib.cli", "loco_lib.colab_setup"}
WING = "loco_lib.organism"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), i.e. the import cycles."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
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
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    graph = import_graph(LIB)
    assert "loco_lib.hooks" in graph and "loco_lib.organism.protocol" in graph  # the walk sees the tree
    below = {m: {t for t in ts if t not in FRONT} for m, ts in graph.items() if m not in FRONT}
    assert cycles(below) == []


def test_no_core_module_imports_the_organism():
    graph = import_graph(LIB)
    core = [m for m in graph if m not in FRONT and not (m == WING or m.startswith(WING + "."))]
    assert len(core) > 20
    offenders = {m: sorted(t for t in graph[m] if t == WING or t.startswith(WING + ".")) for m in core}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_the_checks_can_fail(tmp_path):
    """A small package with a cycle and a core module reaching into a wing is caught."""
    pkg = tmp_path / "pkg"
    (pkg / "wing").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    (pkg / "c.py").write_text("from .wing.w import y\n")
    (pkg / "wing" / "__init__.py").write_text("")
    (pkg / "wing" / "w.py").write_text("from ..c import z\n")
    graph = import_graph(pkg)
    assert graph["pkg.c"] == {"pkg.wing.w"} and graph["pkg.wing.w"] == {"pkg.c"}
    assert sorted(cycles(graph)) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.wing.w"]]
