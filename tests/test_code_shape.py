"""The code's shape, as the design asks: short functions, and no import cycle between the gateway's modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lambdagate"
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


MODULES = _modules()


def test_no_function_is_longer_than_60_lines() -> None:
    long = []
    for name, tree in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert not long, "split these functions:\n" + "\n".join(long)


def _top_level_imports(name: str, tree: ast.Module, *, everywhere: bool = False) -> set[str]:
    """Modules of the package imported when `name` is imported (not under TYPE_CHECKING, not inside functions),
    or, with `everywhere`, by any line of it (functions included)."""
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        deferred = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not everywhere
        for sub in () if deferred else ast.walk(node):
            if (
                isinstance(sub, ast.ImportFrom)
                and sub.module
                and sub.level == 0
                and sub.module.startswith("lambdagate")
            ):
                submodules = {f"{sub.module}.{a.name}" for a in sub.names} & MODULES.keys()
                found |= submodules
                if len(submodules) < len(sub.names):  # a name defined by the module itself, not a submodule
                    found.add(sub.module)
            elif isinstance(sub, ast.Import):
                found.update(a.name for a in sub.names if a.name.startswith("lambdagate"))
    return {m for m in found if m in MODULES and m != name}


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, tree in MODULES.items():
        edges = _top_level_imports(name, tree)
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        edges |= {
            p for m in list(edges) for p in _parents(m) if p in MODULES and p != name and not name.startswith(p + ".")
        }
        edges = {m for m in edges if not name.startswith(m + ".")}  # a package is being imported when its modules are
        graph[name] = edges
    return graph


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


@pytest.mark.parametrize("package", ["lambdagate.config"])
def test_config_is_a_leaf_package(package: str) -> None:
    """config imports nothing of the gateway but itself and the shared error types, not even inside a function."""
    outside = {
        f"{name} imports {dep}"
        for name, tree in MODULES.items()
        if name.startswith(package)
        for dep in _top_level_imports(name, tree, everywhere=True)
        if not dep.startswith(package) and dep not in ("lambdagate.errors", "lambdagate")
    }
    assert not outside, sorted(outside)
