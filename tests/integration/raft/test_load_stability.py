"""Leadership holds under load: 64 concurrent proposers, snapshots and their files written
mid-load (FileStorage with fsync), no fault -- and no member starts an election.

Event-based: the load is a fixed number of proposals that all complete; the elections are
read from the members' own counters after it, not inferred from a sleep.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from broker_agents.core.raft import Snapshot
from broker_agents.raft import snapfiles
from broker_agents.raft.client import RaftClient
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.integration.raft.helpers import leader_of, start_group, wait_for
from tests.secured import connect_as

CLIENTS = 64
PER_CLIENT = 40


async def test_no_election_under_concurrent_load_with_snapshots(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    conns, members = await start_group(nats_server, "steady", ["a", "b", "c"], tmp_path,
                                       snapshot_threshold=300)
    client_nc = await connect_as(nats_server, Role.CLIENT)
    try:
        leader = await wait_for(lambda: leader_of(members), what="a leader")
        client = RaftClient(client_nc, "steady")
        await client.propose({"op": "put", "key": "warm", "value": 0})
        await wait_for(lambda: all(m.applied_index == leader.commit_index for m in members),
                       what="every member caught up")
        term = leader.term
        elections = sum(m.core.elections for m in members if m.core is not None)

        async def proposer(k: int) -> None:
            own = RaftClient(client_nc, "steady")
            for i in range(PER_CLIENT):
                await own.propose({"op": "put", "key": f"c{k}-{i % 8}", "value": i})

        await asyncio.gather(*(proposer(k) for k in range(CLIENTS)))
        await wait_for(lambda: all(m.applied_index >= leader.commit_index for m in members),
                       what="every member applied the load")
        snapshots = [m.core.log.base_index for m in members if m.core is not None]
        assert min(snapshots) > 0, "the load must cross the snapshot threshold"
        assert leader.is_leader and all(m.term == term for m in members)
        assert sum(m.core.elections for m in members if m.core is not None) == elections
    finally:
        for m in members:
            await m.stop()
        for nc in [*conns, client_nc]:
            await nc.close()


async def test_a_slow_snapshot_write_stalls_neither_commits_nor_leadership(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every member's snapshot file takes 400 ms to write -- longer than the leader's
    check-quorum window (10 ticks of 20 ms). The log's writer must not wait for it: when
    it did, both followers stopped answering at the same snapshot index and the leader
    stepped down (seen as 0-5 leader changes per 15 s of load)."""
    slow_writes: list[int] = []
    real_write = snapfiles.write_snapshot_file

    def slow_write(directory: Path, snap: Snapshot, fsync: bool = True) -> None:
        slow_writes.append(snap.index)
        time.sleep(0.4)  # sleep-ok: a slow disk, on the snapshot thread
        real_write(directory, snap, fsync)

    monkeypatch.setattr(snapfiles, "write_snapshot_file", slow_write)
    conns, members = await start_group(nats_server, "slowsnap", ["a", "b", "c"], tmp_path,
                                       snapshot_threshold=150)
    client_nc = await connect_as(nats_server, Role.CLIENT)
    try:
        leader = await wait_for(lambda: leader_of(members), what="a leader")
        await RaftClient(client_nc, "slowsnap").propose({"op": "put", "key": "w", "value": 0})
        term = leader.term

        async def proposer(k: int) -> None:
            own = RaftClient(client_nc, "slowsnap")
            for i in range(PER_CLIENT):
                await own.propose({"op": "put", "key": f"c{k}-{i % 8}", "value": i})

        await asyncio.gather(*(proposer(k) for k in range(CLIENTS)))
        assert len(slow_writes) >= 3, "every member must have written a snapshot"
        assert leader.is_leader and all(m.term == term for m in members)
    finally:
        for m in members:
            await m.stop()
        for nc in [*conns, client_nc]:
            await nc.close()
