"""Proposal batches (``broker_agents/raft/batch.py``) on a secured server: a batch lets no
one do what single proposals could not (same subjects, same permission, same checks, same
exactly-once), and hostile batches get one structured error, are counted, and the group
serves on."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from broker_agents.codec import decode, encode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.raft.kvstore import KVStateMachine
from broker_agents.raft.batch import MAX_BATCH_ITEMS
from broker_agents.raft.client import RaftClient
from broker_agents.raft.driver import RaftMember
from broker_agents.raft.memstore import MemoryStorage
from broker_agents.raft.metrics import MALFORMED, REFUSED_PROPOSALS
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.integration.raft.helpers import leader_of, wait_for
from tests.secured import connect_as
from tests.security.violations import Violations

S = Subjects()
GROUP = "bat"
Connect = Callable[..., Coroutine[Any, Any, NATS]]


@pytest.fixture
async def group(nats_server: NatsServer) -> AsyncIterator[list[RaftMember]]:
    ids = ["a", "b", "c"]
    members, conns = [], []
    for i, mid in enumerate(ids):
        nc = await connect_as(nats_server, Role.NODE)
        member = RaftMember(nc, GROUP, mid, ids, MemoryStorage(), KVStateMachine(),
                            rng=random.Random(i), max_command_bytes=1024)
        await member.start()
        members.append(member)
        conns.append(nc)
    await wait_for(lambda: leader_of(members), 10, "a leader")
    yield members
    for member, nc in zip(members, conns, strict=True):
        await member.stop()
        await nc.close()


def _put(key: str, value: Any, rid: str) -> dict[str, Any]:
    return {"command": {"op": "put", "key": key, "value": value}, "request_id": rid}


def malformed() -> float:
    return sum(float(MALFORMED.labels(GROUP, m)._value.get()) for m in "abc")


async def test_a_batch_commits_each_proposal_once_with_its_own_result(
        group: list[RaftMember], connect: Connect) -> None:
    client = await connect(Role.CLIENT)
    leader = leader_of(group)
    assert leader is not None
    subject = S.raft(GROUP, "propose")  # any member: a follower relays the batch whole
    body = {"batch": [_put("k", 1, "r1"), _put("k", 2, "r2"), _put("j", 3, "r3")]}
    reply = decode((await client.request(subject, encode(body), timeout=5)).data)
    results = reply["results"]
    assert [r["result"]["ok"] for r in results] == [True] * 3
    assert [r["index"] for r in results] == sorted(r["index"] for r in results)
    assert reply["leader"] == leader.id
    # retried (a proposal already applied, beside a new one): answered from the dedup
    # table, not applied again
    again = {"batch": [_put("k", 1, "r1"), _put("x", 4, "r4")]}
    reply2 = decode((await client.request(subject, encode(again), timeout=5)).data)
    assert reply2["results"][0] == results[0]
    raft = RaftClient(client, GROUP)
    got = await raft.read({"op": "get", "key": "k"})
    assert got["value"] == 2 and got["version"] == results[1]["result"]["version"]


async def test_concurrent_clients_on_one_connection_share_requests(
        group: list[RaftMember], connect: Connect) -> None:
    client = await connect(Role.CLIENT)
    raft = [RaftClient(client, GROUP) for _ in range(20)]
    await asyncio.gather(*(r.propose({"op": "put", "key": "w", "value": 0}) for r in raft))
    assert len({r.leader for r in raft}) == 1  # each learnt the leader from its reply
    requests = sum(float(m.metrics.proposal_requests._value.get()) for m in group)
    got = await asyncio.gather(*(r.propose({"op": "put", "key": f"p{i}", "value": i})
                                 for i, r in enumerate(raft)))
    assert all(g["ok"] for g in got)
    asked = sum(float(m.metrics.proposal_requests._value.get()) for m in group) - requests
    assert asked == 1  # 20 proposals to one subject in one loop turn: one request
    for i in (0, 19):
        assert (await raft[i].read({"op": "get", "key": f"p{i}"}))["value"] == i


@pytest.mark.parametrize(("batch", "code", "reason"), [
    ([], ErrorCode.BAD_REQUEST, "bad_batch"),
    ("not a list", ErrorCode.BAD_REQUEST, "bad_batch"),
    ([_put("a", 1, "d"), _put("b", 2, "d")], ErrorCode.BAD_REQUEST, "duplicate_id"),
    ([{"command": {"op": "put", "key": "a", "value": 1}}], ErrorCode.BAD_REQUEST, "bad_item"),
    ([_put("a", 1, "ok"), 7], ErrorCode.BAD_REQUEST, "bad_item"),
    ([_put(f"k{i}", i, f"r{i}") for i in range(MAX_BATCH_ITEMS + 1)],
     ErrorCode.BAD_REQUEST, "too_many"),
    ([_put("a", 1, "s1"), _put("b", "x" * 2000, "s2")], ErrorCode.TOO_LARGE, None),
])
async def test_hostile_batches_are_refused_whole_counted_and_the_group_serves_on(
        group: list[RaftMember], connect: Connect, batch: Any, code: ErrorCode,
        reason: str | None) -> None:
    client = await connect(Role.CLIENT)
    leader = leader_of(group)
    assert leader is not None
    subject = S.raft(GROUP, leader.id, "propose")
    applied = leader.applied_index
    refused = float(REFUSED_PROPOSALS.labels(GROUP, code.value)._value.get())
    bad = malformed()
    msg = await client.request(subject, encode({"batch": batch}), timeout=5)
    err = BrokerError.from_payload(decode(msg.data))
    assert err is not None and err.code == code, err
    if reason is not None:
        assert err.details["reason"] == reason
        assert malformed() == bad + 1
    assert float(REFUSED_PROPOSALS.labels(GROUP, code.value)._value.get()) == refused + 1
    assert leader.applied_index == applied  # nothing of a refused batch was proposed
    ok = await RaftClient(client, GROUP).propose({"op": "put", "key": "after", "value": 1})
    assert ok["ok"] is True


async def test_a_batch_needs_the_permission_a_single_proposal_needs(
        group: list[RaftMember], connect: Connect) -> None:
    violations = Violations()
    observer = await connect(Role.OBSERVER, user="mallory", error_cb=violations.on_error)
    subject = S.raft(GROUP, "propose")
    await observer.publish(subject, encode({"batch": [_put("a", 1, "m1")]}),
                           reply=observer.new_inbox())
    await violations.expect(subject)
    # nor does a batch open the members' own subjects to a client
    client_violations = Violations()
    client = await connect(Role.CLIENT, user="carol", error_cb=client_violations.on_error)
    peer = S.raft(GROUP, "a")
    await client.publish(peer, encode({"batch": [_put("a", 1, "m2")]}))
    await client_violations.expect(peer)
    leader = leader_of(group)
    assert leader is not None
    assert (await leader.read({"op": "get", "key": "a"})).get("value") is None
