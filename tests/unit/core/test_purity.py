"""Every module under broker_agents/core stays a pure protocol core (DESIGN: sans-IO).

No asyncio, nats, clocks, sockets or threads; randomness only through an injected
``random.Random`` (the type may be imported, the module's global functions never used);
and one job per module (at most 400 lines).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import broker_agents.core as core

FORBIDDEN = {"asyncio", "nats", "time", "uvloop", "socket", "threading", "datetime"}
FILES = sorted(Path(core.__file__).parent.rglob("*.py"))


def _imports(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            if node.module == "random":
                names += [f"random.{a.name}" for a in node.names]
    return names


def test_every_core_package_is_scanned() -> None:
    packages = {p.parent.name for p in FILES}
    assert {"core", "raft", "pbft", "coord", "auction", "registry", "variables"} <= packages


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FILES[0].parent)))
def test_core_module_imports_nothing_impure(path: Path) -> None:
    for name in _imports(ast.parse(path.read_text())):
        assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
        assert not name.startswith("random.") or name == "random.Random", (
            f"{path.name} imports from the global random module ({name})")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FILES[0].parent)))
def test_core_module_never_calls_the_global_random_functions(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "random" and node.attr != "Random"):
            raise AssertionError(f"{path.name} calls random.{node.attr}")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FILES[0].parent)))
def test_core_module_stays_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 400, path.name
