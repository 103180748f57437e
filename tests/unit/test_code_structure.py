"""The code's shape, as STYLE.md asks it: imports inside sandbox/ (and harness/) run one way (no cycle, none hidden in
a function to dodge one), like kind's pkg/build and pkg/cluster composed by pkg/cmd; bench/ and harness/ drive the
collection without importing the tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The packages whose modules import each other one way only.
PACKAGES = ("sandbox", "harness")
# What drives the collection from outside tests/ (benchmarks, the shared harness): none of it may import tests/.
NOT_TESTS = ("bench", "harness")


def _package_imports(tree: ast.AST, package: str = "sandbox") -> list[tuple[str, ast.ImportFrom, bool]]:
    """(module imported, node, at top level?) for each import of another module of `package`."""
    found = []
    top = {id(node) for node in getattr(tree, "body", [])}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        module = node.module or ""
        if node.level == 1 or module == package or module.startswith(package + "."):
            base = module.removeprefix(package).lstrip(".")
            targets = [base] if base else [alias.name for alias in node.names]
            found += [(target.split(".")[0], node, id(node) in top) for target in targets]
    return found


def _graph(package: str) -> tuple[dict[str, set[str]], list[str]]:
    directory = ROOT / package
    graph: dict[str, set[str]] = {}
    nested = []
    for path in sorted(directory.glob("*.py")):
        module = path.stem
        imports = _package_imports(ast.parse(path.read_text()), package)
        graph[module] = {target for target, _, _ in imports if (directory / f"{target}.py").exists()}
        nested += [
            f"{path.name}:{node.lineno} imports {target} inside a function" for target, node, top in imports if not top
        ]
    return graph, nested


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_are_at_the_top_of_each_module(package: str):
    _, nested = _graph(package)
    assert nested == []


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_have_no_cycle(package: str):
    graph, _ = _graph(package)
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


def _imports_of_tests(tree: ast.AST) -> list[int]:
    """Line numbers of every import of the `tests` package (at any depth, absolute)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name == "tests" or name.startswith("tests.") for name in names):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("directory", NOT_TESTS)
def test_nothing_outside_tests_imports_the_tests(directory: str):
    """bench/ and harness/ use harness/ (and sandbox/); tests/ is the tests' own, not a library for them."""
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / directory).rglob("*.py"))
        for line in _imports_of_tests(ast.parse(path.read_text()))
    ]
    assert found == [], "import harness (or sandbox) instead of tests: " + ", ".join(found)


def test_the_check_finds_an_import_of_the_tests():
    tree = ast.parse("import os\nfrom tests.helpers import BIN\nimport tests.kube\nfrom tests import stores\n"
                     "from harness.ansible import BIN\nimport testsuite\n")  # fmt: skip
    assert _imports_of_tests(tree) == [2, 3, 4]
