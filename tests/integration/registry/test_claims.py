"""Claiming agent ids against a real nats-server: create wins once, a live holder refuses,
a dead holder's id (or garbage under the key) is taken over with compare-and-set."""

from __future__ import annotations

import asyncio
import time

from nats.aio.client import Client as NATS

from broker_agents.codec import encode
from broker_agents.core.registry.record import NodeRecord
from broker_agents.registry.claims import ClaimOutcome, claim, release
from broker_agents.registry.store import RegistryStore
from tests.integration.registry.helpers import agent

WINDOW = 5.0


async def beat(store: RegistryStore, node_id: str, age: float = 0.0,
               stopping: bool = False) -> None:
    now = time.time()
    await store.heartbeat(NodeRecord(node_id=node_id, last_heartbeat=now - age,
                                     started_at=now - age, stopping=stopping))


async def test_concurrent_claims_of_one_id_have_exactly_one_winner(nc: NATS) -> None:
    store = await RegistryStore.open(nc)
    nodes = [f"n{i}" for i in range(6)]
    for node in nodes:
        await beat(store, node)
    claims = await asyncio.gather(*(claim(store, "echo-1", "EchoAgent", n, window=WINDOW)
                                    for n in nodes))
    won = [c for c in claims if c.won]
    assert [c.outcome for c in won] == [ClaimOutcome.CREATED]
    stored = await store.get("echo-1")
    assert stored is not None and stored[0].node_id in nodes
    winner = stored[0].node_id
    assert {c.holder for c in claims if not c.won} == {winner}
    assert all(c.error().code == "already_exists" for c in claims if not c.won)


async def test_a_node_reclaims_its_own_record(nc: NATS) -> None:
    store = await RegistryStore.open(nc)
    await beat(store, "n1")
    await store.register(agent("echo-1", "n1"))
    got = await claim(store, "echo-1", "EchoAgent", "n1", window=WINDOW)
    assert got.outcome is ClaimOutcome.RECLAIMED


async def test_a_dead_or_stopping_holders_id_is_taken_over(nc: NATS) -> None:
    store = await RegistryStore.open(nc)
    await beat(store, "silent", age=2 * WINDOW)
    await beat(store, "leaving", stopping=True)
    for i, holder in enumerate(["silent", "leaving", "never-beat"]):
        await store.register(agent(f"a{i}", holder))
        got = await claim(store, f"a{i}", "EchoAgent", "n2", window=WINDOW)
        assert (got.outcome, got.holder) == (ClaimOutcome.TAKEN_OVER, holder)
        stored = await store.get(f"a{i}")
        assert stored is not None and stored[0].node_id == "n2"


async def test_garbage_under_the_key_is_taken_over(nc: NATS) -> None:
    store = await RegistryStore.open(nc)
    await store.agents.put("echo-1", b"\xc1 not a record")
    await store.agents.put("echo-2", encode(agent("someone-else").model_dump()))
    for agent_id in ("echo-1", "echo-2"):
        got = await claim(store, agent_id, "EchoAgent", "n2", window=WINDOW)
        assert got.outcome is ClaimOutcome.TAKEN_OVER and got.holder is None


async def test_a_live_holder_refuses_and_a_released_claim_frees_the_id(nc: NATS) -> None:
    store = await RegistryStore.open(nc)
    await beat(store, "n1")
    first = await claim(store, "echo-1", "EchoAgent", "n1", window=WINDOW)
    refused = await claim(store, "echo-1", "EchoAgent", "n2", window=WINDOW)
    assert (refused.outcome, refused.holder) == (ClaimOutcome.REFUSED, "n1")
    await release(store, first)
    again = await claim(store, "echo-1", "EchoAgent", "n2", window=WINDOW)
    assert again.outcome is ClaimOutcome.CREATED
