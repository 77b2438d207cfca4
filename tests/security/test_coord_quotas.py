"""Starvation of ``ba.coord.*`` (issue 13): per-requester quotas and upper bounds.

One client ("mallory") floods or asks for the most expensive thing the models allow;
another ("alice") must still be served. Every refusal is a structured ``rate_limited``
or ``validation_error`` reply, counted in ``ba_coord_refused_total{protocol,reason}``
(replicas: ``ba_pbft_setup_refused_total{agent,reason}``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from broker_agents import codec
from broker_agents.coord.coordinator import CoordinatorAgent
from broker_agents.coord.metrics import COORD_REFUSED
from broker_agents.coord.pbft_replica import PbftReplicaAgent
from broker_agents.coord.voter import VoterAgent
from broker_agents.coord.wire import PbftSetup, PbftStatusAsk
from broker_agents.core.errors import BrokerError
from broker_agents.core.pbft.client import PbftClient, Submit
from broker_agents.core.pbft.config import PbftConfig
from broker_agents.core.pbft.signing import NkeysSigner, NkeysVerifier, new_user_seed
from broker_agents.messages import envelope
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from tests.integration.test_runtime import Hosted

S = Subjects()
Connect = Callable[..., Coroutine[Any, Any, NATS]]
VOTE = {"proposal": "ship?", "participants": ["v1", "v2"], "timeout_ms": 3000}


async def coord(nc: NATS, protocol: str, body: dict[str, Any], timeout: float = 10) -> Any:
    reply = await nats_request(nc, S.coord(protocol), codec.encode(body), timeout,
                               signed=True)
    return codec.decode(reply.data, reply.headers)


def error_of(reply: Any) -> BrokerError:
    err = BrokerError.from_payload(reply)
    assert err is not None, f"expected an error reply, got {reply!r}"
    return err


def refused(protocol: str, reason: str) -> float:
    return COORD_REFUSED.labels(protocol, reason)._value.get()


async def hosting(connect: Connect, **settings: Any) -> Hosted:
    hosted = Hosted(await connect(Role.NODE))
    await hosted.add(CoordinatorAgent("coordinator", **settings))
    for i in (1, 2):
        await hosted.add(VoterAgent(f"v{i}", choice="yes"))
    return hosted


@pytest.fixture
async def hosts() -> AsyncIterator[list[Hosted]]:
    started: list[Hosted] = []
    yield started
    for hosted in started:
        await hosted.stop_all()


async def test_one_clients_barriers_do_not_make_others_busy(
        connect: Connect, hosts: list[Hosted]) -> None:
    """1,024 one-hour barriers made every protocol 'busy' for everyone; now a requester
    has its own in-flight quota per protocol (here 4), under the global last resort."""
    hosts.append(await hosting(connect, max_inflight=8,
                               quota={"inflight": 4, "rate_per_s": 1000, "burst": 1000}))
    mallory = await connect(Role.CLIENT, user="mallory")
    alice = await connect(Role.CLIENT, user="alice")
    before = refused("barrier", "requester_inflight")
    waits = [asyncio.ensure_future(coord(mallory, "barrier", {
        "barrier_id": f"hold-{i}", "participants": ["mallory", "never"],
        "participant": "mallory",
        "timeout_ms": 600_000}, timeout=30)) for i in range(12)]
    done: list[Any] = []
    while len(done) < 8:  # the 8 beyond her quota come back at once; 4 stay waiting
        finished, _ = await asyncio.wait(
            [w for w in waits if w not in done], timeout=10,
            return_when=asyncio.FIRST_COMPLETED)
        assert finished, "refusals did not come"
        done += finished
    for w in done:
        err = error_of(w.result())
        assert err.code == "rate_limited" and err.details["reason"] == "requester_inflight"
    assert refused("barrier", "requester_inflight") == before + 8
    vote = await coord(alice, "vote", VOTE)
    assert vote["decision"] == "yes"
    lock = await coord(alice, "lock", {"name": "still-mine", "ttl_ms": 1000})
    assert lock["granted"]
    for w in waits:
        w.cancel()


async def test_a_requesters_rate_is_limited_and_others_still_vote(
        connect: Connect, hosts: list[Hosted]) -> None:
    hosts.append(await hosting(connect, quota={"inflight": 64, "rate_per_s": 0.01,
                                               "burst": 3}))
    mallory = await connect(Role.CLIENT, user="mallory")
    alice = await connect(Role.CLIENT, user="alice")
    replies = [await coord(mallory, "vote", VOTE) for _ in range(5)]
    assert [r.get("decision") for r in replies[:3]] == ["yes"] * 3
    for r in replies[3:]:
        err = error_of(r)
        assert err.code == "rate_limited" and err.details["reason"] == "requester_rate"
        assert err.details["retry_after_ms"] > 0
    assert (await coord(alice, "vote", VOTE))["decision"] == "yes"
    # the quota is per protocol too: mallory's locks are not her votes
    assert (await coord(mallory, "lock", {"name": "m", "ttl_ms": 1000}))["granted"]


@pytest.mark.parametrize(("protocol", "body", "field"), [
    ("barrier", {"barrier_id": "b", "participants": ["a"], "participant": "a",
                 "timeout_ms": 3_600_000}, "timeout_ms"),
    ("lock", {"name": "l", "ttl_ms": 3_600_000}, "ttl_ms"),
    ("lock", {"name": "l", "wait_ms": 600_000}, "wait_ms"),
    ("leader", {"action": "campaign", "role": "r", "ttl_ms": 3_600_000}, "ttl_ms"),
    ("vote", {"proposal": "p", "participants": [f"p{i}" for i in range(9)]},
     "participants"),
    ("pbft", {"operation": "x", "participants": ["a", "b", "c", "d"],
              "timeout_ms": 600_000}, "timeout_ms"),
])
async def test_timeouts_ttls_and_groups_are_bounded(
        connect: Connect, hosts: list[Hosted], protocol: str, body: dict[str, Any],
        field: str) -> None:
    hosts.append(await hosting(connect, max_participants=8))
    mallory = await connect(Role.CLIENT, user="mallory")
    before = refused(protocol, "bound")
    err = error_of(await coord(mallory, protocol, body))
    assert err.code == "validation_error"
    assert [f["field"] for f in err.details["fields"]] == [field]
    assert refused(protocol, "bound") == before + 1


async def test_live_pbft_groups_are_bounded(connect: Connect, hosts: list[Hosted]) -> None:
    hosts.append(await hosting(connect, max_pbft_groups=1))
    node = await connect(Role.NODE)
    asked = asyncio.Event()

    async def silent(msg: Msg) -> None:  # takes the hello, never answers
        asked.set()

    for i in range(4):
        await node.subscribe(S.agent(f"mute-{i}"), cb=silent)
    await node.flush()
    mallory = await connect(Role.CLIENT, user="mallory")
    first = asyncio.ensure_future(coord(mallory, "pbft", {
        "operation": "x", "participants": [f"mute-{i}" for i in range(4)],
        "timeout_ms": 5000}))
    await asyncio.wait_for(asked.wait(), 5)
    before = refused("pbft", "pbft_groups")
    err = error_of(await coord(mallory, "pbft", {
        "operation": "y", "participants": [f"mute-{i}" for i in range(4)]}))
    assert err.code == "rate_limited" and err.details["reason"] == "pbft_groups"
    assert refused("pbft", "pbft_groups") == before + 1
    first.cancel()


# -- replicas: set-ups only from nodes, with a bounded tick, lifetime and group count --


def _setup(replica: str, key: str, *, tick_ms: float = 10.0, ttl_ms: int = 2000,
           gid: str | None = None) -> PbftSetup:
    """A well-formed set-up of a 4-replica group with ``replica`` in it."""
    signer = NkeysSigner("cli", new_user_seed(os.urandom(32)))
    members = (replica, "o1", "o2", "o3")
    keys = {replica: key, **{m: signer.public_key for m in members[1:]},
            "cli": signer.public_key}
    client = PbftClient(PbftConfig(replica_id=replica, replicas=members, f=1), signer,
                        NkeysVerifier(keys))
    gid = gid or "g" + os.urandom(6).hex()
    client.step(Submit(gid, "op"))
    return PbftSetup(group_id=gid, replicas=list(members), f=1, public_keys=keys,
                     client="cli", request=client.request(gid).model_dump(mode="json"),
                     tick_ms=tick_ms, ttl_ms=ttl_ms)


async def _ask(nc: NATS, agent: str, msg: Any, *, signed: bool) -> Any:
    reply = await nats_request(nc, S.agent(agent), codec.encode(envelope(msg)), 5,
                               signed=signed)
    return codec.decode(reply.data, reply.headers)


async def test_replicas_refuse_setups_from_clients_and_bound_the_rest(
        connect: Connect, hosts: list[Hosted]) -> None:
    hosted = Hosted(await connect(Role.NODE))
    hosts.append(hosted)
    replica = PbftReplicaAgent("rep", max_groups=2)
    await hosted.add(replica)
    key = replica.signer.public_key
    mallory = await connect(Role.CLIENT, user="mallory")
    # 300 set-ups with a 0.001 ms tick held a node at 100% CPU: a client may make none
    floods = await asyncio.gather(*(_ask(mallory, "rep", _setup("rep", key, tick_ms=0.001),
                                         signed=True) for _ in range(300)))
    assert {error_of(r).code for r in floods} == {"unauthorized"}
    node = await connect(Role.NODE)
    for bad, field in ((_setup("rep", key, tick_ms=0.001), "tick_ms"),
                       (_setup("rep", key, ttl_ms=3_600_000), "ttl_ms")):
        err = error_of(await _ask(node, "rep", bad, signed=True))
        assert err.code == "validation_error" and err.details["fields"][0]["field"] == field
    for _ in range(2):
        ok = await _ask(node, "rep", _setup("rep", key, ttl_ms=30_000), signed=True)
        assert ok["replica"] == "rep"
    err = error_of(await _ask(node, "rep", _setup("rep", key), signed=True))
    assert err.code == "rate_limited" and err.details["reason"] == "pbft_groups"
    status = await _ask(node, "rep", PbftStatusAsk(), signed=False)
    assert status["groups"] == 2
