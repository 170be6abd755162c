"""House rules of the code base, checked: small modules, docstrings, pure decision modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "proxy"
MODULES = sorted(PACKAGE.rglob("*.py"))
PURE = {
    "balancer",
    "body",
    "chains",
    "compiler",
    "config",
    "errors",
    "headers",
    "retryafter",
    "selector",
    "sse",
    "stats",
    "usage",
}
"""Decision modules: no I/O, no event loop, no aiohttp; the clock and RNG are passed in."""
FORBIDDEN_IN_PURE = {"aiohttp", "asyncio", "socket", "structlog", "watchfiles", "proxy.logs"}


def test_modules_were_found() -> None:
    assert len(MODULES) > 20


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_is_small_with_a_one_line_docstring(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= 400, "split the module by responsibility"
    doc = ast.get_docstring(ast.parse(text))
    assert doc, "every module states its job in a one-line docstring"
    assert len(doc.splitlines()[0]) <= 100


def test_no_grab_bag_modules() -> None:
    assert not [p for p in MODULES if p.stem in {"utils", "helpers", "common", "misc"}]


@pytest.mark.parametrize("name", sorted(PURE))
def test_pure_modules_do_no_io(name: str) -> None:
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        assert not isinstance(node, ast.AsyncFunctionDef | ast.Await), "pure modules never await"
    roots = {m.split(".")[0] for m in imported} | imported
    assert not roots & FORBIDDEN_IN_PURE
