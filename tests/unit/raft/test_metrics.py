"""The member's Prometheus figures follow its core: snapshot index, snapshots sent and
installed (counters that only ever count what is new since the last update)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import structlog
from prometheus_client import REGISTRY

from broker_agents.core.raft import Role
from broker_agents.raft.metrics import MemberMetrics, RoleObserver


def _core(**kw: object) -> Any:
    """What ``update_metrics`` reads of a ``RaftCore``."""
    base: dict[str, object] = dict(
        role=Role.LEADER, term=3, leader="a", elections=1, commit=40, applied=40,
        log=SimpleNamespace(entries=[None] * 12), voters={"a", "b", "c"}, learners=set(),
        snapshot_index=30, snapshots_sent=0, snapshots_installed=0)
    return SimpleNamespace(**{**base, **kw})


def _value(name: str, member: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"group": "metrics-test", "member": member})


def test_snapshot_figures_follow_the_core() -> None:
    observer = RoleObserver(MemberMetrics.bind("metrics-test", "a"), structlog.get_logger())
    observer.update_metrics(_core())
    assert _value("ba_raft_snapshot_index", "a") == 30
    assert _value("ba_raft_snapshots_sent_total", "a") == 0
    observer.update_metrics(_core(snapshots_sent=2, snapshots_installed=1,
                                  snapshot_index=50))
    observer.update_metrics(_core(snapshots_sent=3, snapshots_installed=1,
                                  snapshot_index=50))
    assert _value("ba_raft_snapshots_sent_total", "a") == 3
    assert _value("ba_raft_snapshots_installed_total", "a") == 1
    assert _value("ba_raft_snapshot_index", "a") == 50
    assert _value("ba_raft_log_entries", "a") == 12
