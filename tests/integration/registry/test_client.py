"""The Registry facade: validated writes, local reads, watch, and 10,000 agents."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.registry.index import ChangeKind
from broker_agents.core.registry.query import matches, parse_criteria
from broker_agents.core.registry.record import AgentRecord, Health
from broker_agents.registry.client import Registry
from broker_agents.registry.view import LocalView


async def test_register_validates_and_fills_times(nc: Any) -> None:
    registry = await Registry.connect(nc)
    try:
        with pytest.raises(BrokerError) as info:
            await registry.register({"name": "x", "health": "sick"})
        assert info.value.code == ErrorCode.VALIDATION
        assert info.value.details["missing"] == ["agent_id", "node_id"]
        record = await registry.register({"agent_id": "a", "name": "a", "node_id": "n"})
        assert record.registered_at > 0 and record.last_heartbeat > 0
        with pytest.raises(BrokerError) as dup:
            await registry.register({"agent_id": "a", "name": "again", "node_id": "n"})
        assert dup.value.code == ErrorCode.ALREADY_EXISTS
        await registry.sync()
        assert registry.lookup("a") == record and registry.count() == 1
    finally:
        await registry.close()


async def test_health_changes_write_through_and_are_watched(nc: Any) -> None:
    registry = await Registry.connect(nc)
    try:
        await registry.register({"agent_id": "a", "name": "a", "node_id": "n"})
        await registry.sync()
        async with registry.watch() as changes:
            await registry.set_health("a", "degraded")
            change = await changes.get(timeout=5)
        assert change.kind is ChangeKind.UPDATED and change.record.health is Health.DEGRADED
        assert [r.agent_id for r in registry.find_by_health(Health.DEGRADED)] == ["a"]
        await registry.unregister("a")
        await registry.view.wait_for(lambda: registry.lookup("a") is None)
    finally:
        await registry.close()


async def test_ten_thousand_agents_queries_match_brute_force(nc: Any) -> None:
    rng = random.Random(7)
    caps = [f"c{i}" for i in range(50)]
    healths = list(Health)
    registry = await Registry.connect(nc)
    records = [
        AgentRecord(agent_id=f"a{i:05d}", name="x", node_id=f"n{rng.randrange(20)}",
                    capabilities=rng.sample(caps, 2), health=rng.choice(healths),
                    resources={"memory_available": round(rng.random(), 3),
                               "cpu_usage": round(rng.random(), 3)},
                    metadata={"zone": rng.choice(["eu", "us"])}, registered_at=1.0)
        for i in range(10_000)
    ]
    try:
        sem = asyncio.Semaphore(256)

        async def put(record: AgentRecord) -> None:
            async with sem:
                await registry.store.register(record)

        await asyncio.gather(*(put(r) for r in records))
        other = await LocalView.open(nc)  # a second view built from a cold snapshot
        await registry.view.wait_for(lambda: len(registry.view) == 10_000, timeout=30)
        queries = [
            [["capability", "eq", "c3"], ["health", "eq", "healthy"]],
            [["capability", "in", ["c1", "c2"]], ["resources.cpu_usage", "lt", 0.2]],
            [["resources.memory_available", "gte", 0.9], ["metadata.zone", "eq", "eu"]],
            [["node_id", "eq", "n4"], ["health", "neq", "unhealthy"]],
            [["resources.cpu_usage", "gt", 0.5], ["resources.memory_available", "lte", 0.1]],
        ]
        for raw in queries:
            crits = parse_criteria(raw)
            expected = sorted(r.agent_id for r in records if matches(r, crits))
            assert expected, raw
            for view in (registry.view, other):
                assert [r.agent_id for r in view.query(crits)] == expected
        assert other.index.records == registry.view.index.records
        await other.stop()
    finally:
        await registry.close()
