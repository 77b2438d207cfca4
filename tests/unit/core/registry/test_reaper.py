"""Reaper decisions: mark after the window, remove after the grace, never judge too early."""

from __future__ import annotations

from broker_agents.core.registry.reaper import (
    MarkUnhealthy,
    ReaperCore,
    RemoveAgent,
    RemoveNode,
    restorations,
)
from broker_agents.core.registry.record import AgentRecord, Health


def _agent(agent_id: str, node_id: str = "dead", **kw: object) -> AgentRecord:
    return AgentRecord(agent_id=agent_id, name=agent_id, node_id=node_id, **kw)  # type: ignore[arg-type]


def test_fresh_reaper_waits_a_full_window_before_judging() -> None:
    core = ReaperCore("r", window=5.0, grace=3.0)
    agents = [(_agent("a"), 1)]
    assert core.scan({"dead": 7}, agents, now=100.0, wall=0.0) == []
    assert core.scan({"dead": 7}, agents, now=104.9, wall=0.0) == []
    actions = core.scan({"dead": 7}, agents, now=105.1, wall=42.0)
    assert len(actions) == 1 and isinstance(actions[0], MarkUnhealthy)
    marked = actions[0].record
    assert marked.health is Health.UNHEALTHY and marked.reaped is not None
    assert marked.reaped.by == "r" and marked.reaped.at == 42.0
    assert marked.reaped.prior_health is Health.HEALTHY and actions[0].revision == 1


def test_marked_agent_is_removed_after_the_grace_period() -> None:
    core = ReaperCore("r", window=5.0, grace=3.0)
    core.scan({"dead": 7}, [], now=0.0, wall=0.0)
    marked = core.scan({"dead": 7}, [(_agent("a"), 1)], now=6.0, wall=0.0)[0]
    assert isinstance(marked, MarkUnhealthy)
    assert core.scan({"dead": 7}, [(marked.record, 2)], now=7.9, wall=0.0) == []
    actions = core.scan({"dead": 7}, [(marked.record, 2)], now=8.1, wall=0.0)
    assert actions == [RemoveAgent("a", 2)]


def test_heartbeat_change_resets_the_silence() -> None:
    core = ReaperCore("r", window=5.0, grace=0.0)
    agents = [(_agent("a"), 1)]
    core.scan({"dead": 1}, agents, now=0.0, wall=0.0)
    core.scan({"dead": 2}, agents, now=4.0, wall=0.0)
    assert core.scan({"dead": 2}, agents, now=8.0, wall=0.0) == []
    assert len(core.scan({"dead": 2}, agents, now=9.5, wall=0.0)) == 1


def test_agents_without_a_node_record_are_reaped_after_the_window() -> None:
    core = ReaperCore("r", window=1.0, grace=1.0)
    core.scan({}, [(_agent("a", node_id="ghost"), 3)], now=0.0, wall=0.0)
    actions = core.scan({}, [(_agent("a", node_id="ghost"), 3)], now=1.5, wall=0.0)
    assert [type(a) for a in actions] == [MarkUnhealthy]


def test_own_node_is_never_reaped() -> None:
    core = ReaperCore("r", window=1.0, grace=0.0, own_node="me")
    agents = [(_agent("a", node_id="me"), 1)]
    core.scan({"me": 1}, agents, now=0.0, wall=0.0)
    assert core.scan({"me": 1}, agents, now=100.0, wall=0.0) == []


def test_empty_silent_node_record_is_removed_after_window_and_grace() -> None:
    core = ReaperCore("r", window=1.0, grace=1.0)
    core.scan({"dead": 9}, [], now=0.0, wall=0.0)
    assert core.scan({"dead": 9}, [], now=1.5, wall=0.0) == []
    assert core.scan({"dead": 9}, [], now=2.5, wall=0.0) == [RemoveNode("dead", 9)]


def test_restorations_undo_marks_on_own_agents_only() -> None:
    core = ReaperCore("r", window=1.0, grace=10.0)
    degraded = _agent("a", node_id="back", health=Health.DEGRADED)
    core.scan({"back": 1}, [(degraded, 1)], now=0.0, wall=0.0)
    mark = core.scan({"back": 1}, [(degraded, 1)], now=2.0, wall=0.0)[0]
    assert isinstance(mark, MarkUnhealthy)
    other = _agent("b", node_id="elsewhere")
    restored = restorations("back", [(mark.record, 2), (other, 3)])
    assert len(restored) == 1 and restored[0].revision == 2
    assert restored[0].record.health is Health.DEGRADED and restored[0].record.reaped is None
