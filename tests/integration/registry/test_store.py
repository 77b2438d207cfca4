"""Durable writes: create fails on an existing id, CAS updates never lose an update."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker_agents.codec import encode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.registry.record import AgentRecord, Health
from broker_agents.registry.store import RegistryStore
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.integration.registry.helpers import agent
from tests.secured import connect_as


async def test_register_then_get_round_trips_with_revision(nc: Any) -> None:
    store = await RegistryStore.open(nc)
    rev = await store.register(agent("a1", capabilities=["x"], resources={"m": 0.5}))
    got = await store.get("a1")
    assert got is not None and got[1] == rev
    assert got[0].capabilities == ["x"] and got[0].resources == {"m": 0.5}


async def test_registering_an_existing_id_fails_with_already_exists(nc: Any) -> None:
    store = await RegistryStore.open(nc)
    await store.register(agent("a1"))
    with pytest.raises(BrokerError) as info:
        await store.register(agent("a1", node_id="n2"))
    assert info.value.code == ErrorCode.ALREADY_EXISTS
    got = await store.get("a1")
    assert got is not None and got[0].node_id == "n1"


async def test_unregistered_id_can_be_registered_again(nc: Any) -> None:
    store = await RegistryStore.open(nc)
    await store.register(agent("a1"))
    await store.unregister("a1")
    assert await store.get("a1") is None
    await store.register(agent("a1", node_id="n2"))
    got = await store.get("a1")
    assert got is not None and got[0].node_id == "n2"


async def test_update_of_missing_agent_is_not_found(nc: Any) -> None:
    store = await RegistryStore.open(nc)
    with pytest.raises(BrokerError) as info:
        await store.patch("ghost", {"health": "degraded"})
    assert info.value.code == ErrorCode.NOT_FOUND


async def test_patch_validates_the_merged_record(nc: Any) -> None:
    store = await RegistryStore.open(nc)
    await store.register(agent("a1"))
    with pytest.raises(BrokerError) as info:
        await store.patch("a1", {"health": "sick"})
    assert info.value.code == ErrorCode.VALIDATION
    record, _ = await store.patch("a1", {"health": "degraded"})
    assert record.health is Health.DEGRADED


async def test_two_writers_racing_on_one_record_lose_no_update(nats_server: NatsServer) -> None:
    """Two connections each add 30 distinct resources concurrently; all 60 survive."""
    conns = [await connect_as(nats_server, Role.NODE) for _ in range(2)]
    try:
        stores = [await RegistryStore.open(c, max_attempts=200) for c in conns]
        await stores[0].register(agent("shared"))

        def adder(name: str):  # type: ignore[no-untyped-def]
            def mutate(record: AgentRecord) -> AgentRecord:
                return record.model_copy(update={"resources": {**record.resources, name: 1.0}})
            return mutate

        async def writer(store: RegistryStore, who: str) -> None:
            for i in range(30):
                await store.update("shared", adder(f"{who}{i}"))

        await asyncio.gather(writer(stores[0], "a"), writer(stores[1], "b"))
        got = await stores[1].get("shared")
        assert got is not None
        assert sorted(got[0].resources) == sorted([f"a{i}" for i in range(30)]
                                                  + [f"b{i}" for i in range(30)])
    finally:
        for c in conns:
            await c.close()


async def test_update_gives_up_with_conflict_after_bounded_attempts(nc: Any) -> None:
    """A writer that always sneaks in between our read and our CAS makes us give up."""
    store = await RegistryStore.open(nc, max_attempts=3)
    await store.register(agent("a1"))
    real_update = store.agents.update
    sneaks = 0

    async def racing_update(key: str, value: bytes, last: int | None = None) -> int:
        nonlocal sneaks
        sneaks += 1
        await store.agents.put(key, encode(agent(key, metadata={"sneak": sneaks})))
        return await real_update(key, value, last=last)

    store.agents.update = racing_update  # type: ignore[method-assign]
    with pytest.raises(BrokerError) as info:
        await store.update("a1", lambda r: r.model_copy(update={"name": "mine"}))
    assert info.value.code == ErrorCode.CONFLICT and info.value.details["attempts"] == 3
    assert sneaks == 3
