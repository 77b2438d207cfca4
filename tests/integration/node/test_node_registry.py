"""Node daemons write the registry: live agents appear, restarts degrade, deaths are reaped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from broker_agents import codec
from broker_agents.core.registry.record import AgentRecord
from broker_agents.messages import envelope
from broker_agents.registry.client import Registry
from broker_agents.samples import Crash
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.cluster import LocalCluster

S = Subjects()
FAST_LIVENESS = {"registry": {"heartbeat_interval": 0.2, "window": 1.0, "grace": 0.5,
                              "reap_interval": 0.2}}
AGENTS: list[list[dict[str, Any]]] = [
    [{"class": "broker_agents.samples:EchoAgent", "id": "echo-a",
      "kwargs": {"resources": {"memory_available": 0.7}}},
     {"class": "broker_agents.samples:WorkerAgent", "id": "worker"}],
    [{"class": "broker_agents.samples:EchoAgent", "id": "echo-b"},
     {"class": "broker_agents.samples:CalculatorAgent", "id": "calc"}],
]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path, nodes=2, agents=AGENTS, services=FAST_LIVENESS)
    await c.start()
    yield c
    await asyncio.to_thread(c.stop)


@pytest.fixture
async def registry(cluster: LocalCluster) -> AsyncIterator[Registry]:
    nc = await cluster.client(Role.OBSERVER)  # a registry view reads the bucket
    reg = await Registry.connect(nc)
    yield reg
    await reg.close()
    await nc.close()


async def until(reg: Registry, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    await reg.view.wait_for(predicate, timeout)


async def test_hosted_agents_are_registered_with_capabilities_and_resources(
        registry: Registry) -> None:
    await until(registry, lambda: registry.count() == 4)
    echo = registry.lookup("echo-a")
    assert isinstance(echo, AgentRecord)
    assert echo.node_id == "node-1" and echo.capabilities == ["echo"]
    assert echo.health == "healthy" and echo.state == "running"
    assert echo.resources == {"memory_available": 0.7}
    assert {r.agent_id for r in registry.find_by_capability("echo")} == {"echo-a", "echo-b"}
    assert {r.agent_id for r in registry.find_by_node("node-2")} == {"echo-b", "calc"}


async def test_registry_queries_answer_non_python_clients_over_nats(
        cluster: LocalCluster, registry: Registry) -> None:
    await until(registry, lambda: registry.count() == 4)
    nc = await cluster.client()
    reply = await nats_request(nc, S.registry("find"), b'{"capability": "math"}', timeout=5)
    got = codec.decode(reply.data)
    assert [a["agent_id"] for a in got["agents"]] == ["calc"]
    await nc.close()


async def test_a_restarted_agent_is_degraded_then_healthy_again(
        cluster: LocalCluster, registry: Registry) -> None:
    await until(registry, lambda: registry.count() == 4)
    seen: list[str] = []
    unsubscribe = registry.subscribe(
        lambda change: seen.append(change.record.health)
        if change.kind != "removed" and change.agent_id == "worker" else None)
    nc = await cluster.client()
    await nats_request(nc, S.agent("worker"), codec.encode(envelope(Crash())), timeout=5)
    await until(registry, lambda: seen[-2:] == ["degraded", "healthy"])
    unsubscribe()
    await nc.close()


async def test_graceful_node_stop_deregisters_its_agents_at_once(
        cluster: LocalCluster, registry: Registry) -> None:
    await until(registry, lambda: registry.count() == 4)
    cluster.procs[1].signal(15)
    assert await asyncio.to_thread(cluster.procs[1].wait, 20) == 0
    await until(registry, lambda: registry.find_by_node("node-2") == [])
    assert registry.count() == 2


async def test_killed_node_agents_turn_unhealthy_then_vanish(
        cluster: LocalCluster, registry: Registry) -> None:
    await until(registry, lambda: registry.count() == 4)
    healths: dict[str, list[str]] = {"echo-b": [], "calc": []}

    def on_change(change: Any) -> None:
        if change.agent_id in healths:
            healths[change.agent_id].append(
                "gone" if change.kind == "removed" else change.record.health)

    registry.subscribe(on_change)
    cluster.kill(1)
    await until(registry, lambda: registry.find_by_node("node-2") == [], timeout=15)
    assert all(h[-2:] == ["unhealthy", "gone"] for h in healths.values()), healths
    assert {r.agent_id for r in registry.list()} == {"echo-a", "worker"}
