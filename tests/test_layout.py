"""The package's layout: no import cycles between modules, no module past 450 lines, each room documented.

The import graph is read from the source with ``ast``, imports inside functions included (a cycle
hidden in a function still ties the two modules together) and ``if TYPE_CHECKING:`` blocks left out
(they never run). Run as a script, it prints each cycle: ``python tests/test_layout.py``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pipelines"
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, name: str, is_package: bool):
    """Every imported dotted name in ``tree``, relative imports resolved against module ``name``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _imports(ast.Module([child], []), name, is_package))
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                anchor = parts if is_package else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        yield from _imports(node, name, is_package)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ``pipelines`` it imports (a package's ``__init__`` counts as a module)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        targets = set()
        for dotted in _imports(tree, name, path.name == "__init__.py"):
            while dotted and dotted not in known:  # pipelines.x.function -> pipelines.x
                dotted = dotted.rpartition(".")[0]
            if dotted and dotted != name:
                targets.add(dotted)
        graph[name] = targets
    return graph


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
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    graph = import_graph()
    assert "pipelines.detectors" in graph["pipelines.evaluate"]  # the graph sees imports at all
    assert not cycles(graph), f"modules that import each other: {cycles(graph)}"


def test_evaluation_does_not_import_export():
    assert not {m for m in import_graph()["pipelines.evaluate"] if m.startswith("pipelines.export")}


def test_evaluation_reaches_no_export_module_through_others():
    """Export scores its models with evaluation's code, so evaluation reaching export (as loading a .tflite
    once did) would tie the two stages together."""
    graph = import_graph()
    reached, todo = set(), ["pipelines.evaluate"]
    while todo:
        for target in graph[todo.pop()] - reached:
            reached.add(target)
            todo.append(target)
    assert not {m for m in reached if m.startswith("pipelines.export")}


def test_no_module_over_450_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules: {long}"


def test_every_subpackage_says_what_lives_there():
    undocumented = [
        name
        for name, path in modules().items()
        if path.name == "__init__.py" and not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert not undocumented


if __name__ == "__main__":
    found = cycles(import_graph())
    for component in found:
        print("cycle:", " <-> ".join(component))
    print(f"{len(modules())} modules, {len(found)} cycles")
    sys.exit(1 if found else 0)
