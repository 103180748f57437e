"""The code's shape, as STYLE.md asks it: imports inside sandbox/ run one way (no cycle, none hidden in a function to
dodge one), like kind's pkg/build and pkg/cluster composed by pkg/cmd."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sandbox"


def _package_imports(tree: ast.AST) -> list[tuple[str, ast.ImportFrom, bool]]:
    """(module imported, node, at top level?) for each import of another sandbox module."""
    found = []
    top = {id(node) for node in getattr(tree, "body", [])}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("sandbox")):
            base = (node.module or "").removeprefix("sandbox").lstrip(".")
            targets = [base] if base else [alias.name for alias in node.names]
            found += [(target.split(".")[0], node, id(node) in top) for target in targets]
    return found


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    graph: dict[str, set[str]] = {}
    nested = []
    for path in sorted(PACKAGE.glob("*.py")):
        module = path.stem
        imports = _package_imports(ast.parse(path.read_text()))
        graph[module] = {target for target, _, _ in imports if (PACKAGE / f"{target}.py").exists()}
        nested += [
            f"{path.name}:{node.lineno} imports {target} inside a function" for target, node, top in imports if not top
        ]
    return graph, nested


def test_sandbox_imports_are_at_the_top_of_each_module():
    _, nested = _graph()
    assert nested == []


def test_sandbox_imports_have_no_cycle():
    graph, _ = _graph()
    # The package's __init__ and __main__ are the entry points: they may import anything, nothing imports them.
    edges = {m: {t for t in targets if t not in ("__init__", "__main__")} for m, targets in graph.items()}
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "open":
                cycles.append([*trail[trail.index(target) :], target] if target in trail else [module, target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == [], " ; ".join(" -> ".join(c) for c in cycles)


def test_the_check_finds_a_cycle_and_a_hidden_import():
    # The checks above can fail: a made-up pair of modules that import each other, one of them inside a function.
    first = ast.parse("from .second import x\n")
    second = ast.parse("def f():\n    from .first import y\n")
    assert [(t, top) for t, _, top in _package_imports(first)] == [("second", True)]
    assert [(t, top) for t, _, top in _package_imports(second)] == [("first", False)]
