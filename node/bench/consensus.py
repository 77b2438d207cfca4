"""Consensus benchmark: commit latency and throughput beside their peers, in one run.

By default (``consensus_procs``) the group is what a deployment runs: 3 node daemons,
each its own OS process hosting one member, on a secured 3-server nats cluster, measured
beside a raw JetStream R3 KV put (fsynced) on that cluster, with kill -9 failover.

``in_process=True`` keeps the older, lighter shape: 3 members in this process on one
nats-server (they share one CPU core and one event loop with the clients: a conservative
setting), beside raw request/reply; failover stops the leader abruptly. Its pipelined
phase keeps ``window`` proposals in flight through RaftClients, so a proposal caught by a
leader change is retried under its request id (counted in ``retries``), never lost.
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
from node.auth.roles import Role
from node.bench.consensus_procs import Proposer, run_procs_bench
from node.bench.harness import connect
from node.bench.load import spread
from node.bench.proposals import raw_rtt
from node.bench.stats import figure, percentile
from node.embedded import NatsServer, start_server


async def run_consensus_bench(
    server: NatsServer | None = None, *, proposals: int = 1500,
    tmp_dir: str | Path | None = None, pipelined: int = 20_000, window: int = 512,
    fsync: bool = True, in_process: bool = False, concurrency: int = 64,
    seconds: float = 10.0, rounds: int = 3, failovers: int = 3,
    profile_dir: str | Path | None = None, handovers: int = 3,
) -> dict[str, Any]:
    """The suite's figures. Default: node processes on a nats cluster of their own
    (``server`` is not used; ``proposals``, ``concurrency``, ``seconds``, ``rounds``,
    ``failovers`` and ``handovers``, planned restarts of the leader's node, size it;
    ``profile_dir`` profiles the nodes). ``in_process=True``:
    members in this process on ``server``
    (a fresh one when None; ``proposals``, ``pipelined``, ``window`` size it)."""
    if not in_process:
        return await run_procs_bench(proposals=proposals, concurrency=concurrency,
                                     seconds=seconds, rounds=rounds, failovers=failovers,
                                     handovers=handovers, fsync=fsync, tmp_dir=tmp_dir,
                                     profile_dir=profile_dir)
    if server is not None:
        return await _in_process(server, proposals, tmp_dir, pipelined, window, fsync)
    with tempfile.TemporaryDirectory(prefix="ba-bench-", dir=tmp_dir) as tmp:
        own = await asyncio.to_thread(start_server, Path(tmp) / "nats")
        try:
            return await _in_process(own, proposals, tmp, pipelined, window, fsync)
        finally:
            own.stop()


async def _wait_leader(members: list[RaftMember], timeout: float = 10.0) -> RaftMember:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        live = [m for m in members if m.core is not None and m._running and m.is_leader]
        if live:
            return live[0]
        await asyncio.sleep(0.005)  # sleep-ok: polling in-memory member state
    raise TimeoutError("no leader elected")


async def _in_process(server: NatsServer, proposals: int, tmp_dir: str | Path | None,
                      pipelined: int, window: int, fsync: bool) -> dict[str, Any]:
    """Members connect as nodes, the proposing clients as clients (as in a deployment)."""
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
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
            pool = [Proposer(RaftClient(client_nc, "bench")) for _ in range(max(1, window))]

            async def propose(c: int, i: int) -> object:
                return await pool[c]({"op": "put", "key": f"k{i % 64}", "value": i})

            burst = await spread(propose, pipelined, window)
            # failover: stop the leader abruptly, time the next commit through a client
            t0 = time.perf_counter()
            await leader.stop()
            await client.propose({"op": "put", "key": "after", "value": 1}, timeout=10)
            failover = time.perf_counter() - t0
        finally:
            for m in members:
                await m.stop()
            for nc in [*conns, client_nc]:
                await nc.close()
    return {
        **figure("raw_rtt_us_p50", raw, 50, 1e6), **figure("commit_us_p50", commit, 50, 1e6),
        **figure("commit_us_p99", commit, 99, 1e6),
        "commit_to_rtt_ratio": round(percentile(commit, 50) / percentile(raw, 50), 2),
        "commits_per_s": round(burst.count / burst.seconds),
        "retries": sum(c.retries for c in pool),
        **figure("failover_ms", [failover], 50, 1e3),
        "proposals": proposals, "pipelined": pipelined, "window": window,
        "members": 3, "in_process": True, "fsync": fsync,
    }


if __name__ == "__main__":  # pragma: no cover - manual runs
    import json

    print(json.dumps(asyncio.run(run_consensus_bench()), indent=2))
