"""No module of the router imports, however indirectly, a module that imports it back.

A cycle hides a layering mistake (a handler that knows the runtime, a loader stage that knows a later
one) behind a lazy or TYPE_CHECKING import. Imports are read with `ast`, so TYPE_CHECKING blocks and
imports inside functions count too: they are still dependencies, only postponed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "router"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The router modules `path` imports anywhere in its body (a package's own `__init__` excluded)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` depends on the submodule when there is one, else on the package.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
            ]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = sorted((ROOT / PACKAGE).rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports_of(f, modules) for f in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_detector_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_router_has_no_import_cycles() -> None:
    graph = import_graph()
    # Package __init__ modules re-export their submodules: an edge from a package to its own submodule
    # is how re-exporting works, not a layering decision, so it does not count.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not t.startswith(module + ".")}
    assert cycles(graph) == []


def test_router_components_have_no_import_cycles() -> None:
    """The same between the package's parts (`router.api`, `router.dispatch`, ...): the request path reads
    as layers, so a lower part (dispatch) must not reach back into a higher one (api) even through a
    module that is not itself in a module-level cycle."""
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        part = ".".join(module.split(".")[:2])
        graph.setdefault(part, set()).update(
            p for p in (".".join(t.split(".")[:2]) for t in targets) if p not in (part, PACKAGE)
        )
    assert cycles(graph) == []
