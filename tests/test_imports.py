"""The package's import graph has no cycle (module-level and function-level imports alike): each
floor imports only the floors below it."""

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "normtheory"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> nx.DiGraph:
    """normtheory module -> the normtheory modules it imports (a name imported from a package
    that is itself a module of that package counts as that module)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # each name: the submodule it is, else the module it comes from
                targets = [
                    f"{node.module}.{a.name}"
                    if f"{node.module}.{a.name}" in modules
                    else node.module
                    for a in node.names
                ]
            for target in targets:
                if target in modules and target != name:
                    graph.add_edge(name, target)
    return graph


def test_the_graph_sees_the_imports():
    graph = import_graph()
    assert graph.has_edge("normtheory.cli", "normtheory.registry")
    assert graph.has_edge("normtheory.sweep", "normtheory.executors")


def test_no_import_cycle():
    cycles = list(nx.simple_cycles(import_graph()))
    if cycles:
        pytest.fail("import cycles: " + "; ".join(" -> ".join([*c, c[0]]) for c in cycles[:10]))
