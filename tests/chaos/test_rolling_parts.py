"""The rolling-upgrade harness's parts, without processes: builds, gaps, gauges, checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker_agents.core.raft.kvstore import KVStateMachine
from chaos.builds import NextKVStateMachine
from chaos.history import History
from chaos.nodes import NodeDaemon
from chaos.process import ManagedProcess
from chaos.rolling import (
    CommitClock,
    build_of,
    leader_commit,
    raft_gauges,
    set_build,
    snapshot_index,
)
from chaos.scenarios.rolling import failed_requests
from chaos.scenarios.rolling_load import MarkedAccounts, effective_in


def daemon(wrap: list[str]) -> NodeDaemon:
    proc = ManagedProcess("node-1", [*wrap, "/py", "-m", "node.cli", "node", "run"],
                          cwd=Path("."))
    return NodeDaemon("node-1", 1, proc)


def test_a_build_swaps_only_the_module_even_under_a_host_wrapper() -> None:
    d = daemon(["ip", "netns", "exec", "h1"])
    assert build_of(d) == "N"
    set_build(d, "N+1")
    assert build_of(d) == "N+1"
    assert list(d.proc.argv) == ["ip", "netns", "exec", "h1", "/py", "-m", "chaos.next_node",
                                 "node", "run"]
    set_build(d, "N")
    assert list(d.proc.argv)[-4:] == ["-m", "node.cli", "node", "run"]


def test_incr_is_applied_by_n_plus_1_and_rejected_by_n() -> None:
    nxt = NextKVStateMachine()
    assert nxt.apply({"op": "incr", "key": "c", "by": 2})["ok"] is True
    nxt.apply({"op": "incr", "key": "c"})
    assert nxt.query({"op": "get", "key": "c"})["value"] == 3
    with pytest.raises(ValueError, match="unknown op"):
        KVStateMachine().apply({"op": "incr", "key": "c"})  # N: the reason for the flag
    nxt.apply({"op": "put", "key": "s", "value": "x"})
    with pytest.raises(ValueError, match="integer"):
        nxt.apply({"op": "incr", "key": "s"})


def test_commit_gap_spans_the_commits_around_the_restart() -> None:
    clock = CommitClock([1.0, 1.1, 2.0, 2.05, 3.5, 3.6])
    assert clock.gap(1.5, 3.0) == pytest.approx(1.45)  # 2.05 -> 3.5 (first after the end)
    assert clock.gap(1.05, 1.2) == pytest.approx(0.9)  # 1.1 -> 2.0
    assert clock.gap(0.0, 3.0) is None  # no commit before: not measured
    assert clock.gap(3.0, 9.0) is None  # none after yet
    assert clock.widest(1.5, 3.0) == pytest.approx((1.45, 2.05))


EXPOSITION = """\
# TYPE ba_raft_is_leader gauge
ba_raft_is_leader{group="reg",member="node-1"} 1.0
ba_raft_is_leader{group="other",member="node-1"} 0.0
# TYPE ba_raft_commit_index gauge
ba_raft_commit_index{group="reg",member="node-1"} 120.0
# TYPE ba_raft_applied_index gauge
ba_raft_applied_index{group="reg",member="node-1"} 118.0
# TYPE ba_raft_log_entries gauge
ba_raft_log_entries{group="reg",member="node-1"} 18.0
"""


def test_gauges_of_one_group_give_the_leader_commit_and_snapshot_index() -> None:
    gauges = raft_gauges(EXPOSITION, "reg")
    assert set(gauges) == {"node-1"}
    assert leader_commit(gauges) == 120.0
    assert snapshot_index(gauges["node-1"]) == 100.0  # without the gauge: a lower bound
    windowed = raft_gauges(EXPOSITION + 'ba_raft_snapshot_index{group="reg",member="node-1"}'
                           ' 110.0\n', "reg")
    assert snapshot_index(windowed["node-1"]) == 110.0  # the catch-up window holds 10
    assert leader_commit(raft_gauges(EXPOSITION, "other")) is None


def test_failed_requests_count_refusals_and_unknowns_but_not_cas_mismatches() -> None:
    h = History()
    ok, mismatch, refused, lost = (h.invoke("c", f) for f in ("write", "cas", "write", "read"))
    h.ok(ok)
    h.fail(mismatch, "cas-mismatch")
    h.fail(refused, "unavailable")
    h.unknown(lost, "timeout")
    result = failed_requests(h.operations())
    assert result.details["failed"] == 2
    assert result.verdict == "violation"


def test_a_write_that_drops_the_newer_field_is_caught() -> None:
    watch = MarkedAccounts()
    watch.marks = [("a", False), ("a", True), ("a", True), ("b", True), ("a", False)]
    result = watch.check()
    assert result.verdict == "violation"
    assert result.details["marked_accounts"] == 2
    watch.marks = watch.marks[:-1]
    assert watch.check().ok


@pytest.mark.parametrize("listing", [
    {"features": [{"name": "demo-next", "requested": True, "effective": True}]},
    [{"name": "demo-next", "effective": True}],
    {"features": {"demo-next": {"effective": True}}},
])
def test_effective_is_read_from_a_feature_listing(listing: object) -> None:
    assert effective_in(listing) is True
    assert effective_in({"features": []}) is None
