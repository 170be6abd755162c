"""House rules of the code base, checked: small modules, docstrings, pure modules, import direction."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "proxy"
MODULES = sorted(PACKAGE.rglob("*.py"))
SUBPACKAGES = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
PURE_PACKAGES = {"config", "core", "providers"}
PURE_MODULES = {
    "governance/estimate.py",
    "governance/keyhash.py",
    "governance/keytable.py",
    "governance/limits.py",
    "governance/periods.py",
    "governance/prices.py",
    "governance/windows.py",
    "routing/affinity.py",
    "routing/backoff.py",
    "routing/balancer.py",
    "routing/capacity.py",
    "routing/retryafter.py",
    "routing/selector.py",
    "routing/health_report.py",
    "routing/send.py",
    "routing/signals.py",
    "routing/stats.py",
    "transport/headers.py",
}
"""Decision code: no I/O, no event loop, no aiohttp; the clock and RNG are passed in."""
PURE = sorted(
    p
    for p in MODULES
    if p.relative_to(PACKAGE).parts[0] in PURE_PACKAGES
    or str(p.relative_to(PACKAGE)) in PURE_MODULES
)
FORBIDDEN_IN_PURE = {"aiohttp", "asyncio", "socket", "structlog", "watchfiles", "proxy.ops"}


def rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


def imports_of(path: Path) -> set[str]:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            if node.module == "proxy":
                imported.update(f"proxy.{a.name}" for a in node.names)
    return imported


def allowed_imports(package: str) -> set[str]:
    """What a subpackage may import, as its `__init__` docstring states ("May import: ...")."""
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text())) or ""
    match = re.search(r"^May import: (.*)$", doc, re.MULTILINE)
    assert match, f"proxy/{package}/__init__.py must say what it may import"
    return {name.strip() for name in match.group(1).split(",") if name.strip().isidentifier()}


def test_modules_and_subpackages_were_found() -> None:
    assert len(MODULES) > 30
    assert {"config", "core", "providers", "routing", "transport", "ops", "server", "fake"} <= set(
        SUBPACKAGES
    )
    assert len(PURE) > 15


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_module_is_small_with_a_one_line_docstring(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= 400, "split the module by responsibility"
    doc = ast.get_docstring(ast.parse(text))
    assert doc, "every module states its job in a one-line docstring"
    assert len(doc.splitlines()[0]) <= 100


def test_no_grab_bag_modules() -> None:
    assert not [p for p in MODULES if p.stem in {"utils", "helpers", "common", "misc"}]


def test_every_module_lives_in_a_subpackage() -> None:
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert top == {"__init__.py", "__main__.py"}


@pytest.mark.parametrize("path", PURE, ids=rel)
def test_pure_modules_do_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        assert not isinstance(node, ast.AsyncFunctionDef | ast.Await), "pure modules never await"
    imported = imports_of(path)
    roots = {m.split(".")[0] for m in imported} | {".".join(m.split(".")[:2]) for m in imported}
    assert not roots & FORBIDDEN_IN_PURE


@pytest.mark.parametrize("path", [p for p in MODULES if p.parent != PACKAGE], ids=rel)
def test_imports_run_downward_between_subpackages(path: Path) -> None:
    own = path.relative_to(PACKAGE).parts[0]
    allowed = allowed_imports(own) | {own}
    for module in imports_of(path):
        parts = module.split(".")
        if parts[0] != "proxy" or len(parts) < 2 or parts[1] == "__version__":
            continue
        assert parts[1] in allowed, f"{rel(path)} imports {module}; {own} may import {allowed}"


def test_subpackage_layers_have_no_cycle() -> None:
    graph = {p: allowed_imports(p) for p in SUBPACKAGES}
    for name, deps in graph.items():
        assert deps <= set(SUBPACKAGES), f"{name} names an unknown subpackage"
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        for dep in graph[node]:
            visit(dep, (*path, node))
        done.add(node)

    for name in graph:
        visit(name, ())
