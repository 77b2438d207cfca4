"""Consensus benchmark: commit latency and throughput as ratios against raw NATS.

All figures come from one run against one nats-server: raw request/reply RTT, sequential
commit latency on a 3-member group (FileStorage with fsync), pipelined throughput (many
proposals in flight; the leader batches them into shared appends and fsyncs), and
failover time (the leader is stopped abruptly -> the next commit through a client).
Members run in this process, so they share one CPU core and one event loop with the
client: a conservative setting for latency and throughput.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from broker_agents.codec import encode
from broker_agents.core.raft.kvstore import KVStateMachine
from broker_agents.raft.client import RaftClient
from broker_agents.raft.driver import RaftMember
from broker_agents.raft.storage import FileStorage
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.bench.harness import connect, on_fresh_server
from node.bench.proposals import pipelined as bench_pipelined
from node.bench.proposals import raw_rtt
from node.bench.stats import beside_rtt
from node.embedded import NatsServer


async def _wait_leader(members: list[RaftMember], timeout: float = 10.0) -> RaftMember:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        live = [m for m in members if m.core is not None and m._running and m.is_leader]
        if live:
            return live[0]
        await asyncio.sleep(0.005)  # sleep-ok: polling in-memory member state
    raise TimeoutError("no leader elected")


async def run_consensus_bench(
    server: NatsServer, *, proposals: int = 2000, tmp_dir: str | Path | None = None,
    pipelined: int = 20_000, window: int = 512, fsync: bool = True,
) -> dict[str, Any]:
    """Members connect as nodes, the proposing client as a client (as in a deployment)."""
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        # the raw baseline: plain request/reply on a subject of our own (node creds)
        probe_server, probe_client = await connect(server), await connect(server)
        try:
            raw = await raw_rtt(probe_server, probe_client, proposals, encode(
                {"command": {"op": "put", "key": "k", "value": 1}}))
        finally:
            await probe_client.close()
            await probe_server.close()
        ids = ["b0", "b1", "b2"]
        conns = [await connect(server) for _ in ids]
        members = [
            RaftMember(nc, "bench", mid, ids, FileStorage(Path(tmp) / mid, fsync=fsync),
                       KVStateMachine(), rng=random.Random(i))
            for i, (nc, mid) in enumerate(zip(conns, ids, strict=True))
        ]
        client_nc = await connect(server, Role.CLIENT)
        try:
            for m in members:
                await m.start()
            leader = await _wait_leader(members)
            client = RaftClient(client_nc, "bench")
            await client.propose({"op": "put", "key": "warm", "value": 0})
            commit = []
            for i in range(proposals):
                t = time.perf_counter()
                await client.propose({"op": "put", "key": f"k{i % 64}", "value": i})
                commit.append(time.perf_counter() - t)
            subject = Subjects().raft("bench", leader.id, "propose")
            rate = await bench_pipelined(client_nc, subject, pipelined, window, lambda i: {
                "command": {"op": "put", "key": f"k{i % 64}", "value": i},
                "request_id": f"p{i}"})
            # failover: stop the leader abruptly, time the next commit through a client
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await leader.stop()
            await client.propose({"op": "put", "key": "after", "value": 1}, timeout=10)
            failover = loop.time() - t0
        finally:
            for m in members:
                await m.stop()
            for nc in [*conns, client_nc]:
                await nc.close()
    return {
        **beside_rtt(raw, commit, "commit"),
        "commits_per_s": round(rate),
        "failover_ms": round(failover * 1000, 1),
        "proposals": proposals,
        "pipelined": pipelined,
        "window": window,
        "members": 3,
        "in_process": True,
        "fsync": fsync,
    }


if __name__ == "__main__":  # pragma: no cover - manual runs
    import json

    print(json.dumps(asyncio.run(on_fresh_server(lambda server, tmp: run_consensus_bench(
        server, tmp_dir=tmp))), indent=2))
