"""Consensus groups hosted by node daemons: commit, survive kill -9 of the leader's node."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from broker_agents.raft.client import RaftClient
from node.cluster import LocalCluster
from node.config import ConfigError
from node.consensus import ConsensusNodeService

GROUP = {"name": "cfg", "members": ["node-1", "node-2", "node-3"]}


def test_bad_group_config_is_a_config_error_naming_the_problem() -> None:
    from node.services import build_services

    try:
        build_services({"consensus": {"groups": [{"name": "a.b", "members": ["x", "x"]}]}})
    except ConfigError as exc:
        assert "services.consensus" in str(exc) and "name" in str(exc)
    else:
        raise AssertionError("expected a ConfigError")
    assert ConsensusNodeService([GROUP]).groups[0].members == GROUP["members"]


async def test_group_on_three_nodes_commits_and_survives_leader_kill(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, nodes=3, services={"consensus": {"groups": [GROUP]}})
    await cluster.start()
    nc = await cluster.client()
    try:
        client = RaftClient(nc, "cfg")
        acked = []
        for i in range(20):
            result = await client.propose({"op": "put", "key": f"k{i}", "value": i})
            assert result["ok"]
            acked.append(i)
        leader = client.leader
        assert leader in GROUP["members"]
        cluster.kill(int(leader.split("-")[1]) - 1)
        started = time.monotonic()
        result = await client.propose({"op": "put", "key": "after", "value": "kill"},
                                      timeout=10)
        failover = time.monotonic() - started
        assert result["ok"] and client.leader != leader
        assert failover < 2.0, f"next commit took {failover:.2f}s after the leader died"
        for i in acked:
            assert (await client.read({"op": "get", "key": f"k{i}"}))["value"] == i
        await cluster.restart(int(leader.split("-")[1]) - 1)
        # The restarted member catches up: ask it directly (a read-index read on it).
        member = RaftClient(nc, "cfg")
        member.leader = leader
        got = await member.read({"op": "get", "key": "after"}, timeout=10)
        assert got["value"] == "kill"
    finally:
        await nc.close()
        await asyncio.to_thread(cluster.stop)
