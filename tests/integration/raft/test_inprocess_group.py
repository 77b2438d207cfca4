"""A 3-member group in one process over a real nats-server."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from broker_agents.core.errors import BrokerError
from broker_agents.core.raft import PersistOp
from broker_agents.core.raft.kvstore import KVStateMachine
from broker_agents.raft.client import RaftClient
from broker_agents.raft.driver import RaftMember
from broker_agents.raft.storage import MemoryStorage
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.integration.raft.helpers import leader_of, start_group, wait_for
from tests.secured import connect_as


async def test_group_elects_commits_and_serves_linearizable_reads(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    conns, members = await start_group(nats_server, "g1", ["a", "b", "c"], tmp_path)
    try:
        leader = await wait_for(lambda: leader_of(members), what="a leader")
        result = await leader.propose({"op": "put", "key": "x", "value": 1})
        assert result["ok"] is True
        follower = next(m for m in members if m is not leader)
        # a follower proposes through the leader and answers once it applied the entry
        await follower.propose({"op": "put", "key": "x", "value": 2})
        assert (await follower.read({"op": "get", "key": "x"}))["value"] == 2
        client = RaftClient(conns[0], "g1")
        cas = await client.propose({"op": "cas", "key": "x", "expected": 2, "value": 3})
        assert cas["ok"] is True
        assert (await client.read({"op": "get", "key": "x"}))["value"] == 3
        await wait_for(lambda: all(m.applied_index == leader.commit_index for m in members),
                       what="all members applied")
    finally:
        for m in members:
            await m.stop()
        for nc in conns:
            await nc.close()


async def test_retried_request_id_is_applied_once(nats_server: NatsServer, tmp_path: Path) -> None:
    conns, members = await start_group(nats_server, "g2", ["a", "b", "c"], tmp_path)
    try:
        await wait_for(lambda: leader_of(members), what="a leader")
        client = RaftClient(conns[1], "g2")
        first = await client.propose({"op": "put", "key": "n", "value": "v1"}, request_id="req-1")
        again = await client.propose({"op": "put", "key": "n", "value": "v1"}, request_id="req-1")
        assert again == first  # same result, same version: not applied a second time
        assert (await client.read({"op": "get", "key": "n"}))["version"] == first["version"]
    finally:
        for m in members:
            await m.stop()
        for nc in conns:
            await nc.close()


async def test_json_client_via_nats_request_and_errors(nats_server: NatsServer,
                                                      tmp_path: Path) -> None:
    conns, members = await start_group(nats_server, "g3", ["a", "b", "c"], tmp_path)
    try:
        await wait_for(lambda: leader_of(members), what="a leader")
        nc = await connect_as(nats_server, Role.CLIENT)
        body = json.dumps({"command": {"op": "put", "key": "j", "value": "hi"}}).encode()
        msg = await nc.request("ba.raft.g3.propose", body, timeout=2)
        reply = json.loads(msg.data)
        assert reply["result"]["ok"] is True and reply["leader"] in ("a", "b", "c")
        bad = await nc.request("ba.raft.g3.propose", b'{"nope": 1}', timeout=2)
        assert json.loads(bad.data)["error"]["code"] == "bad_request"
        junk = await nc.request("ba.raft.g3.read", b"\xc1\xc1", timeout=2)
        assert BrokerError.from_payload(json.loads(junk.data) if junk.data[:1] == b"{"
                                        else __import__("msgpack").unpackb(junk.data)) is not None
        # peers' inbox (a client may not publish there; a node may): must not crash a member
        await conns[1].publish("ba.raft.g3.a", b"garbage")
        got = await RaftClient(nc, "g3").read({"op": "get", "key": "j"})
        assert got["value"] == "hi"
        await nc.close()
    finally:
        for m in members:
            await m.stop()
        for nc in conns:
            await nc.close()


async def test_member_whose_disk_fails_stops_and_group_carries_on(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    class BrokenDisk(MemoryStorage):
        broken = False

        def save(self, ops: Sequence[PersistOp]) -> None:
            if self.broken and ops:
                raise OSError("disk full")
            super().save(ops)

    ids = ["a", "b", "c"]
    conns, members = await start_group(nats_server, "g4", ids, tmp_path, only=["a", "b"])
    nc = await connect_as(nats_server, Role.NODE)  # the sick member's
    disk = BrokenDisk()
    sick = RaftMember(nc, "g4", "c", ids, disk, KVStateMachine(), rng=random.Random(9))
    await sick.start()
    members.append(sick)
    try:
        await wait_for(lambda: leader_of(members), what="a leader")
        client = RaftClient(conns[0], "g4")
        await client.propose({"op": "put", "key": "d", "value": 1})
        disk.broken = True
        await client.propose({"op": "put", "key": "d", "value": 2})
        await wait_for(lambda: not sick._running, what="the sick member to fail-stop")
        assert (await client.propose({"op": "put", "key": "d", "value": 3}))["ok"]
    finally:
        for m in members:
            await m.stop()
        for c in [*conns, nc]:
            await c.close()
