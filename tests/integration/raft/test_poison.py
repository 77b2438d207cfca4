"""Messages that used to poison a Raft group, sent by an outsider over a real nats-server.

Each attack is followed by the proof that matters: a normal put still commits and reads
back. Before the fix a poison proposal (an integer past 64 bits, a lone surrogate) made
the leader unable to encode its log, one such message per leader; a forged heartbeat with
term 2^64-1 was adopted and no election could succeed after it.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from prometheus_client import REGISTRY

from broker_agents.codec import encode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.raft.kvstore import KVStateMachine
from broker_agents.raft.client import RaftClient
from broker_agents.raft.driver import RaftMember
from broker_agents.raft.storage import MemoryStorage
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.integration.raft.helpers import leader_of, start_group, wait_for
from tests.secured import connect_as

IDS = ["a", "b", "c"]


class Group:
    def __init__(self, name: str, nc: Any, members: list[RaftMember], server: NatsServer,
                 data: Path) -> None:
        self.name, self.nc, self.members = name, nc, members
        self.server, self.data = server, data
        self.conns: list[Any] = []

    async def restart(self, member: RaftMember) -> RaftMember:
        """A stopped member again, from what its storage kept."""
        conns, (back,) = await start_group(self.server, self.name, IDS, self.data,
                                           only=[member.id])
        self.conns += conns
        self.members[self.members.index(member)] = back
        return back

    async def leader(self) -> RaftMember:
        leader: RaftMember = await wait_for(lambda: leader_of(self.members), what="a leader")
        return leader

    async def still_commits(self, key: str = "after") -> None:
        """The proof that matters: a normal put commits and reads back."""
        client = RaftClient(self.nc, self.name)
        result = await client.propose({"op": "put", "key": key, "value": "ok"}, timeout=10)
        assert result["ok"] is True
        assert (await client.read({"op": "get", "key": key}, timeout=10))["value"] == "ok"


@pytest.fixture
async def group(nats_server: NatsServer, tmp_path: Path, request: pytest.FixtureRequest
                ) -> AsyncIterator[Group]:
    name = "p" + str(abs(hash(request.node.name)) % 10**8)
    conns, members = await start_group(nats_server, name, IDS, tmp_path)
    # An insider with node creds: a client may not even publish to the peer subjects
    # (tests/integration/auth); what is left to prove is that no message poisons a group.
    attacker = await connect_as(nats_server, Role.NODE)
    g = Group(name, attacker, members, nats_server, tmp_path)
    try:
        await g.leader()
        yield g
    finally:
        for m in g.members:
            await m.stop()
        for nc in [*conns, *g.conns, attacker]:
            await nc.close()


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def reply_of(msg: Any, as_json: bool) -> Any:
    if as_json:
        assert msg.data[:1] == b"{", f"expected a JSON reply, got {msg.data[:40]!r}"
        return json.loads(msg.data)
    return msgpack.unpackb(msg.data, raw=False)


POISON_JSON = [
    pytest.param('{"op": "put", "key": "p", "value": 18446744073709551616}', id="int-2^64"),
    pytest.param('{"op": "put", "key": "p", "value": -9223372036854775809}', id="int-below-2^63"),
    pytest.param('{"op": "put", "key": "p", "value": "\\ud800"}', id="lone-surrogate"),
    pytest.param('{"op": "put", "key": "\\udfff", "value": [1, {"x": 1e999}]}',
                 id="surrogate-key"),
]


@pytest.mark.parametrize("command", POISON_JSON)
@pytest.mark.parametrize("to_member", [False, True], ids=["group-subject", "member-subject"])
async def test_unstorable_json_proposal_gets_validation_error(
        group: Group, command: str, to_member: bool) -> None:
    for _attempt in range(2):  # once killed the leader, twice the next one too
        leader = await group.leader()
        subject = (f"ba.raft.{group.name}.{leader.id}.propose" if to_member
                   else f"ba.raft.{group.name}.propose")
        body = ('{"command": ' + command + ', "request_id": "poison"}').encode()
        msg = await group.nc.request(subject, body, timeout=3)
        err = BrokerError.from_payload(reply_of(msg, as_json=True))
        assert err is not None and err.code == ErrorCode.VALIDATION
        assert err.details.get("reason")  # names why it cannot be stored
    await group.still_commits()


async def test_unstorable_request_id_gets_validation_error(group: Group) -> None:
    body = b'{"command": {"op": "put", "key": "k", "value": 1}, "request_id": "\\ud800"}'
    msg = await group.nc.request(f"ba.raft.{group.name}.propose", body, timeout=3)
    err = BrokerError.from_payload(reply_of(msg, as_json=True))
    assert err is not None and err.code == ErrorCode.VALIDATION
    await group.still_commits()


async def test_oversized_msgpack_proposal_gets_too_large(group: Group) -> None:
    big = {"command": {"op": "put", "key": "big", "value": "x" * 200_000}}
    msg = await group.nc.request(f"ba.raft.{group.name}.propose", encode(big), timeout=3)
    err = BrokerError.from_payload(reply_of(msg, as_json=False))
    assert err is not None and err.code == ErrorCode.TOO_LARGE
    assert err.details["limit"] < err.details["size"]
    await group.still_commits()


async def test_in_process_proposal_that_cannot_be_stored_raises(group: Group) -> None:
    leader = await group.leader()
    follower = next(m for m in group.members if m is not leader)
    for member in (leader, follower):
        with pytest.raises(BrokerError) as info:
            await member.propose({"op": "put", "key": "p", "value": 2**70})
        assert info.value.code == ErrorCode.VALIDATION
    await group.still_commits()


async def test_a_follower_behind_by_more_than_a_max_payload_catches_up(group: Group) -> None:
    """Each command is within the bound, but the append that catches a follower up with
    thirty of them passes the server's max payload: it must still arrive (in parts)."""
    leader = await group.leader()
    behind = next(m for m in group.members if m is not leader)
    await behind.stop()
    client = RaftClient(group.nc, group.name)
    client.leader = leader.id
    for i in range(30):
        await client.propose({"op": "put", "key": f"big{i}", "value": "v" * 60_000})
    back = await group.restart(behind)
    await wait_for(lambda: back.applied_index >= leader.commit_index, timeout=10,
                   what="the follower to catch up")
    assert back.sm.get("big29") == "v" * 60_000
    await group.still_commits()


def forged(term: int, src: str, dst: str) -> bytes:
    """A Heartbeat as a peer would send it: a msgpack list of wire messages."""
    return msgpack.packb([[5, term, src, dst, 0, 0]], use_bin_type=True)


async def test_forged_heartbeat_with_huge_term_is_refused(group: Group) -> None:
    before = counted("ba_raft_rejected_messages_total", group=group.name,
                     reason="number_out_of_range")
    for dst in IDS:
        src = next(m for m in IDS if m != dst)
        await group.nc.publish(f"ba.raft.{group.name}.{dst}", forged(2**64 - 1, src, dst))
    await group.nc.flush()
    await wait_for(lambda: counted("ba_raft_rejected_messages_total", group=group.name,
                                   reason="number_out_of_range") >= before + 3,
                   what="three refusals counted")
    await group.still_commits()
    assert all(m.term < 2**53 for m in group.members)


async def test_forged_term_jump_from_a_member_is_refused(group: Group) -> None:
    leader = await group.leader()
    jump = leader.term + 10**9
    before = counted("ba_raft_rejected_messages_total", group=group.name, reason="term_jump")
    for dst in IDS:
        src = next(m for m in IDS if m != dst)
        await group.nc.publish(f"ba.raft.{group.name}.{dst}", forged(jump, src, dst))
    await group.nc.flush()
    await wait_for(lambda: counted("ba_raft_rejected_messages_total", group=group.name,
                                   reason="term_jump") >= before + 3,
                   what="three refusals counted")
    await group.still_commits()
    assert all(m.term < jump for m in group.members)


async def test_peer_message_from_outside_the_group_or_from_ourselves_is_refused(
        group: Group) -> None:
    leader = await group.leader()
    before = counted("ba_raft_rejected_messages_total", group=group.name, reason="not_member")
    for dst in IDS:
        for src in ("mallory", dst):
            await group.nc.publish(f"ba.raft.{group.name}.{dst}",
                                   forged(leader.term + 1, src, dst))
    await group.nc.flush()
    await wait_for(lambda: counted("ba_raft_rejected_messages_total", group=group.name,
                                   reason="not_member") >= before + 6,
                   what="six refusals counted")
    await group.still_commits()
    assert all(m.term == leader.term for m in group.members)


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "msgpack"])
async def test_bad_hops_header_gets_malformed(group: Group, as_json: bool) -> None:
    body = {"command": {"op": "put", "key": "h", "value": 1}}
    for raw in ("abc", "-1", ""):
        msg = await group.nc.request(f"ba.raft.{group.name}.propose",
                                     encode(body, as_json=as_json),
                                     headers={"ba-raft-hops": raw}, timeout=3)
        err = BrokerError.from_payload(reply_of(msg, as_json))
        assert err is not None and err.code == ErrorCode.MALFORMED, raw
    await group.still_commits()


@pytest.mark.parametrize("kind", ["propose", "read", "member-propose", "peer"])
async def test_deeply_nested_json_gets_malformed(group: Group, kind: str) -> None:
    leader = await group.leader()
    subject = {
        "propose": f"ba.raft.{group.name}.propose",
        "read": f"ba.raft.{group.name}.read",
        "member-propose": f"ba.raft.{group.name}.{leader.id}.propose",
        "peer": f"ba.raft.{group.name}.{leader.id}",
    }[kind]
    deep = ('{"command": ' + "[" * 1000 + "]" * 1000 + ', "query": 1}').encode()
    msg = await group.nc.request(subject, deep, timeout=3)
    err = BrokerError.from_payload(reply_of(msg, as_json=True))
    assert err is not None and err.code == ErrorCode.MALFORMED
    await group.still_commits()


async def test_garbage_with_json_content_type_gets_a_json_reply(group: Group) -> None:
    msg = await group.nc.request(f"ba.raft.{group.name}.propose", b"\xc1\x00",
                                 headers={"content-type": "application/json"}, timeout=3)
    err = BrokerError.from_payload(reply_of(msg, as_json=True))
    assert err is not None and err.code == ErrorCode.MALFORMED


class SnapshotFails(KVStateMachine):
    """A state machine whose state cannot be encoded: compaction raises inside the core."""

    def snapshot(self) -> bytes:
        raise ValueError("state cannot be encoded")


async def test_a_member_whose_core_raises_fail_stops_loudly(nats_server: NatsServer,
                                                           tmp_path: Path) -> None:
    conns, members = await start_group(nats_server, "fs", IDS, tmp_path, only=["a", "b"],
                                       snapshot_threshold=5)
    nc = await connect_as(nats_server, Role.NODE)
    sick = RaftMember(nc, "fs", "c", IDS, MemoryStorage(), SnapshotFails(),
                      rng=random.Random(9), snapshot_threshold=5)
    await sick.start()
    members.append(sick)
    labels = {"group": "fs", "member": "c"}
    stops = counted("ba_raft_fail_stops_total", **labels)
    try:
        client = RaftClient(conns[0], "fs")
        for i in range(8):
            await client.propose({"op": "put", "key": f"k{i}", "value": i}, timeout=10)
        await wait_for(lambda: sick.failed is not None, what="the sick member to fail-stop")
        assert "ValueError" in str(sick.failed) and not sick._running
        assert counted("ba_raft_fail_stops_total", **labels) == stops + 1
        # it takes no requests any more; the others carry on
        with pytest.raises(BrokerError) as info:
            await sick.propose({"op": "put", "key": "x", "value": 1})
        assert info.value.code == ErrorCode.UNAVAILABLE
        await Group("fs", conns[0], members, nats_server, tmp_path).still_commits()
    finally:
        for m in members:
            await m.stop()
        for c in [*conns, nc]:
            await c.close()
