"""Agent ids are unique cluster-wide: a node does not host an id a live node holds.

Real node processes over one secured nats-server. "One responder" is read from the
server's own monitoring (``/connz?subs=detail``): which connections subscribe to
``ba.agent.<id>``, after every node said it is ready (agents subscribe before that).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broker_agents import codec
from broker_agents.core.registry.record import AgentRecord
from broker_agents.messages import envelope
from broker_agents.registry.client import Registry
from broker_agents.samples import Echo
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.cluster import LocalCluster
from node.config import load_config
from node.embedded import NatsServer
from node.hosting import planned_agents

S = Subjects()
REPO = Path(__file__).resolve().parents[3]
ECHO = {"class": "broker_agents.samples:EchoAgent", "id": "echo-1"}
OTHER = {"class": "broker_agents.samples:EchoAgent", "id": "echo-2"}


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def http(port: int, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(_get, f"http://127.0.0.1:{port}{path}")


async def subscribers(cluster: LocalCluster, subject: str) -> list[str]:
    """Names of the connections that subscribe to exactly ``subject``."""
    assert isinstance(cluster.nats, NatsServer)
    _, body = await asyncio.to_thread(
        _get, f"http://127.0.0.1:{cluster.nats.monitor_port}/connz?subs=1&limit=1024")
    return sorted(c.get("name", "") for c in json.loads(body)["connections"]
                  if subject in c.get("subscriptions_list", []))


async def record_of(cluster: LocalCluster, agent_id: str) -> AgentRecord | None:
    nc = await cluster.client(Role.OBSERVER)
    try:
        registry = await Registry.connect(nc)
        try:
            found = await registry.store.get(agent_id)
        finally:
            await registry.close()
    finally:
        await nc.close()
    return found[0] if found else None


def add_node(cluster: LocalCluster, agents: list[dict[str, Any]],
             registry: dict[str, Any] | None = None) -> int:
    """Plan one more node (not started yet); returns its index."""
    assert cluster.agents is not None
    cluster.agents.append(agents)
    cluster.nodes += 1
    proc = cluster._node(cluster.nodes)
    if registry is not None:
        proc.env["BA_SERVICES"] = json.dumps({"registry": registry})
    cluster.procs.append(proc)
    return cluster.nodes - 1


async def assert_refused(cluster: LocalCluster, index: int, holder: str) -> None:
    """Node ``index`` runs but does not host echo-1, and says so (readiness, metric, log)."""
    port = cluster.procs[index].http_port
    status, body = await http(port, "/readyz")
    ready = json.loads(body)
    assert status == 200, body
    assert "already_exists" in ready["agents_failed"]["echo-1"], ready
    assert holder in ready["agents_failed"]["echo-1"]
    _, metrics = await http(port, "/metrics")
    assert 'ba_registry_claims_total{outcome="refused"} 1.0' in metrics
    log = cluster.procs[index].log_path.read_text()
    assert "agent id held by a live node" in log


@pytest.fixture
async def one_node(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path, nodes=1, agents=[[ECHO]])
    await c.start()
    yield c
    await asyncio.to_thread(c.stop)


async def test_a_second_node_is_refused_the_id_and_there_is_one_responder(
        one_node: LocalCluster) -> None:
    second = add_node(one_node, [ECHO, OTHER])
    await one_node.restart(second)  # spawns it and waits for its ready event
    assert await subscribers(one_node, S.agent("echo-1")) == ["ba-node-node-1"]
    assert await subscribers(one_node, S.agent("echo-2")) == ["ba-node-node-2"]
    await assert_refused(one_node, second, "node-1")
    record = await record_of(one_node, "echo-1")
    assert record is not None and record.node_id == "node-1"
    nc = await one_node.client()
    reply = await nats_request(nc, S.agent("echo-1"), codec.encode(envelope(Echo(text="x"))),
                               timeout=5)
    assert codec.decode(reply.data)["node_id"] == "node-1"
    await nc.close()


async def test_on_duplicate_id_fail_stops_the_start_with_exit_2(
        one_node: LocalCluster) -> None:
    second = add_node(one_node, [OTHER, ECHO], registry={"on_duplicate_id": "fail"})
    proc = one_node.procs[second]
    proc.spawn(None)
    code = await asyncio.to_thread(proc.wait, 30)
    assert code == 2
    log = proc.log_path.read_text()
    assert "already_exists" in log and "Traceback" not in log
    assert await subscribers(one_node, S.agent("echo-2")) == []
    assert await record_of(one_node, "echo-2") is None  # its claim was released
    record = await record_of(one_node, "echo-1")
    assert record is not None and record.node_id == "node-1"


async def test_a_restarted_node_reclaims_its_ids(one_node: LocalCluster) -> None:
    one_node.kill(0)  # kill -9: its records and its fresh heartbeat stay behind
    await one_node.restart(0)
    status, body = await http(one_node.procs[0].http_port, "/readyz")
    assert status == 200 and json.loads(body)["agents_failed"] == {}, body
    assert await subscribers(one_node, S.agent("echo-1")) == ["ba-node-node-1"]
    _, metrics = await http(one_node.procs[0].http_port, "/metrics")
    assert 'ba_registry_claims_total{outcome="reclaimed"} 1.0' in metrics


async def test_simultaneous_starts_have_one_winner(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, nodes=3, agents=[[ECHO], [ECHO], [ECHO]])
    await c.start()  # spawns all three, then waits for them
    try:
        holders = await subscribers(c, S.agent("echo-1"))
        assert len(holders) == 1, holders
        winner = holders[0].removeprefix("ba-node-")
        record = await record_of(c, "echo-1")
        assert record is not None and record.node_id == winner
        for index, proc in enumerate(c.procs):
            if proc.node_id != winner:
                await assert_refused(c, index, winner)
    finally:
        await asyncio.to_thread(c.stop)


def test_the_compose_nodes_are_distinct_nodes_with_their_own_ids() -> None:
    """docker/compose.yaml ran every node on one config: every request ran three times."""
    configs = [load_config(p) for p in sorted((REPO / "docker/nodes").glob("node-*.toml"))]
    assert [c.node.id for c in configs] == ["node-1", "node-2", "node-3"]
    ids = [agent_id for c in configs for agent_id, _ in planned_agents(c)]
    assert len(ids) == len(set(ids)) == 6, ids
    compose = (REPO / "docker/compose.yaml").read_text()
    for c in configs:
        assert f"/etc/broker-agents/{c.node.id}.toml" in compose
