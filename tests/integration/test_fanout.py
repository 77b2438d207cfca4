"""Node-level group fan-out: one publish, every node delivers to the participants it hosts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from nats.aio.client import Client as NATS

from broker_agents import codec, fanout
from broker_agents.agent import handler
from broker_agents.core.errors import BrokerError
from broker_agents.gather import ask_all, gatherer
from broker_agents.messages import envelope
from broker_agents.metrics import MESSAGES_IN
from broker_agents.samples import Echo, EchoAgent, EchoReply
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.integration.test_runtime import Hosted
from tests.secured import connect_as

S = Subjects()


@pytest.fixture
async def nodes(nats_server: NatsServer) -> AsyncIterator[tuple[Hosted, Hosted]]:
    """Two nodes' connections, each hosting agents with fan-out delivery on."""
    a = Hosted(await connect_as(nats_server, Role.NODE))
    b = Hosted(await connect_as(nats_server, Role.NODE))
    yield a, b
    for h in (a, b):
        await h.stop_all()
        await h.nc.close()


def fanned(agent_id: str) -> float:
    return MESSAGES_IN.labels(agent_id, "fanout").value


async def test_known_participants_are_asked_with_one_fanout_publish(
        nodes: tuple[Hosted, Hosted]) -> None:
    a, b = nodes
    for i in range(3):
        await a.add(EchoAgent(f"fa-{i}"), fanout=True)
        await b.add(EchoAgent(f"fb-{i}"), fanout=True)
    ids = [f"fa-{i}" for i in range(3)] + [f"fb-{i}" for i in range(3)]
    out_before = a.nc.stats["out_msgs"]
    first = await ask_all(a.nc, S, ids, Echo(text="hi"), 5)  # first contact: inboxes
    # a's own agents got the ask in-process, b's three by their inboxes
    assert [fanned(i) for i in ids] == [1, 1, 1, 0, 0, 0]
    assert a.nc.stats["out_msgs"] - out_before == 3
    out_before, b_before = a.nc.stats["out_msgs"], b.nc.stats["out_msgs"]
    second = await ask_all(a.nc, S, ids, Echo(text="hi"), 5)
    assert second == first  # the same answers a direct message gets
    assert {k: v["agent_id"] for k, v in second.items()  # type: ignore[index]
            } == {i: i for i in ids}
    assert [fanned(i) for i in ids] == [2, 2, 2, 1, 1, 1]
    # one ask for b's three participants (a's own get it in-process and answer straight
    # into the call), and b's three answers in one batch
    assert a.nc.stats["out_msgs"] - out_before == 1
    assert b.nc.stats["out_msgs"] - b_before == 1


async def test_unhosted_participant_is_unavailable_at_once_and_a_gone_one_times_out(
        nodes: tuple[Hosted, Hosted]) -> None:
    a, b = nodes
    await a.add(EchoAgent("g-1"), fanout=True)
    await b.add(EchoAgent("g-2"), fanout=True)
    await b.add(EchoAgent("g-3"), fanout=True)
    ids = ["g-1", "g-2", "g-3", "ghost"]
    await ask_all(a.nc, S, ids, Echo(text="x"), 5)
    started = time.perf_counter()
    out = await ask_all(a.nc, S, ids, Echo(text="x"), 5)
    assert isinstance(out["ghost"], BrokerError) and out["ghost"].code == "unavailable"
    assert time.perf_counter() - started < 4  # nobody waited for the deadline
    b.runners["g-2"].stop()
    await b.tasks["g-2"]
    out = await ask_all(a.nc, S, ids, Echo(text="x"), 0.5)  # known, gone: its deadline
    assert isinstance(out["g-2"], BrokerError) and out["g-2"].code == "timeout"
    assert "g-2" not in (await gatherer(a.nc)).reached
    out = await ask_all(a.nc, S, ids, Echo(text="x"), 5)  # asked at its inbox again
    assert isinstance(out["g-2"], BrokerError) and out["g-2"].code == "unavailable"
    assert not isinstance(out["g-1"], BrokerError)


async def test_a_client_connection_keeps_the_per_inbox_path(
        nodes: tuple[Hosted, Hosted], nc: NATS) -> None:
    a, _ = nodes
    for i in range(2):
        await a.add(EchoAgent(f"c-{i}"), fanout=True)
    ids = ["c-0", "c-1"]
    for _ in range(2):
        out = await ask_all(nc, S, ids, Echo(text="c"), 5)
        assert not any(isinstance(v, BrokerError) for v in out.values())
    assert not fanout.hosts(nc)
    assert all(fanned(i) == 0 for i in ids)


async def test_a_stopped_agent_leaves_its_hosts_fanout_table(
        nodes: tuple[Hosted, Hosted]) -> None:
    a, _ = nodes
    await a.add(EchoAgent("s-1"), fanout=True)
    assert "s-1" in fanout.host(a.nc, S).agents
    a.runners["s-1"].stop()
    await a.tasks["s-1"]
    assert "s-1" not in fanout.host(a.nc, S).agents


class GatedEcho(EchoAgent):
    """A sequential handler that waits for the test's go before answering."""

    def __init__(self, agent_id: str, gate: asyncio.Event, **config: Any) -> None:
        super().__init__(agent_id, **config)
        self.gate = gate

    @handler(Echo)
    async def echo(self, msg: Echo) -> EchoReply:
        await self.gate.wait()
        return EchoReply(text=msg.text, agent_id=self.agent_id, node_id=self.ctx.node_id)


class ManyEcho(EchoAgent):
    max_concurrency: ClassVar[int] = 4  # answers from its own task, after the loop


async def test_an_early_answer_does_not_wait_for_a_slow_handler_on_its_node(
        nodes: tuple[Hosted, Hosted]) -> None:
    a, b = nodes
    gate = asyncio.Event()
    await b.add(EchoAgent("q-0"), fanout=True)
    await b.add(GatedEcho("q-1", gate), fanout=True)
    await b.add(ManyEcho("q-2"), fanout=True)
    await b.add(EchoAgent("q-3"), fanout=True)
    await a.add(EchoAgent("q-a"), fanout=True)  # so that a's gatherer asks by fan-out
    ids = ["q-0", "q-1", "q-2", "q-3"]
    g = await gatherer(a.nc)
    gate.set()
    await ask_all(a.nc, S, ids, Echo(text="first"), 5)  # first contact: inboxes
    gate.clear()
    in_before = a.nc.stats["in_msgs"]
    async with g.call(S, ids, codec.encode(envelope(Echo(text="x")))) as call:
        async with asyncio.timeout(5):  # q-0 answered while q-1 still waits for the gate
            while not call.answers:
                await call.wait(0.05)
        assert [agent for agent, _ in call.take()] == ["q-0"]
        gate.set()
        assert await call.wait(5)
        assert {agent for agent, _ in call.take()} == {"q-1", "q-2", "q-3"}
    assert all(fanned(i) == 1 for i in ids)
    # the ask (a hosts agents too), q-0 alone before the gate, q-1 and q-3 in one batch
    # when the delivery loop ended, q-2 alone from its own task
    assert a.nc.stats["in_msgs"] - in_before == 1 + 3
