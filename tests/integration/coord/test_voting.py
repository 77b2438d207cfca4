"""Vote, hierarchical, ensemble and auto against real agents on two node processes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from broker_agents import codec
from broker_agents.transport import request as nats_request
from tests.integration.coord.helpers import (
    COORDINATOR,
    PREDICTOR,
    VOTER,
    S,
    coord,
    error_of,
    spec,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


def cluster_agents() -> list[list[dict[str, Any]]]:
    """One list of agent specs per node (the ``cluster`` fixture starts them)."""
    nodes: list[list[dict[str, Any]]] = [[spec(COORDINATOR, "coord-1")],
                                         [spec(COORDINATOR, "coord-2")]]
    for i in range(15):  # 10 yes, 5 no, split over both nodes
        nodes[i % 2].append(spec(VOTER, f"v{i}", ["council"], choice="yes" if i < 10 else "no"))
    nodes[0].append(spec(VOTER, "abstainer", rule="abstain"))
    nodes[1].append(spec(VOTER, "slow", delay_ms=3000, choice="yes"))
    nodes[0].append(spec(VOTER, "grumpy", fail="I refuse"))
    nodes[1].append(spec(VOTER, "kw", rule="keyword", keywords={"lunch": "pizza"},
                         default="salad"))
    for i, value in enumerate([10.0, 11.0, 9.0, 10.5, 100.0]):
        nodes[i % 2].append(spec(PREDICTOR, f"p{i}", ["forecast"], value=value))
    for i, label in enumerate(["cat", "cat", "dog"]):
        nodes[i % 2].append(spec(PREDICTOR, f"l{i}", ["labeller"], label=label))
    return nodes


VOTERS = [f"v{i}" for i in range(15)]


async def test_majority_vote_reports_tally_confidence_and_every_answer(nc: NATS) -> None:
    res = await coord(nc, "vote", {"proposal": "ship it?", "options": ["yes", "no"],
                                   "participants": VOTERS})
    assert res["decision"] == "yes" and res["rule_met"] is True
    assert res["tally"] == {"yes": 10.0, "no": 5.0}
    assert res["confidence"] == pytest.approx(10 / 15)
    assert {a["participant"]: a["choice"] for a in res["answers"]} == {
        v: ("yes" if int(v[1:]) < 10 else "no") for v in VOTERS}


async def test_vote_by_capability_discovers_agents_on_both_nodes(nc: NATS) -> None:
    res = await coord(nc, "vote", {"proposal": "p", "capability": "council"})
    assert sorted(a["participant"] for a in res["answers"]) == sorted(VOTERS)
    assert res["decision"] == "yes"


async def test_abstention_timeout_and_error_are_reported_per_participant(nc: NATS) -> None:
    res = await coord(nc, "vote", {"proposal": "p", "options": ["yes", "no"],
                                   "participants": ["v0", "v1", "abstainer", "slow", "grumpy",
                                                    "ghost"], "timeout_ms": 500})
    by = {a["participant"]: a for a in res["answers"]}
    assert res["abstained"] == ["abstainer"]
    assert sorted(res["timed_out"]) == ["slow"]
    assert sorted(res["errored"]) == ["ghost", "grumpy"]
    assert "I refuse" in by["grumpy"]["error"]
    assert by["ghost"]["error"].startswith("unavailable")
    assert res["votes_cast"] == 2 and res["decision"] == "yes"


async def test_unanimous_fails_naming_who_did_not_vote(nc: NATS) -> None:
    res = await coord(nc, "vote", {"proposal": "p", "rule": "unanimous",
                                   "participants": ["v0", "v1", "abstainer"]})
    assert res["rule_met"] is False and res["decision"] is None
    assert "abstainer" in res["reason"]


async def test_quorum_and_weighted_rules(nc: NATS) -> None:
    res = await coord(nc, "vote", {"proposal": "p", "rule": "quorum", "quorum_count": 3,
                                   "participants": ["v0", "abstainer", "grumpy"]})
    assert res["rule_met"] is False and "quorum not reached" in res["reason"]
    res = await coord(nc, "vote", {"proposal": "p", "rule": "weighted",
                                   "weights": {"v10": 5, "v0": 1, "v1": 1},
                                   "participants": ["v0", "v1", "v10"]})
    assert res["decision"] == "no" and res["tally"] == {"yes": 2.0, "no": 5.0}


async def test_quorum_larger_than_group_is_too_few_participants(nc: NATS) -> None:
    err = error_of(await coord(nc, "vote", {"proposal": "p", "rule": "quorum",
                                            "quorum_count": 5, "participants": ["v0", "v1"]}))
    assert err.code == "too_few_participants" and err.details == {"needed": 5, "have": 2}


async def test_keyword_rule_decides_from_the_proposal(nc: NATS) -> None:
    res = await coord(nc, "vote", {"proposal": "what for lunch?", "participants": ["kw"]})
    assert res["decision"] == "pizza"
    res = await coord(nc, "vote", {"proposal": "what for dinner?", "participants": ["kw"]})
    assert res["decision"] == "salad"


async def test_json_request_gets_json_reply(nc: NATS) -> None:
    reply = await nats_request(nc, S.coord("vote"), codec.encode(
        {"proposal": "p", "participants": ["v0"]}, as_json=True), timeout=10, signed=True)
    assert reply.data.startswith(b"{")
    assert codec.decode(reply.data)["decision"] == "yes"


async def test_unknown_capability_is_no_agents(nc: NATS) -> None:
    err = error_of(await coord(nc, "vote", {"proposal": "p", "capability": "nobody-has-it"}))
    assert err.code == "no_agents" and err.details["capability"] == "nobody-has-it"


async def test_unknown_protocol_is_a_structured_error(nc: NATS) -> None:
    err = error_of(await coord(nc, "telepathy", {"x": 1}))
    assert err.code == "unknown_protocol" and err.details["protocol"] == "telepathy"


async def test_validation_error_names_the_field(nc: NATS) -> None:
    err = error_of(await coord(nc, "vote", {"proposal": "", "participants": ["v0"]}))
    assert err.code == "validation_error"
    assert [f["field"] for f in err.details["fields"]] == ["proposal"]
    err = error_of(await coord(nc, "vote", {"proposal": "p", "participants": ["a.b"]}))
    assert err.details["fields"][0]["field"] == "participants.0"


async def test_hierarchical_15_agents_builds_the_issue_tree(nc: NATS) -> None:
    res = await coord(nc, "hierarchical", {"proposal": "p", "participants": VOTERS,
                                           "cluster_size": 3, "max_depth": 3})
    sizes = [len(level["clusters"]) for level in res["levels"]]
    assert sizes[0] == 5 and sizes[1] <= 2 and sizes[-1] == 1 and res["depth"] <= 3
    assert all(len(c["members"]) == 3 for c in res["levels"][0]["clusters"])
    # Clusters are drawn at random: a 2-delegate cluster that splits 1-1 has no majority,
    # and then the tree honestly decides nothing (about 1 run in 8).
    assert res["decision"] in ("yes", "no", None)
    top = res["levels"][-1]["clusters"][0]
    assert top["decision"] == res["decision"]
    delegates = {c["delegate"] for c in res["levels"][0]["clusters"]}
    assert {m for c in res["levels"][1]["clusters"] for m in c["members"]} == delegates


async def test_hierarchical_by_node_groups_co_located_agents(nc: NATS) -> None:
    res = await coord(nc, "hierarchical", {"proposal": "p", "participants": VOTERS[:12],
                                           "cluster_size": 6, "partition": "node"})
    clusters = res["levels"][0]["clusters"]
    evens = {f"v{i}" for i in range(0, 12, 2)}
    assert sorted(set(c["members"]) == evens or not (set(c["members"]) & evens)
                  for c in clusters) == [True, True]


async def test_ensemble_mean_reports_outliers(nc: NATS) -> None:
    res = await coord(nc, "ensemble", {"question": "temp?", "aggregation": "mean",
                                       "capability": "forecast"})
    assert res["outliers"] == ["p4"] and res["used"] == 5
    assert res["result"] == pytest.approx((10 + 11 + 9 + 10.5 + 100) / 5)
    res = await coord(nc, "ensemble", {"question": "temp?", "aggregation": "weighted_mean",
                                       "weights": {"p4": 0}, "exclude_outliers": True,
                                       "participants": ["p0", "p1", "p2", "p3", "p4"]})
    assert res["result"] == pytest.approx((10 + 11 + 9 + 10.5) / 4)


async def test_ensemble_majority_of_labels_with_agreement(nc: NATS) -> None:
    res = await coord(nc, "ensemble", {"question": "animal?", "capability": "labeller"})
    assert res["result"] == "cat" and res["agreement"] == pytest.approx(2 / 3)
    assert res["outliers"] == ["l2"]


async def test_auto_picks_a_flat_vote_for_a_small_crash_tolerant_group(nc: NATS) -> None:
    res = await coord(nc, "auto", {"proposal": "p", "participants": VOTERS[:5]})
    assert res["selection"]["protocol"] == "vote"
    assert "crash fault model" in res["selection"]["reason"]
    assert res["result"]["decision"] == "yes"


async def test_auto_byzantine_with_three_is_too_few(nc: NATS) -> None:
    err = error_of(await coord(nc, "auto", {"proposal": "p", "fault_model": "byzantine",
                                            "participants": ["v0", "v1", "v2"]}))
    assert err.code == "too_few_participants" and err.details["needed"] == 4


async def test_events_start_and_finish_are_published(nc: NATS, events: NATS) -> None:
    got: list[tuple[str, dict[str, Any]]] = []
    done = asyncio.get_running_loop().create_future()

    async def on_event(msg: Any) -> None:
        got.append((msg.subject, codec.decode(msg.data)))
        if msg.subject.endswith("finished") and not done.done():
            done.set_result(None)

    sub = await events.subscribe(S.events("coord", "vote", "*"), cb=on_event)
    await events.flush()
    await coord(nc, "vote", {"proposal": "p", "participants": ["v0"]})
    await asyncio.wait_for(done, 5)
    await sub.unsubscribe()
    assert [s.rsplit(".", 1)[1] for s, _ in got] == ["started", "finished"]
    assert got[1][1]["outcome"] == "decided" and got[0][1]["coord_id"] == got[1][1]["coord_id"]
