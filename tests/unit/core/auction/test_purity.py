"""The auction, budget and reputation cores stay pure (no IO, clock or global random)."""

from __future__ import annotations

import ast
from pathlib import Path

import broker_agents.core as core

FORBIDDEN = {"asyncio", "nats", "time", "uvloop", "socket", "threading", "random", "datetime"}
ROOT = Path(core.__file__).parent
MINE = [*sorted((ROOT / "auction").glob("*.py")), ROOT / "budget.py", ROOT / "reputation.py"]


def test_auction_budget_reputation_cores_import_nothing_impure() -> None:
    assert len(MINE) >= 10
    for path in MINE:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_core_modules_stay_small() -> None:
    for path in MINE:
        assert len(path.read_text().splitlines()) <= 400, path.name
