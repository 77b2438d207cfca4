"""Reaper decisions: mark after the window, remove after the grace, never judge too early."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core.registry.reaper import (
    MarkUnhealthy,
    ReapAction,
    ReaperCore,
    RemoveAgent,
    RemoveNode,
    Scan,
    restorations,
)
from broker_agents.core.registry.record import AgentRecord, Health
from tests.unit.core.registry.strategies import RELAXED


def _agent(agent_id: str, node_id: str = "dead", **kw: object) -> AgentRecord:
    return AgentRecord(agent_id=agent_id, name=agent_id, node_id=node_id, **kw)  # type: ignore[arg-type]


def test_fresh_reaper_waits_a_full_window_before_judging() -> None:
    core = ReaperCore("r", window=5.0, grace=3.0)
    agents = [(_agent("a"), 1)]
    assert core.step(Scan({"dead": 7}, agents, now=100.0, wall=0.0)) == []
    assert core.step(Scan({"dead": 7}, agents, now=104.9, wall=0.0)) == []
    actions = core.step(Scan({"dead": 7}, agents, now=105.1, wall=42.0))
    assert len(actions) == 1 and isinstance(actions[0], MarkUnhealthy)
    marked = actions[0].record
    assert marked.health is Health.UNHEALTHY and marked.reaped is not None
    assert marked.reaped.by == "r" and marked.reaped.at == 42.0
    assert marked.reaped.prior_health is Health.HEALTHY and actions[0].revision == 1


def test_marked_agent_is_removed_after_the_grace_period() -> None:
    core = ReaperCore("r", window=5.0, grace=3.0)
    core.step(Scan({"dead": 7}, [], now=0.0, wall=0.0))
    marked = core.step(Scan({"dead": 7}, [(_agent("a"), 1)], now=6.0, wall=0.0))[0]
    assert isinstance(marked, MarkUnhealthy)
    assert core.step(Scan({"dead": 7}, [(marked.record, 2)], now=7.9, wall=0.0)) == []
    actions = core.step(Scan({"dead": 7}, [(marked.record, 2)], now=8.1, wall=0.0))
    assert actions == [RemoveAgent("a", 2)]


def test_heartbeat_change_resets_the_silence() -> None:
    core = ReaperCore("r", window=5.0, grace=0.0)
    agents = [(_agent("a"), 1)]
    core.step(Scan({"dead": 1}, agents, now=0.0, wall=0.0))
    core.step(Scan({"dead": 2}, agents, now=4.0, wall=0.0))
    assert core.step(Scan({"dead": 2}, agents, now=8.0, wall=0.0)) == []
    assert len(core.step(Scan({"dead": 2}, agents, now=9.5, wall=0.0))) == 1


def test_agents_without_a_node_record_are_reaped_after_the_window() -> None:
    core = ReaperCore("r", window=1.0, grace=1.0)
    core.step(Scan({}, [(_agent("a", node_id="ghost"), 3)], now=0.0, wall=0.0))
    actions = core.step(Scan({}, [(_agent("a", node_id="ghost"), 3)], now=1.5, wall=0.0))
    assert [type(a) for a in actions] == [MarkUnhealthy]


def test_own_node_is_never_reaped() -> None:
    core = ReaperCore("r", window=1.0, grace=0.0, own_node="me")
    agents = [(_agent("a", node_id="me"), 1)]
    core.step(Scan({"me": 1}, agents, now=0.0, wall=0.0))
    assert core.step(Scan({"me": 1}, agents, now=100.0, wall=0.0)) == []


def test_empty_silent_node_record_is_removed_after_window_and_grace() -> None:
    core = ReaperCore("r", window=1.0, grace=1.0)
    core.step(Scan({"dead": 9}, [], now=0.0, wall=0.0))
    assert core.step(Scan({"dead": 9}, [], now=1.5, wall=0.0)) == []
    assert core.step(Scan({"dead": 9}, [], now=2.5, wall=0.0)) == [RemoveNode("dead", 9)]


def test_restorations_undo_marks_on_own_agents_only() -> None:
    core = ReaperCore("r", window=1.0, grace=10.0)
    degraded = _agent("a", node_id="back", health=Health.DEGRADED)
    core.step(Scan({"back": 1}, [(degraded, 1)], now=0.0, wall=0.0))
    mark = core.step(Scan({"back": 1}, [(degraded, 1)], now=2.0, wall=0.0))[0]
    assert isinstance(mark, MarkUnhealthy)
    other = _agent("b", node_id="elsewhere")
    restored = restorations("back", [(mark.record, 2), (other, 3)])
    assert len(restored) == 1 and restored[0].revision == 2
    assert restored[0].record.health is Health.DEGRADED and restored[0].record.reaped is None


def _frozen_view_run(core: ReaperCore, freeze: tuple[float, float], dead_at: float | None,
                     until: float, beat: float = 0.2, scan: float = 0.2,
                     ) -> list[tuple[float, ReapAction]]:
    """Two nodes heartbeat every ``beat`` s (``other`` stops at ``dead_at``); the reaper's
    view shows nothing new during ``freeze`` (a stalled watch); scans every ``scan`` s."""
    acted: list[tuple[float, ReapAction]] = []
    shown = {"me": 0, "other": 0}
    agent = (_agent("a", node_id="other"), 1)
    steps = int(until / scan)
    for step in range(steps + 1):
        now = step * scan
        if not freeze[0] <= now < freeze[1]:
            beats = int(now / beat)
            other_beats = beats if dead_at is None else min(beats, int(dead_at / beat))
            shown = {"me": beats, "other": other_beats}
        acted += [(now, a) for a in core.step(Scan(dict(shown), [agent], now=now, wall=0.0))]
    return acted


def test_a_stalled_nodes_view_reaps_no_live_node_when_it_comes_back() -> None:
    core = ReaperCore("me", window=1.0, grace=0.5, own_node="me")
    assert _frozen_view_run(core, freeze=(3.0, 9.0), dead_at=None, until=12.0) == []


def test_without_the_own_heartbeat_check_a_stalled_view_would_reap_a_live_node() -> None:
    # the same schedule through a reaper that has no own heartbeat to check against
    core = ReaperCore("me", window=1.0, grace=0.5)
    acted = _frozen_view_run(core, freeze=(3.0, 9.0), dead_at=None, until=12.0)
    assert any(isinstance(a, MarkUnhealthy) for _, a in acted)


def test_silence_verified_before_a_stale_spell_still_counts_after_it() -> None:
    core = ReaperCore("me", window=1.0, grace=0.5, own_node="me")
    # other dies at 2.0; the view freezes 2.6..8.0, so 0.6 s of its silence was verified
    acted = _frozen_view_run(core, freeze=(2.6, 8.0), dead_at=2.0, until=12.0)
    marks = [t for t, a in acted if isinstance(a, MarkUnhealthy)]
    assert marks and 8.0 + 1.0 - 0.6 - 0.3 <= marks[0] <= 8.0 + 1.0 - 0.6 + 0.5


@RELAXED
@given(
    freezes=st.lists(st.tuples(st.floats(0.0, 20.0), st.floats(0.0, 8.0)), max_size=4),
    beat=st.sampled_from([0.1, 0.2]),
    scan=st.sampled_from([0.1, 0.2]),
)
def test_no_live_node_is_ever_marked_whatever_the_view_stalls(
        freezes: list[tuple[float, float]], beat: float, scan: float) -> None:
    """A node that never stops beating is never judged, however often and long the
    reaper's view of the nodes bucket stands still (heartbeat + scan < window / 2)."""
    core = ReaperCore("me", window=1.0, grace=0.5, own_node="me")
    shown = {"me": 0, "other": 0}
    agent = (_agent("a", node_id="other"), 1)
    for step in range(int(30.0 / scan)):
        now = step * scan
        if not any(start <= now < start + length for start, length in freezes):
            shown = {"me": int(now / beat), "other": int(now / beat)}
        assert core.step(Scan(dict(shown), [agent], now=now, wall=0.0)) == []
