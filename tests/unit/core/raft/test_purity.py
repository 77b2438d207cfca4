"""The Raft core and the KV state machine stay sans-IO: no asyncio/nats/time/global random."""

from __future__ import annotations

import ast
from pathlib import Path

import broker_agents.core.raft as raft_pkg

FORBIDDEN = {"asyncio", "nats", "time", "uvloop", "socket", "threading", "datetime"}
ROOT = Path(raft_pkg.__file__).parent
FILES = [*ROOT.glob("*.py"), ROOT.parent / "kvsm.py"]


def test_core_modules_import_nothing_impure() -> None:
    for path in FILES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_core_never_uses_the_global_random_module_functions() -> None:
    for path in FILES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "random" and node.attr != "Random"):
                raise AssertionError(f"{path.name} calls random.{node.attr}")


def test_modules_stay_small() -> None:
    for path in FILES:
        assert len(path.read_text().splitlines()) <= 400, path.name
