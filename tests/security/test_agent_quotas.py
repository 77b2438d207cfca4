"""A flood on one agent costs that agent's quota, not its node (issue 13, "one flood").

Each attack runs as a plain client (``agent.*`` is a client's to publish) against agents
hosted like a node hosts them, and ends refused with a structured ``rate_limited`` error
(or, for one-way messages, dropped and counted) while the agent's neighbours answer.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from broker_agents import codec
from broker_agents.agent import Agent, handler
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.messages import envelope
from broker_agents.quota import AgentQuota
from broker_agents.runtime import AgentRunner
from broker_agents.samples import Echo
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.cluster import LocalCluster
from tests.conftest import Connect

S = Subjects()


def refused(agent: str, reason: str) -> float:
    return REGISTRY.get_sample_value("ba_agent_rate_limited_total",
                                     {"agent": agent, "reason": reason}) or 0.0


class Replies:
    """Answers to requests published without waiting, on one inbox."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.inbox = nc.new_inbox()
        self.got: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def start(self) -> Replies:
        async def on_reply(msg: Msg) -> None:
            self.got.append(codec.decode(msg.data, msg.headers))
            self.changed.set()

        await self.nc.subscribe(f"{self.inbox}.>", cb=on_reply, pending_msgs_limit=1_000_000)
        await self.nc.flush()
        return self

    async def until(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.got) < count:
                self.changed.clear()
                await self.changed.wait()

    def errors(self) -> list[BrokerError]:
        return [e for e in map(BrokerError.from_payload, self.got) if e is not None]


# -- the flood, against a node process ------------------------------------------------

AGENTS: list[list[dict[str, Any]]] = [[{"class": "broker_agents.samples:EchoAgent", "id": "flooded",
            "limits": {"rate": 100, "burst": 100}},
           {"class": "broker_agents.samples:EchoAgent", "id": "steady"}]]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path, nodes=1, agents=AGENTS)
    await c.start()
    yield c
    await asyncio.to_thread(c.stop)


def rate_limited_counts(port: int) -> dict[tuple[str, str], float]:
    """``ba_agent_rate_limited_total`` of a node process, by (agent, reason)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    counts = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "ba_agent_rate_limited_total":
                counts[sample.labels["agent"], sample.labels["reason"]] = sample.value
    return counts


async def test_a_flood_on_one_agent_is_refused_while_its_neighbour_answers(
        node: LocalCluster) -> None:
    flooder = await node.client(Role.CLIENT)
    asker = await node.client(Role.CLIENT)
    try:  # closed here, before the fixture stops the server: left open, they went on
        # reconnecting, and the test loop's teardown once hung waiting for their tasks
        await _flood(node, flooder, asker)
    finally:
        await flooder.close()
        await asker.close()


async def _flood(node: LocalCluster, flooder: NATS, asker: NATS) -> None:
    replies = await Replies(flooder).start()
    flood = codec.encode(envelope(Echo(text="x" * 64)))
    probe = codec.encode(envelope(Echo(text="still here")))
    sent = 0
    for _ in range(10):
        for _ in range(2000):
            await flooder.publish(S.agent("flooded"), flood, reply=f"{replies.inbox}.{sent}")
            sent += 1
        # the neighbour answers within a request's normal timeout, during the flood
        got = codec.decode((await nats_request(asker, S.agent("steady"), probe,
                                               timeout=5)).data)
        assert got == {"text": "still here", "agent_id": "steady", "node_id": "node-1"}
    await flooder.flush()
    await replies.until(1000)
    limited = [e for e in replies.errors() if e.code == ErrorCode.RATE_LIMITED]
    assert limited, replies.got[:3]
    assert {e.details["agent"] for e in limited} == {"flooded"}
    assert all(e.details["retry_after_ms"] >= 1 for e in limited)
    answered = [r for r in replies.got if r.get("agent_id") == "flooded"]
    assert answered  # its burst was served: refused is over quota, not broken
    counted = await asyncio.to_thread(rate_limited_counts, node.procs[0].http_port)
    assert counted[("flooded", "rate")] + counted[("flooded", "queue")] >= len(limited)
    assert counted[("steady", "rate")] == counted[("steady", "queue")] == 0
    ready = json.loads(await asyncio.to_thread(
        lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{node.procs[0].http_port}/readyz", timeout=5).read()))
    assert ready["ready"] and ready["agents_running"] == 2


# -- one-way messages and the backlog, against agents hosted in-process ------------------

class Gate(BaseModel):
    message_type: ClassVar[str] = "gate"
    n: int


class GatedAgent(Agent):
    """Handles one message at a time, each only once the test opens the gate."""

    def __init__(self, agent_id: str, **kwargs: Any) -> None:
        super().__init__(agent_id, **kwargs)
        self.opened = asyncio.Event()
        self.entered = asyncio.Event()
        self.handled: list[int] = []

    @handler(Gate)
    async def gate(self, msg: Gate) -> dict[str, int]:
        self.entered.set()
        await self.opened.wait()
        self.handled.append(msg.n)
        return {"n": msg.n}


@pytest.fixture
async def hosted(connect: Connect) -> AsyncIterator[list[AgentRunner]]:
    runners: list[AgentRunner] = []
    yield runners
    for runner in runners:
        runner.stop()


async def host(runners: list[AgentRunner], nc: NATS, agent: Agent,
               quota: AgentQuota) -> AgentRunner:
    runner = AgentRunner(agent, nc, node_id="test-node", subjects=S, quota=quota)
    ready = asyncio.Event()
    asyncio.create_task(runner.run(ready.set))  # noqa: RUF006 - stopped by the fixture
    async with asyncio.timeout(5):
        await ready.wait()
    runners.append(runner)
    return runner


async def test_one_way_messages_over_the_rate_are_dropped_and_counted(
        connect: Connect, hosted: list[AgentRunner]) -> None:
    agent = GatedAgent("oneway")
    agent.opened.set()
    await host(hosted, await connect(Role.NODE), agent,
               AgentQuota(rate=0.001, burst=5, max_pending_msgs=0, max_pending_bytes=0))
    client = await connect(Role.CLIENT)
    before = refused("oneway", "rate")
    for n in range(20):
        await client.publish(S.agent("oneway"), codec.encode(envelope(Gate(n=n))))
    # a request after them (same publisher, same subscription: handled after them)
    got = codec.decode((await nats_request(client, S.agent("oneway"),
                                           codec.encode(envelope(Gate(n=99))),
                                           timeout=5)).data)
    err = BrokerError.from_payload(got)
    assert err is not None and err.code == ErrorCode.RATE_LIMITED
    assert err.details["reason"] == "rate" and err.details["retry_after_ms"] >= 1
    assert agent.handled == [0, 1, 2, 3, 4]
    assert refused("oneway", "rate") == before + 16


async def test_a_backlog_past_the_queue_quota_is_refused_not_handled(
        connect: Connect, hosted: list[AgentRunner]) -> None:
    agent = GatedAgent("gated")
    node_nc = await connect(Role.NODE)
    runner = await host(hosted, node_nc, agent, AgentQuota(rate=0, burst=1, max_pending_msgs=3))
    sentinel = asyncio.Event()

    async def on_sentinel(_: Msg) -> None:
        sentinel.set()

    # on the agent's connection: once this arrives, everything sent before it is queued
    await node_nc.subscribe(S.agent("sentinel"), cb=on_sentinel)
    await node_nc.flush()
    client = await connect(Role.CLIENT)
    replies = await Replies(client).start()
    before = refused("gated", "queue")
    for n in range(10):  # the first one blocks the agent; nine queue up behind it
        await client.publish(S.agent("gated"), codec.encode(envelope(Gate(n=n))),
                             reply=f"{replies.inbox}.{n}")
        if n == 0:
            await asyncio.wait_for(agent.entered.wait(), 5)
    await client.publish(S.agent("sentinel"), b"")
    await asyncio.wait_for(sentinel.wait(), 5)
    assert runner._subs[0].pending_msgs == 9
    agent.opened.set()
    await replies.until(10)
    limited = [e for e in replies.errors() if e.code == ErrorCode.RATE_LIMITED]
    assert {e.details["reason"] for e in limited} == {"queue"}
    # each refused while more than 3 waited behind it; the last ones were handled
    assert len(limited) == 5 and agent.handled == [0, 6, 7, 8, 9]
    assert refused("gated", "queue") == before + 5
