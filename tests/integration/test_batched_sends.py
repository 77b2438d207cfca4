"""One-way sends coalesced into batch frames, against a real nats-server: every entry
reaches the handler in order, each counts against the quota, and a request to the same
agent never overtakes the sends queued before it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import BaseModel

from broker_agents import batching
from broker_agents.agent import Agent, handler
from broker_agents.quota import AgentQuota
from broker_agents.runtime import AgentRunner
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.secured import connect_as

S = Subjects()


class Note(BaseModel):
    message_type: ClassVar[str] = "note"
    seq: int


class Count(BaseModel):
    message_type: ClassVar[str] = "count"


class Sink(Agent):
    """Records the notes it gets; answers how many so far."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(agent_id)
        self.seen: list[int] = []
        self.arrived = asyncio.Event()
        self.expect = 0

    @handler(Note)
    async def note(self, msg: Note) -> None:
        self.seen.append(msg.seq)
        if len(self.seen) >= self.expect:
            self.arrived.set()

    @handler(Count)
    async def count(self, msg: Count) -> int:
        return len(self.seen)


class Sender(Agent):
    pass


async def start(nc: NATS, agent: Agent, **kwargs: Any) -> tuple[AgentRunner, asyncio.Task[None]]:
    runner = AgentRunner(agent, nc, node_id="n", subjects=S, **kwargs)
    ready = asyncio.Event()
    task = asyncio.create_task(runner.run(ready.set))
    async with asyncio.timeout(5):
        await ready.wait()
    return runner, task


@pytest.fixture
async def pair(nats_server: NatsServer) -> AsyncIterator[tuple[NATS, NATS]]:
    a = await connect_as(nats_server, Role.NODE)
    b = await connect_as(nats_server, Role.NODE)
    yield a, b
    await a.close()
    await b.close()


async def test_a_burst_arrives_whole_and_in_order_in_few_frames(
        pair: tuple[NATS, NATS]) -> None:
    a, b = pair
    sink = Sink("sink")
    sink.expect = 1000
    frames: list[int] = []

    async def spy(msg: Msg) -> None:
        frames.append(int((msg.headers or {}).get(batching.HEADER, 1)))

    await b.subscribe(S.agent("sink"), cb=spy)
    runners = [await start(b, sink, quota=AgentQuota.unlimited()),
               await start(a, Sender("sender"))]
    ctx = runners[1][0].ctx
    for i in range(1000):
        await ctx.send("sink", Note(seq=i))
    assert await ctx.request("sink", Count()) == 1000  # queued sends went first
    assert sink.seen == list(range(1000))
    assert sum(frames) == 1001 and len(frames) < 20 and frames[0] == 1  # and the request
    for runner, task in runners:
        runner.stop()
        await task


async def test_each_entry_counts_against_the_quota(pair: tuple[NATS, NATS]) -> None:
    a, b = pair
    sink = Sink("sink")
    sink.expect = 50
    runners = [await start(b, sink, quota=AgentQuota(rate=1, burst=50)),
               await start(a, Sender("sender"))]
    ctx = runners[1][0].ctx
    for i in range(200):
        await ctx.send("sink", Note(seq=i))
    await ctx.flush()
    async with asyncio.timeout(5):
        await sink.arrived.wait()
    await a.flush()
    await b.flush()
    assert sink.seen == list(range(50))  # the burst, not one entry more
    for runner, task in runners:
        runner.stop()
        await task
