"""Raft members as separate OS processes (python -m broker_agents.raft.serve):
kill -9 the leader, a new leader commits quickly and nothing acknowledged is lost; the
killed member restarts and catches up (from a snapshot, since the log was compacted)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import nats
import pytest

from broker_agents.codec import decode, encode
from broker_agents.raft.client import RaftClient
from broker_agents.raft.storage import FileStorage
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.secured import connect_as
from tests.secured import security as secured

REPO = Path(__file__).resolve().parents[3]
SNAPSHOT_EVERY = 40


class ProcGroup:
    def __init__(self, server: NatsServer, group: str, ids: list[str], data: Path) -> None:
        self.server, self.group, self.ids, self.data = server, group, ids, data
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, mid: str) -> None:
        cmd = [
            sys.executable, "-m", "broker_agents.raft.serve", "--nats", self.server.url,
            "--group", self.group, "--member", mid, "--peers", ",".join(self.ids),
            "--data-dir", str(self.data / mid), "--snapshot-threshold", str(SNAPSHOT_EVERY),
        ]
        security = secured(self.server, Role.NODE)  # via the environment this time
        env = {**os.environ, "PYTHONPATH": str(REPO), "BA_CREDS": str(security.creds_file),
               "BA_TLS_CA": str(security.tls_ca_file),
               "BA_INBOX_PREFIX": str(security.inbox_prefix)}
        self.procs[mid] = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO
        )

    def kill9(self, mid: str) -> None:
        proc = self.procs[mid]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                assert proc.wait(10) == 0 or proc.returncode == -signal.SIGKILL
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def write_many(client: RaftClient, acked: dict[str, int], start: int, n: int) -> None:
    for i in range(start, start + n):
        await client.propose({"op": "put", "key": f"k{i % 25}", "value": i}, timeout=10)
        acked[f"k{i % 25}"] = i


@pytest.mark.parametrize("size", [3, 5])
async def test_kill9_leader_failover_no_lost_writes_and_catch_up(
    nats_server: NatsServer, tmp_path: Path, size: int
) -> None:
    ids = [f"p{i}" for i in range(size)]
    group = ProcGroup(nats_server, f"proc{size}", ids, tmp_path)
    for mid in ids:
        group.start(mid)
    nc = await connect_as(nats_server, Role.CLIENT)
    try:
        client = RaftClient(nc, group.group)
        acked: dict[str, int] = {}
        await write_many(client, acked, 0, 1)  # waits for processes + election
        await write_many(client, acked, 1, 60)
        victim = client.leader
        assert victim in ids
        loop = asyncio.get_running_loop()
        group.kill9(victim)
        killed_at = loop.time()
        last_before = FileStorage.inspect(tmp_path / victim).entries[-1].index
        await client.propose({"op": "put", "key": "after-kill", "value": 1}, timeout=10)
        failover = loop.time() - killed_at
        assert client.leader != victim
        assert failover < 2.0, f"new leader committed only after {failover:.2f}s"
        # more writes while the victim is down: the log gets compacted past its end
        await write_many(client, acked, 61, 2 * SNAPSHOT_EVERY)
        for key, value in acked.items():
            got = await client.read({"op": "get", "key": key})
            assert got["value"] == value, f"acknowledged write {key}={value} lost"
        # the victim restarts and catches up; a read served by it proves it applied
        group.start(victim)
        direct = f"ba.raft.{group.group}.{victim}.read"
        deadline = loop.time() + 15
        while True:
            try:
                msg = await nc.request(direct, encode({"query": {"op": "get", "key": "k0"}}),
                                       timeout=1)
                reply = decode(msg.data)
                if "result" in reply and reply["result"]["value"] == acked["k0"]:
                    break
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                pass
            assert loop.time() < deadline, "restarted member did not catch up"
        snapshot = FileStorage.inspect(tmp_path / victim).snapshot
        # its log ended at last_before; the leader compacted past that, so it caught up
        # through a snapshot newer than anything it had
        assert snapshot is not None and snapshot.index > last_before
        print(f"N={size} failover {failover * 1000:.0f} ms; victim snapshot at {snapshot.index}")
    finally:
        await nc.close()
        group.stop_all()
