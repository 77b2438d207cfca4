"""Replacing a machine in a consensus group hosted by node daemons, with the CLI an operator
uses (``broker-agents raft members|add|remove|transfer``, as an admin), and a planned
restart of the leader's node under writes (SIGTERM: it hands leadership over first)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from broker_agents.raft.client import RaftClient
from node.auth.roles import Role
from node.bench.handover import Writer, longest_gap
from node.cli.raft import app
from node.cluster import LocalCluster

# Every node gets the same file: node-4 is not among the first members, so `join` makes it
# host a member that waits to be added.
GROUP = {"name": "cfg", "members": ["node-1", "node-2", "node-3"], "join": True}


async def _cli(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    assert cluster.auth is not None
    where = ["--nats", cluster.urls[0], "--context", str(cluster.auth.contexts[Role.ADMIN])]
    out = await asyncio.to_thread(CliRunner().invoke, app, [*args, *where, "--json"])
    assert out.exit_code == 0, out.output
    return dict(json.loads(out.output))


async def test_replace_a_dead_node_with_the_cli(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, nodes=4, services={"consensus": {"groups": [GROUP]}})
    await cluster.start()
    nc = await cluster.client()
    try:
        client = RaftClient(nc, "cfg")
        acked = {}
        for i in range(15):
            await client.propose({"op": "put", "key": f"k{i}", "value": i}, timeout=15)
            acked[f"k{i}"] = i
        view = await _cli(cluster, "members", "cfg")
        assert view["voters"] == GROUP["members"] and "node-4" not in view["learners"]
        # node-3's machine is gone for good (its leadership, if any, moves by election)
        cluster.kill(2)
        added = await _cli(cluster, "add", "cfg", "node-4", "--timeout", "30")
        assert added["voters"] == ["node-1", "node-2", "node-3", "node-4"]
        removed = await _cli(cluster, "remove", "cfg", "node-3")
        assert removed["voters"] == ["node-1", "node-2", "node-4"]
        # node-4 counts: with node-2 down as well, node-1 and node-4 still commit
        leader = (await _cli(cluster, "members", "cfg"))["leader"]
        if leader == "node-2":
            moved = await _cli(cluster, "transfer", "cfg", "node-1")
            assert moved["leader"] == "node-1"
        cluster.kill(1)
        await client.propose({"op": "put", "key": "after", "value": "replace"}, timeout=15)
        for key, value in acked.items():
            assert (await client.read({"op": "get", "key": key}, timeout=15))["value"] == value
    finally:
        await nc.close()
        await asyncio.to_thread(cluster.stop)


async def test_planned_restart_of_the_leaders_node_fails_no_commit(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, nodes=3, services={"consensus": {"groups": [GROUP]}})
    await cluster.start()
    nc = await cluster.client()
    try:
        client = RaftClient(nc, "cfg")
        await client.propose({"op": "put", "key": "x", "value": 0}, timeout=15)
        leader = client.leader
        assert leader is not None
        index = int(leader.split("-")[1]) - 1
        writer = Writer(client)
        task = asyncio.create_task(writer.run())
        await writer.commits(20)
        at = asyncio.get_running_loop().time()
        stopped_at = writer.ends[-1]
        cluster.procs[index].signal(signal.SIGTERM)
        assert await asyncio.to_thread(cluster.procs[index].wait, 30) == 0
        await writer.commits(20)
        writer.stop.set()
        await task
        assert writer.failures == [], writer.failures
        assert client.leader != leader
        await cluster.restart(index)
        await client.propose({"op": "put", "key": "x", "value": 1}, timeout=15)
        print(f"planned restart of {leader}'s node: longest commit gap "
              f"{longest_gap(writer.ends, stopped_at) * 1e3:.1f} ms "
              f"(stop took {asyncio.get_running_loop().time() - at:.1f} s)")
    finally:
        await nc.close()
        await asyncio.to_thread(cluster.stop)
