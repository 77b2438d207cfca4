"""The variables core stays pure: no IO, clocks, threads or global randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import broker_agents.core.variables as pkg

FORBIDDEN = {"asyncio", "nats", "time", "uvloop", "socket", "threading", "datetime"}


def test_variables_core_imports_nothing_impure() -> None:
    root = Path(pkg.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
                if node.module == "random":
                    names += [f"random.{a.name}" for a in node.names]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path}: imports {name}"
                assert not name.startswith("random.") or name == "random.Random", (
                    f"{path}: uses the global random module ({name})"
                )
        source = path.read_text()
        for call in ("random.random(", "random.choice(", "random.uniform(", "random.gauss("):
            assert call not in source, f"{path}: calls the global {call}"
