"""The agent runtime against a real nats-server: replies, errors, balancing, crashes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from broker_agents import codec
from broker_agents.agent import Agent
from broker_agents.core.errors import BrokerError
from broker_agents.messages import envelope
from broker_agents.runtime import AgentRunner
from broker_agents.samples import Calculate, CalculatorAgent, Crash, Echo, EchoAgent, WorkerAgent
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.secured import connect_as

S = Subjects()


class Hosted:
    """Agents running on their own connection, like a node would host them."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.runners: dict[str, AgentRunner] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def add(self, agent: Agent, **kwargs: Any) -> AgentRunner:
        runner = AgentRunner(agent, self.nc, node_id="test-node", subjects=S, **kwargs)
        ready = asyncio.Event()
        self.tasks[agent.agent_id] = asyncio.create_task(runner.run(ready.set))
        async with asyncio.timeout(5):
            await ready.wait()
        self.runners[agent.agent_id] = runner
        return runner

    async def stop_all(self) -> None:
        for runner in reversed(list(self.runners.values())):
            runner.stop()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


@pytest.fixture
async def host(nats_server: NatsServer) -> AsyncIterator[Hosted]:
    nc = await connect_as(nats_server, Role.NODE)
    hosted = Hosted(nc)
    yield hosted
    await hosted.stop_all()
    await nc.close()


async def ask(nc: NATS, subject: str, payload: Any = None, raw: bytes | None = None) -> Any:
    data = raw if raw is not None else codec.encode(payload)
    reply = await nats_request(nc, subject, data, timeout=5)
    return codec.decode(reply.data, reply.headers)


async def test_request_reply_with_typed_message(host: Hosted, nc: NATS) -> None:
    await host.add(EchoAgent("echo-1"))
    got = await ask(nc, S.agent("echo-1"), envelope(Echo(text="hello")))
    assert got == {"text": "hello", "agent_id": "echo-1", "node_id": "test-node"}


async def test_json_request_gets_json_reply(host: Hosted, nc: NATS) -> None:
    await host.add(CalculatorAgent("calc"))
    reply = await nats_request(nc, S.agent("calc"),
                             b'{"type":"calculate","data":{"op":"add","a":2,"b":3}}', timeout=5)
    assert reply.data.startswith(b"{")
    assert codec.decode(reply.data)["value"] == 5


async def test_capability_requests_are_balanced_across_agents(host: Hosted, nc: NATS) -> None:
    for i in range(3):
        await host.add(EchoAgent(f"echo-{i}"))
    answered: Counter[str] = Counter()
    for i in range(90):
        answered[(await ask(nc, S.cap("echo"), envelope(Echo(text=str(i)))))["agent_id"]] += 1
    assert set(answered) == {"echo-0", "echo-1", "echo-2"}
    assert min(answered.values()) >= 10


async def test_handler_exception_becomes_structured_error_and_agent_survives(
        host: Hosted, nc: NATS) -> None:
    await host.add(CalculatorAgent("calc"))
    got = await ask(nc, S.agent("calc"), envelope(Calculate(op="div", a=1, b=0)))
    err = BrokerError.from_payload(got)
    assert err is not None and err.code == "handler_error" and "ZeroDivision" in err.message
    got = await ask(nc, S.agent("calc"), envelope(Calculate(op="div", a=1, b=4)))
    assert got["value"] == 0.25


async def test_validation_error_names_the_field(host: Hosted, nc: NATS) -> None:
    await host.add(CalculatorAgent("calc"))
    got = await ask(nc, S.agent("calc"), {"type": "calculate", "data": {"op": "pow", "a": 1}})
    err = BrokerError.from_payload(got)
    assert err is not None and err.code == "validation_error"
    assert "op" in err.message and "b" in err.message


async def test_unknown_type_lists_known_types(host: Hosted, nc: NATS) -> None:
    await host.add(EchoAgent("echo"))
    err = BrokerError.from_payload(await ask(nc, S.agent("echo"), {"type": "nope", "data": {}}))
    assert err is not None and err.code == "unknown_type" and err.details["known"] == ["echo"]


async def test_oversized_payload_is_rejected(host: Hosted, nc: NATS) -> None:
    await host.add(EchoAgent("echo"), max_payload=1000)
    err = BrokerError.from_payload(
        await ask(nc, S.agent("echo"), envelope(Echo(text="x" * 5000))))
    assert err is not None and err.code == "too_large"


async def test_redelivered_message_id_is_answered_from_cache(host: Hosted, nc: NATS) -> None:
    await host.add(WorkerAgent("w"))
    first = await ask(nc, S.agent("w"), {"type": "work", "data": {}, "id": "m-1"})
    again = await ask(nc, S.agent("w"), {"type": "work", "data": {}, "id": "m-1"})
    assert first == again


async def test_fatal_error_replies_then_crashes_the_agent(host: Hosted, nc: NATS) -> None:
    await host.add(WorkerAgent("w"))
    err = BrokerError.from_payload(await ask(nc, S.agent("w"), envelope(Crash())))
    assert err is not None and err.code == "handler_error"
    with pytest.raises(Exception, match="asked to crash"):
        async with asyncio.timeout(5):
            await host.tasks["w"]
    host.tasks.pop("w")
    host.runners.pop("w")


async def test_graceful_stop_finishes_in_flight_handlers_and_leaves_no_tasks(
        host: Hosted, nc: NATS) -> None:
    runner = await host.add(WorkerAgent("w"))
    started = asyncio.Event()
    count = Counter[str]()

    async def on_started(_: object) -> None:
        count["started"] += 1
        if count["started"] == 3:
            started.set()

    sub = await nc.subscribe("ba.test.release.started", cb=on_started)
    pending = [asyncio.ensure_future(nats_request(nc,
        S.agent("w"), codec.encode(envelope_work("ba.test.release")), timeout=10))
        for _ in range(3)]
    async with asyncio.timeout(5):
        await started.wait()
    assert runner.in_flight == 3
    runner.stop()
    await nc.publish("ba.test.release", b"")
    async with asyncio.timeout(10):
        await host.tasks["w"]
    replies = [codec.decode(r.data) for r in await asyncio.gather(*pending)]
    assert all(r["done"] for r in replies)
    assert runner.in_flight == 0
    await sub.unsubscribe()
    host.runners.pop("w")
    host.tasks.pop("w")


def envelope_work(release: str) -> dict[str, Any]:
    return {"type": "work", "data": {"release": release}}
