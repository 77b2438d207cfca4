"""The registry core stays pure: no IO, no clock, no global randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import broker_agents.core.registry as pkg

FORBIDDEN = {"asyncio", "nats", "time", "uvloop", "socket", "threading", "random", "datetime"}


def test_core_registry_imports_nothing_impure() -> None:
    root = Path(pkg.__file__).parent
    offenders = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
    assert len(list(root.glob("*.py"))) >= 6
