"""The library is a one-way stack: core -> engines -> book support -> entry points, without import cycles.

Every import of every module counts, at module level or inside a function, so a deferred import cannot
hide a dependency that runs up the stack.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "robseg_lib"
LAYERS = {"core": 0, "engines": 1, "book": 2, "entry": 3}
ENTRY_POINTS = {"robseg_lib.cli", "robseg_lib.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    if module in ENTRY_POINTS:
        return LAYERS["entry"]
    if module.startswith("robseg_lib.book"):
        return LAYERS["book"]
    if module.startswith("robseg_lib.engines"):
        return LAYERS["engines"]
    return LAYERS["core"]


def imports_in(source: str, modules: set[str]) -> set[str]:
    """The library modules that ``source`` imports anywhere (``from robseg_lib.x import y`` counts
    ``robseg_lib.x.y`` when that is a module, else ``robseg_lib.x``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("robseg_lib")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("robseg_lib"):
                continue
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
    return found


def graph() -> dict[str, set[str]]:
    files = [p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts]
    modules = {module_name(p) for p in files}
    edges = {
        module_name(p): (imports_in(p.read_text(encoding="utf-8"), modules) & modules) - {module_name(p)} for p in files
    }
    # A package's own __init__ importing its submodules is how a package exports them, not a dependency of
    # the submodules on the package: drop those edges, and count an import of a package from outside it as an
    # import of the package only.
    return {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in edges.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``edges``, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_runs_up_the_stack():
    upward = [
        f"{module} ({layer(module)}) imports {dep} ({layer(dep)})"
        for module, deps in graph().items()
        for dep in deps
        if layer(dep) > layer(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    edges = graph()
    assert "robseg_lib.engines.zoo" in edges and "robseg_lib.book.claims" in edges, "the scan found the modules"
    found = cycle(edges)
    assert found is None, " -> ".join(found or [])


def test_the_checks_fail_on_a_bad_graph():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
    assert layer("robseg_lib.book.claims") > layer("robseg_lib.engines.zoo") > layer("robseg_lib.attacks.apgd")


def test_function_level_imports_count():
    source = "import os\n\ndef f():\n    from robseg_lib.engines import zoo\n    from robseg_lib.book.claims import x\n"
    modules = {"robseg_lib.engines.zoo", "robseg_lib.book.claims", "robseg_lib.attacks"}
    assert imports_in(source, modules) == {"robseg_lib.engines.zoo", "robseg_lib.book.claims"}
