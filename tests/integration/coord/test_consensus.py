"""PBFT over NATS with honest and Byzantine replica agents on two node processes; barrier."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from broker_agents.coord.wire import PbftStatusAsk
from tests.integration.coord.helpers import (
    COORDINATOR,
    REPLICA,
    VOTER,
    agent_call,
    coord,
    error_of,
    spec,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

HONEST = [f"r{i}" for i in range(7)]
FAULTY = {"bz-silent": "silent", "bz-forge": "forge", "bz-replay": "replay",
          "bz-equiv": "equivocate"}


def cluster_agents() -> list[list[dict[str, Any]]]:
    """One list of agent specs per node (the ``cluster`` fixture starts them)."""
    nodes: list[list[dict[str, Any]]] = [[spec(COORDINATOR, "coord-1")],
                                         [spec(COORDINATOR, "coord-2")]]
    for i, r in enumerate(HONEST):
        nodes[i % 2].append(spec(REPLICA, r, ["bft"]))
    for i, (r, fault) in enumerate(FAULTY.items()):
        nodes[i % 2].append(spec(REPLICA, r, fault=fault))
    for i in range(3):
        nodes[i % 2].append(spec(VOTER, f"w{i}"))
    return nodes


async def _status(nc: NATS, replicas: list[str]) -> dict[str, int]:
    total: dict[str, int] = {}
    for r in replicas:
        st = await agent_call(nc, r, PbftStatusAsk())
        for k in ("forged", "replayed", "equivocations", "invalid"):
            total[k] = total.get(k, 0) + int(st[k])
    return total


def _agreed(res: dict[str, Any], op: str) -> None:
    assert res["decided"] is True and res["operation"] == op and res["seq"] == 1
    decided = [r for r in res["replicas"] if r["decided"]]
    assert len(decided) >= res["f"] + 1
    assert all(r["operation"] == op and r["seq"] == 1 for r in decided)


async def test_four_honest_replicas_decide_the_operation(nc: NATS) -> None:
    res = await coord(nc, "pbft", {"operation": "set x=1", "participants": HONEST[:4]})
    _agreed(res, "set x=1")
    assert res["f"] == 1 and res["n"] == 4 and res["view"] == 0


async def test_replicas_by_capability_seven_tolerate_two(nc: NATS) -> None:
    res = await coord(nc, "pbft", {"operation": "op-7", "capability": "bft"})
    _agreed(res, "op-7")
    assert res["n"] == 7 and res["f"] == 2


async def test_too_few_replicas_says_how_many_are_needed(nc: NATS) -> None:
    err = error_of(await coord(nc, "pbft", {"operation": "x", "participants": HONEST[:3]}))
    assert err.code == "too_few_participants"
    assert err.details == {"needed": 4, "have": 3, "f": 1}
    err = error_of(await coord(nc, "pbft", {"operation": "x", "f": 2,
                                            "participants": HONEST[:4]}))
    assert err.details["needed"] == 7 and err.details["have"] == 4


async def test_silent_primary_is_replaced_by_a_view_change(nc: NATS) -> None:
    res = await coord(nc, "pbft", {"operation": "after-vc",
                                   "participants": ["bz-silent", *HONEST[:3]]})
    _agreed(res, "after-vc")
    assert res["view"] >= 1
    assert not next(r for r in res["replicas"] if r["replica"] == "bz-silent")["decided"]


async def test_forging_replica_is_rejected_and_counted(nc: NATS) -> None:
    before = await _status(nc, HONEST[:3])
    res = await coord(nc, "pbft", {"operation": "forged-peer",
                                   "participants": [*HONEST[:3], "bz-forge"]})
    _agreed(res, "forged-peer")
    after = await _status(nc, HONEST[:3])
    assert after["forged"] > before["forged"]


async def test_replayed_messages_are_rejected_and_counted(nc: NATS) -> None:
    before = await _status(nc, HONEST[:3])
    res = await coord(nc, "pbft", {"operation": "replayed",
                                   "participants": ["bz-replay", *HONEST[:3]]})
    _agreed(res, "replayed")
    after = await _status(nc, HONEST[:3])
    assert after["replayed"] > before["replayed"]


async def test_equivocating_primary_is_caught_and_the_group_still_agrees(nc: NATS) -> None:
    before = await _status(nc, HONEST[:3])
    res = await coord(nc, "pbft", {"operation": "equivocated",
                                   "participants": ["bz-equiv", *HONEST[:3]]})
    _agreed(res, "equivocated")
    after = await _status(nc, HONEST[:3])
    assert after["equivocations"] > before["equivocations"]


async def test_two_faulty_of_four_cannot_decide_before_the_deadline(nc: NATS) -> None:
    err = error_of(await coord(nc, "pbft", {"operation": "x", "timeout_ms": 800,
                                            "participants": ["bz-silent", "bz-forge",
                                                             *HONEST[:2]]}))
    assert err.code == "deadline_exceeded" and err.details["n"] == 4


async def test_replica_that_is_not_a_pbft_agent_counts_as_faulty(nc: NATS) -> None:
    res = await coord(nc, "pbft", {"operation": "with-a-voter",
                                   "participants": [*HONEST[:3], "w0"]})
    _agreed(res, "with-a-voter")


async def test_auto_byzantine_runs_pbft_and_says_why(nc: NATS) -> None:
    res = await coord(nc, "auto", {"proposal": "commit", "fault_model": "byzantine",
                                   "participants": HONEST[:4]})
    assert res["selection"]["protocol"] == "pbft" and "f=1" in res["selection"]["reason"]
    assert res["result"]["operation"] == "commit"


async def test_barrier_releases_everyone_when_the_last_arrives(admin: NATS) -> None:
    """Participants arrive as themselves: an admin acts for each here."""
    who = ["a", "b", "c"]
    replies = await asyncio.gather(*(
        coord(admin, "barrier", {"barrier_id": "b-all", "participants": who, "participant": p,
                              "timeout_ms": 5000}, acting_for=p) for p in who))
    assert all(r["released"] is True and r["missing"] == [] for r in replies)
    assert sorted(replies[0]["arrived"]) == who


async def test_barrier_timeout_releases_everyone_naming_who_never_arrived(admin: NATS) -> None:
    who = ["a", "b", "c"]
    replies = await asyncio.gather(*(
        coord(admin, "barrier", {"barrier_id": "b-late", "participants": who, "participant": p,
                              "timeout_ms": 400}, acting_for=p) for p in who[:2]))
    for r in replies:
        err = error_of(r)
        assert err.code == "timeout" and "never arrived: c" in err.message
        assert err.details["missing"] == ["c"]
    late = error_of(await coord(admin, "barrier", {"barrier_id": "b-late", "participants": who,
                                                "participant": "c", "timeout_ms": 400},
                                acting_for="c"))
    assert late.details["missing"] == ["c"]


async def test_barrier_rejects_a_stranger_and_other_participants(admin: NATS) -> None:
    err = error_of(await coord(admin, "barrier", {"barrier_id": "b-x", "participants": ["a"],
                                               "participant": "zed", "timeout_ms": 100},
                               acting_for="zed"))
    assert err.code == "bad_request" and err.details["participant"] == "zed"
    await coord(admin, "barrier", {"barrier_id": "b-y", "participants": ["a"],
                                "participant": "a", "timeout_ms": 1000}, acting_for="a")
    err = error_of(await coord(admin, "barrier", {"barrier_id": "b-y", "participants": ["b"],
                                               "participant": "b", "timeout_ms": 1000},
                               acting_for="b"))
    assert err.code == "conflict" and err.details["field"] == "participants"
