"""Removals the reapers logged, read back as (marked, removed) on the monotonic clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from chaos.checkers.registry import reaps_from_logs


def line(at: float, action: str, target: str) -> str:
    stamp = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"action": action, "target": target, "reaper": "node-3",
                       "event": "registry.reaper.acted", "timestamp": stamp})


def test_a_logged_mark_and_removal_become_one_reap(tmp_path: Path) -> None:
    one, two = tmp_path / "a.log", tmp_path / "b.log"
    one.write_text("\n".join([line(1000.0, "mark_unhealthy", "w1-r0"), "not json",
                              '{"event": "registry.reaper.acted"}']) + "\n")
    two.write_text("\n".join([line(1000.8, "remove_agent", "w1-r0"),
                              line(1001.0, "remove_agent", "w2-r1"),
                              line(1002.0, "remove_node", "client-w1")]) + "\n")
    reaps = reaps_from_logs([one, two, tmp_path / "missing.log"], wall_to_mono=900.0)
    rounded = {k: [(round(a, 3), round(b, 3)) for a, b in v] for k, v in reaps.items()}
    assert rounded == {"w1-r0": [(100.0, 100.8)], "w2-r1": [(101.0, 101.0)]}
