"""The layout's import rule (docs/architecture.md), checked on every import in csa_cli.

cli -> api -> pipeline -> stages -> {graph, measure, tensorrt, data, models, backends} -> base.
Every import counts, including those inside functions; only `if TYPE_CHECKING:` blocks are
exempt. An arrow may point down a tier, or sideways inside a tier, but never up, and the
packages may form no loop (nor may the modules).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "csa_cli"

BASE = {
    "csa_cli",
    "csa_cli.errors",
    "csa_cli.inputs",
    "csa_cli.records",
    "csa_cli.paths",
    "csa_cli.manifest",
    "csa_cli.store",
    "csa_cli.events",
    "csa_cli.console",
}
MIDDLE = ("graph", "measure", "tensorrt", "data", "models", "backends")
# api: the Python API (csa_cli/api/), which the commands wrap. The package `csa_cli` re-exports it
# through importlib in a module __getattr__ (no import statement): the package's face, not an arrow.
TIERS = {"base": 0, "middle": 1, "stages": 2, "pipeline": 3, "api": 4, "cli": 5}
# Packages at the bottom of the middle tier: they may import only base (and each other's nothing).
BOTTOM = {"csa_cli.models": set(), "csa_cli.backends": {"csa_cli.graph", "csa_cli.tensorrt"}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def unit(module: str) -> str:
    """The node an import is judged by: a base module, a middle package, a stage package, pipeline or cli."""
    if module in BASE:
        return module
    parts = module.split(".")
    if len(parts) < 2:
        return module
    if parts[1] == "stages" and len(parts) > 2:
        return ".".join(parts[:3])
    if parts[1] == "__main__":
        return "csa_cli.cli"
    return ".".join(parts[:2])


def tier(node: str) -> str:
    if node in BASE:
        return "base"
    second = node.split(".")[1]
    if second in MIDDLE:
        return "middle"
    if second in TIERS:
        return second
    raise AssertionError(f"{node} belongs to no tier: add it to tests/test_layout.py and docs/architecture.md")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str, source: str | None = None) -> set[str]:
    """Every csa_cli module `module` imports, at any depth of its code, outside TYPE_CHECKING blocks."""
    path = MODULES[module]
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("csa_cli"))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            if target.startswith("csa_cli"):
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in MODULES else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected component with more than one node (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def test_every_module_belongs_to_a_tier() -> None:
    for module in MODULES:
        tier(unit(module))


def test_no_import_runs_back_up() -> None:
    upward = []
    for module, targets in GRAPH.items():
        src = unit(module)
        for target in targets:
            dst = unit(target)
            if src == dst:
                continue
            if TIERS[tier(dst)] > TIERS[tier(src)]:
                upward.append(f"{module} -> {target} ({tier(src)} -> {tier(dst)})")
            if src in BOTTOM and tier(dst) != "base" and dst not in BOTTOM[src]:
                upward.append(f"{module} -> {target} ({src} may import only base)")
    assert not upward, "imports against the layout's direction:\n" + "\n".join(sorted(upward))


def test_no_loops_between_packages() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in GRAPH.items():
        edges[unit(module)].update(unit(t) for t in targets if unit(t) != unit(module))
    assert not _cycles(edges), f"import loops between packages: {_cycles(edges)}"


def test_no_loops_between_modules() -> None:
    loops = _cycles(GRAPH)
    assert not loops, f"import loops between modules (lazy imports included): {loops}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import csa_cli.cli\n", {"csa_cli.cli"}),
        ("def f():\n    from csa_cli.cli import common\n", {"csa_cli.cli.common"}),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from csa_cli.cli import common\n", set()),
        ("from ..cli import common\n", {"csa_cli.cli.common"}),
        ("import typing\nif typing.TYPE_CHECKING:\n    import csa_cli.cli\nelse:\n    import csa_cli.store\n", {"csa_cli.store"}),
    ],
)
def test_the_walker_sees_lazy_and_relative_imports(source: str, expected: set[str]) -> None:
    assert imports_of("csa_cli.graph.index", source) == expected


def test_the_rule_catches_an_upward_arrow() -> None:
    assert TIERS[tier(unit("csa_cli.cli.common"))] > TIERS[tier(unit("csa_cli.stages.export.stage"))]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


PRINTERS = {"csa_cli.console"}  # the Output object; cli/ prints too


def _prints(module: str) -> list[str]:
    """Calls that write to the terminal: print(), sys.stdout/stderr writes, rich consoles."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            found.append(f"print() at line {node.lineno}")
        elif isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr") and isinstance(node.value, ast.Name) and node.value.id == "sys":
            found.append(f"sys.{node.attr} at line {node.lineno}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rich":
            found.append(f"rich import at line {node.lineno}")
    return found


def test_only_the_cli_and_the_output_object_print() -> None:
    offenders = {}
    for module in MODULES:
        if module.startswith("csa_cli.cli") or module in PRINTERS or ".tensorrt.device." in module:  # device scripts run on the Orin
            continue
        if found := _prints(module):
            offenders[module] = found
    assert not offenders, f"stages report through csa_cli.events, they do not print: {offenders}"


MODULE_LINES = 500
FUNCTION_LINES = 60
BIG_ON_PURPOSE = {"csa_cli.models.csa"}  # one file per architecture family, as in timm


def test_modules_stay_small() -> None:
    big = {m: n for m, p in MODULES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MODULE_LINES and m not in BIG_ON_PURPOSE}
    assert not big, f"modules over {MODULE_LINES} lines: split them by concern ({big})"


def test_long_functions_say_why() -> None:
    unexplained = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or not node.end_lineno:
                continue
            length = node.end_lineno - node.lineno + 1
            if length > FUNCTION_LINES and "Long because" not in (ast.get_docstring(node) or ""):
                unexplained.append(f"{module}.{node.name} ({length} lines)")
    assert not unexplained, f"functions over {FUNCTION_LINES} lines without 'Long because ...' in their docstring: {unexplained}"
