"""The packages' layers, read from the source (every import, also those inside functions).

    decay (the pure core)  <-  decay_kafka (Kafka adapters)  <-  stream_app (the worker)
          ^                                                          ^
          +---------------  training (offline)                       |
                                 ^                                   |
                                 +------  decay_cli (the commands) --+

An arrow points from a package to one it may import. ``decay/__main__.py`` is the one exception:
``python -m decay`` runs the command line, so it imports decay_cli; importing ``decay`` never
runs it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("decay", "decay_kafka", "stream_app", "training", "decay_cli")
ENTRY_SHIMS = {"decay.__main__"}

# What each package must not import (first-party packages and the heavy or I/O libraries).
FORBIDDEN = {
    "decay": {"decay_kafka", "stream_app", "training", "decay_cli", "faust", "aiokafka", "typer"},
    "decay_kafka": {"stream_app", "training", "decay_cli", "faust"},
    "stream_app": {"training", "decay_cli", "tensorflow", "tf2onnx"},
    "training": {"decay_kafka", "stream_app", "decay_cli", "faust", "aiokafka"},
    "decay_cli": set(),
}

# Import circles that exist, with the reason they are tolerated: none.
KNOWN_CYCLES: list[set[str]] = []


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every absolute import in the file, as dotted names (``from a import b`` gives a and a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    files = {module_name(f): f for p in PACKAGES for f in (ROOT / p).rglob("*.py")}
    return {m: imported_names(f) for m, f in files.items()}


GRAPH = import_graph()


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative; the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_the_graph_reads_every_package() -> None:
    assert {m.split(".")[0] for m in GRAPH} == set(PACKAGES)
    assert "decay_kafka.kafka_client" in GRAPH["stream_app.app"]


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = sorted(
        f"{module} imports {name}"
        for module, names in GRAPH.items()
        if module.split(".")[0] == package and module not in ENTRY_SHIMS
        for name in names
        if name.split(".")[0] in FORBIDDEN[package]
    )
    assert wrong == []


def test_no_import_circles() -> None:
    modules = set(GRAPH)
    edges = {
        m: {n for n in names if n in modules and n != m}
        for m, names in GRAPH.items()
        if m not in ENTRY_SHIMS
    }
    edges = {m: {n for n in targets if n in edges} for m, targets in edges.items()}
    new = [c for c in strongly_connected(edges) if not any(c <= k for k in KNOWN_CYCLES)]
    assert new == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(edges) == [{"a", "b", "c"}]
