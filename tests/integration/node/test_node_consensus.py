"""Consensus groups hosted by node daemons: commit, survive kill -9 of the leader's node."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import REGISTRY

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.raft import PersistOp
from broker_agents.raft.client import RaftClient
from node.cluster import LocalCluster
from node.config import ConfigError, load_config
from node.consensus import ConsensusNodeService
from node.daemon import Node
from tests.integration.raft.helpers import wait_for

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


async def test_member_that_fail_stops_makes_its_node_not_ready(tmp_path: Path) -> None:
    """A member whose log cannot be written (here: an entry that would not encode) stops
    loudly: it answers its waiters, counts, and /readyz says not ready and why."""
    config = load_config(None, node={"id": "n1", "data_dir": tmp_path, "shutdown_timeout": 10},
                         nats={"embedded": {"port": 0}}, http={"port": 0},
                         services={"consensus": {"groups": [
                             {"name": "solo", "members": ["n1"], "tick_ms": 5}]}})
    node = Node(config)
    await node.start()
    try:
        member = node.service_map["consensus"].group("solo")
        await wait_for(lambda: member.is_leader, what="the member to lead")
        assert (await member.propose({"op": "put", "key": "k", "value": 1}))["ok"]
        assert node.readiness()["ready"]
        labels = {"group": "solo", "member": "n1"}
        stops = REGISTRY.get_sample_value("ba_raft_fail_stops_total", labels) or 0.0

        def unwritable(ops: Sequence[PersistOp]) -> None:
            raise OverflowError("Integer value out of range")

        member.storage.save = unwritable  # type: ignore[method-assign]
        with pytest.raises(BrokerError) as info:
            await member.propose({"op": "put", "key": "k", "value": 2}, timeout=5)
        assert info.value.code == ErrorCode.UNAVAILABLE
        assert member.failed is not None and "OverflowError" in member.failed
        assert REGISTRY.get_sample_value("ba_raft_fail_stops_total", labels) == stops + 1
        state = node.readiness()
        assert not state["ready"] and "OverflowError" in state["problems"]["consensus.solo"]
        assert node.http is not None
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{node.http.port}/readyz") as resp:
            assert resp.status == 503
            assert "consensus.solo" in json.loads(await resp.text())["problems"]
    finally:
        await node.shutdown()
