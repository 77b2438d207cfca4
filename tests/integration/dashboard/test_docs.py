"""The dashboard's documents from a model, without NATS: sealed bids, node states, alerts,
money conservation and elections."""

from __future__ import annotations

from typing import Any

from node.dashboard import docs
from node.dashboard.model import ClusterModel


def _auction(kind: str, stage: str, phase: str, outcome: dict[str, Any] | None) -> dict[str, Any]:
    return {"auction_id": "a1", "stage": stage, "started_ms": 1_000_000, "finished_ms": None,
            "request": {"type": kind, "item": "gpu", "seller": "s"},
            "state": {"phase": phase, "opened_at": 1_000_000, "round": 1, "outcome": outcome,
                      "bids": [{"bidder": "b1", "amount": 9.0, "tick": 1_000_500, "seq": 0,
                                "msg_id": "m"}]}}


def test_sealed_bids_are_hidden_until_the_auction_closed() -> None:
    for kind in ("vickrey", "first_price", "combinatorial"):
        row = docs.auction_row(_auction(kind, "open", "open", None))
        assert row["sealed"] is True and row["bids"] == []
        closed = docs.auction_row(_auction(kind, "closed", "closed", {
            "winner": "b1", "price": 9.0, "rounds": 1, "closed_at": 1_001_000, "awards": []}))
        assert [b["bidder"] for b in closed["bids"]] == ["b1"]
        assert closed["bids"][0]["at"] == 1000.5
    english = docs.auction_row(_auction("english", "open", "open", None))
    assert english["sealed"] is False and len(english["bids"]) == 1


def test_a_silent_node_is_down_after_three_intervals_and_alerts() -> None:
    model = ClusterModel()
    model.apply_status({"node_id": "n1", "interval_s": 1.0, "healthy": True, "ready": True,
                        "agents": {}, "groups": {"g": {"role": "leader", "term": 2,
                                                       "leader": "n1", "commit_index": 3,
                                                       "applied_index": 3}}}, now=100.0)
    assert docs.cluster(model, 102.9)["nodes"][0]["state"] == "up"
    doc = docs.cluster(model, 103.1)
    assert doc["nodes"][0]["state"] == "down"
    names = {a["name"] for a in doc["alerts"]}
    assert names == {"NodeDown", "RaftNoLeader"}  # its group's only member is down
    model.node_event("n1", "stopped", {}, now=104.0)
    assert docs.cluster(model, 104.0)["nodes"][0]["state"] == "down"


def test_money_not_conserved_is_an_alert() -> None:
    model = ClusterModel()
    model.accounts["a"] = {"owner": "a", "balance": 10.0, "deposited": 10.0}
    assert docs.accounts(model, 1.0)["conserved"] is True
    model.accounts["b"] = {"owner": "b", "balance": 5.0, "deposited": 0.0, "received": 5.0}
    money = docs.accounts(model, 1.0)
    assert money["issued"] == 10.0 and money["total_balance"] == 15.0
    assert money["conserved"] is False
    assert "MoneyNotConserved" in {a["name"] for a in docs.cluster(model, 1.0)["alerts"]}


def test_no_accounts_means_unknown_not_invented() -> None:
    money = docs.accounts(ClusterModel(), 1.0)
    assert money["issued"] is None and money["conserved"] is None


def test_elections_are_recorded_once_per_term() -> None:
    model = ClusterModel()

    def status(node: str, term: int, leader: str | None, at: float) -> None:
        model.apply_status({"node_id": node, "interval_s": 1.0, "agents": {}, "groups": {
            "g": {"role": "leader" if leader == node else "follower", "term": term,
                  "leader": leader, "commit_index": 1, "applied_index": 1}}}, now=at)

    status("n1", 1, "n1", 1.0)
    status("n2", 1, "n1", 1.1)
    status("n1", 1, "n1", 2.0)
    status("n2", 2, None, 3.0)
    status("n2", 2, "n2", 3.5)
    elections = docs.groups_doc(model, 3.6)["groups"][0]["elections"]
    assert [(e["term"], e["leader"]) for e in elections] == [(1, "n1"), (2, "n2")]


def test_prometheus_firing_alerts_in_the_apis_shape() -> None:
    from node.dashboard.alerts import from_prometheus

    got = from_prometheus({"data": {"alerts": [
        {"state": "firing", "labels": {"alertname": "RaftNoLeader", "severity": "critical"},
         "annotations": {"summary": "group config has no leader"},
         "activeAt": "2026-01-01T00:00:00Z"},
        {"state": "pending", "labels": {"alertname": "Later"}},
        {"state": "firing", "labels": {"alertname": "Odd", "severity": "page"}}]}})
    assert [(a["name"], a["severity"]) for a in got] == [("RaftNoLeader", "critical"),
                                                          ("Odd", "warning")]
    assert got[0]["since"] == 1767225600.0 and got[0]["summary"].startswith("group")
    assert got[1]["since"] is None


def test_run_summaries_of_pbft_and_hierarchical_runs() -> None:
    from broker_agents.coord.summary import run_summary
    from broker_agents.core.coord.models import (
        ClusterReport,
        HierarchicalResult,
        LevelReport,
        PbftReplicaResult,
        PbftRequest,
        PbftResult,
        VoteResult,
    )

    pbft = run_summary(PbftRequest(operation="commit x", capability="pbft"), PbftResult(
        decided=True, seq=1, operation="commit x", f=1, n=4, view=0, replicas=[
            PbftReplicaResult(replica="p1", decided=True, seq=1, operation="commit x"),
            PbftReplicaResult(replica="p2", decided=False)]))
    assert pbft["proposal"] == "commit x"
    assert [(a["participant"], a["answer"], a["error"]) for a in pbft["answers"]] == [
        ("p1", "commit x", None), ("p2", None, "not decided")]
    vote = VoteResult.model_validate({
        "rule": "majority", "decision": "ship", "leading": "ship", "rule_met": True,
        "reason": None, "tally": {"ship": 1}, "confidence": 1.0, "participants": 2,
        "votes_cast": 1, "abstained": [], "timed_out": ["v2"], "errored": [], "answers": [
            {"participant": "v1", "status": "choice", "choice": "ship", "weight": 1},
            {"participant": "v2", "status": "timeout", "weight": 1}]})
    tree = run_summary(None, HierarchicalResult(
        decision="ship", rule_met=True, reason=None, depth=1, levels=[LevelReport(
            level=0, clusters=[ClusterReport(cluster_id="L0C0", members=["v1", "v2"],
                                             delegate="v1", decision="ship", result=vote)])]))
    assert tree["proposal"] is None
    assert [(a["participant"], a["answer"], a["error"], a["cluster"])
            for a in tree["answers"]] == [("v1", "ship", None, "L0C0"),
                                          ("v2", None, "timeout", "L0C0")]
