"""Locks and leader election on KV leases, across node processes, with kill -9 and SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from broker_agents import codec
from node.auth.roles import Role
from node.cluster import LocalCluster
from tests.integration.coord.helpers import (
    CANDIDATE,
    COORDINATOR,
    LOCK_HOLDER,
    S,
    coord,
    error_of,
    spec,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
TTL = 600


async def acting(admin: NATS, protocol: str, body: dict[str, Any]) -> Any:
    """A request as an act of the holder (candidate) it names: an admin acts for it."""
    return await coord(admin, protocol, body, acting_for=body.get("holder")
                       or body.get("candidate"))


def cluster_agents() -> list[list[dict[str, Any]]]:
    """One list of agent specs per node (the ``cluster`` fixture starts them)."""
    return [
        [spec(COORDINATOR, "coord-1"), spec(CANDIDATE, "cand-1", role="scheduler", ttl_ms=TTL)],
        [spec(COORDINATOR, "coord-2"), spec(CANDIDATE, "cand-2", role="scheduler", ttl_ms=TTL)],
        [spec(COORDINATOR, "coord-3"),
         spec(LOCK_HOLDER, "holder", lock="db", ttl_ms=30_000)],
    ]


async def test_lock_grants_one_holder_and_tokens_grow(admin: NATS) -> None:
    a = await acting(admin, "lock", {"name": "l1", "holder": "alice", "ttl_ms": 5000})
    assert a["granted"] is True and a["holder"] == "alice"
    b = await acting(admin, "lock", {"name": "l1", "holder": "bob", "ttl_ms": 5000})
    assert b["granted"] is False and "held by alice" in b["reason"]
    again = await acting(admin, "lock", {"name": "l1", "holder": "alice", "ttl_ms": 5000})
    assert again["granted"] is True and again["token"] == a["token"]
    rel = await acting(admin, "lock", {"action": "release", "name": "l1", "holder": "alice",
                                       "token": a["token"]})
    assert rel["holder"] is None
    b = await acting(admin, "lock", {"name": "l1", "holder": "bob", "ttl_ms": 5000})
    assert b["granted"] is True and b["token"] == a["token"] + 1


async def test_concurrent_acquires_grant_exactly_one(admin: NATS) -> None:
    replies = await asyncio.gather(*(
        acting(admin, "lock", {"name": "race", "holder": f"h{i}", "ttl_ms": 5000})
        for i in range(8)))
    assert sum(r["granted"] for r in replies) == 1


async def test_expired_lease_goes_to_a_waiter_with_a_larger_token(admin: NATS) -> None:
    a = await acting(admin, "lock", {"name": "l2", "holder": "alice", "ttl_ms": 200})
    b = await acting(admin, "lock", {"name": "l2", "holder": "bob", "ttl_ms": 5000,
                                     "wait_ms": 3000})
    assert b["granted"] is True and b["token"] == a["token"] + 1
    renew = await acting(admin, "lock", {"action": "renew", "name": "l2",
                                         "holder": "alice", "token": a["token"]})
    assert renew["granted"] is False and renew["holder"] == "bob"


async def test_lock_holder_is_the_signer_and_requests_name_bad_fields(nc: NATS) -> None:
    mine = await coord(nc, "lock", {"name": "l3"})
    assert mine["granted"] is True and mine["holder"] == "client"  # the client's user
    err = error_of(await coord(nc, "lock", {"name": "a.b"}))
    assert err.code == "validation_error" and err.details["fields"][0]["field"] == "name"


async def test_coordinator_leader_campaign_and_query(admin: NATS, nc: NATS) -> None:
    a = await acting(admin, "leader", {"action": "campaign", "role": "r1", "candidate": "x",
                                       "ttl_ms": 5000})
    b = await acting(admin, "leader", {"action": "campaign", "role": "r1", "candidate": "y"})
    q = await coord(nc, "leader", {"role": "r1"})
    assert a["is_leader"] and not b["is_leader"] and q["leader"] == "x"
    await acting(admin, "leader", {"action": "resign", "role": "r1", "candidate": "x"})
    b = await acting(admin, "leader", {"action": "campaign", "role": "r1", "candidate": "y"})
    assert b["is_leader"] and b["token"] == a["token"] + 1


async def _next_lease_event(nc: NATS, kind: str, match: Any, timeout: float) -> dict[str, Any]:
    got: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def on_event(msg: Any) -> None:
        event = codec.decode(msg.data)
        if match(event) and not got.done():
            got.set_result(event)

    sub = await nc.subscribe(S.events("coord", "lease", kind), cb=on_event)
    try:
        return await asyncio.wait_for(got, timeout)
    finally:
        await sub.unsubscribe()


async def test_graceful_stop_releases_the_lock_at_once(cluster: LocalCluster, nc: NATS) -> None:
    held = await coord(nc, "lock", {"action": "query", "name": "db"})
    assert held["holder"] == "holder"
    proc = cluster.procs[2]
    proc.signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 20) == 0
    free = await coord(nc, "lock", {"action": "query", "name": "db"})
    assert free["holder"] is None and free["token"] == held["token"]  # 30 s TTL not waited


async def test_leader_killed_is_replaced_within_the_bound(cluster: LocalCluster,
                                                          nc: NATS) -> None:
    q = await coord(nc, "leader", {"role": "scheduler"})
    leader = q["leader"]
    assert leader in ("cand-1", "cand-2")
    other = "cand-2" if leader == "cand-1" else "cand-1"
    events = await cluster.client(Role.OBSERVER)  # events are an observer's to read
    waiting = asyncio.ensure_future(_next_lease_event(
        events, "leader", lambda e: e["agent_id"] == other and e["held"], 10))
    await events.flush()
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    cluster.kill(0 if leader == "cand-1" else 1)
    event = await waiting
    failover = loop.time() - killed_at
    assert event["token"] > q["token"]
    assert failover <= (TTL * 1.25 + 500) / 1000  # ttl + retry period + slack
    q2 = await coord(nc, "leader", {"role": "scheduler"})
    assert q2["leader"] == other and q2["token"] == event["token"]
    await events.close()
