"""The runtime's one reply path against a real nats-server: a result the server could not
carry, or that cannot be encoded, is answered with a counted error instead of silence
(or, for a concurrent handler, instead of crashing the agent)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY

from broker_agents import codec
from broker_agents.agent import Agent, handler
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.messages import MAX_NAME_CHARS
from broker_agents.runtime import AgentRunner
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.secured import connect_as

S = Subjects()


class Bloater(Agent):
    """Answers with as many bytes as asked for, or with a value msgpack cannot carry."""

    max_concurrency: ClassVar[int] = 1

    @handler("bloat")
    async def bloat(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"blob": "x" * int(data["size"])}

    @handler("bloat_concurrently", concurrent=True)
    async def bloat_concurrently(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"blob": "x" * int(data["size"])}

    @handler("huge_int")
    async def huge_int(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"n": 2**70}


@pytest.fixture
async def hosted(nats_server: NatsServer
                 ) -> AsyncIterator[tuple[NATS, AgentRunner, asyncio.Task[None]]]:
    host = await connect_as(nats_server, Role.NODE)
    client = await connect_as(nats_server, Role.CLIENT)
    runner = AgentRunner(Bloater("bloater"), host, node_id="n", subjects=S)
    ready = asyncio.Event()
    task = asyncio.create_task(runner.run(ready.set))
    async with asyncio.timeout(5):
        await ready.wait()
    yield client, runner, task
    runner.stop()
    await asyncio.gather(task, return_exceptions=True)
    await client.close()
    await host.close()


async def ask(nc: NATS, body: dict[str, Any], *, as_json: bool) -> tuple[bytes, Any]:
    reply = await nats_request(nc, S.agent("bloater"), codec.encode(body, as_json=as_json),
                               timeout=5)
    return reply.data, codec.decode(reply.data, as_json=as_json)


def error_of(reply: Any) -> BrokerError:
    err = BrokerError.from_payload(reply)
    assert err is not None, reply
    return err


def refused(reason: str) -> float:
    labels = {"component": "bloater", "reason": reason}
    return REGISTRY.get_sample_value("ba_replies_refused_total", labels) or 0.0


def malformed() -> float:
    labels = {"agent": "bloater", "reason": "malformed"}
    return REGISTRY.get_sample_value("ba_agent_malformed_messages_total", labels) or 0.0


@pytest.mark.parametrize("kind", ["bloat", "bloat_concurrently"])
@pytest.mark.parametrize("as_json", [True, False])
async def test_a_result_over_the_server_max_payload_becomes_too_large(
        hosted: tuple[NATS, AgentRunner, asyncio.Task[None]], kind: str, as_json: bool) -> None:
    nc, _runner, task = hosted
    before = refused("too_large")
    raw, reply = await ask(nc, {"type": kind, "data": {"size": 2 * nc.max_payload}},
                           as_json=as_json)
    err = error_of(reply)
    assert err.code == ErrorCode.TOO_LARGE and err.details["max"] == nc.max_payload
    assert raw.startswith(b"{") is as_json
    assert refused("too_large") == before + 1
    _, small = await ask(nc, {"type": kind, "data": {"size": 3}}, as_json=as_json)
    assert small == {"blob": "xxx"}
    assert not task.done()


async def test_a_result_that_cannot_be_encoded_becomes_internal(
        hosted: tuple[NATS, AgentRunner, asyncio.Task[None]]) -> None:
    nc, _runner, task = hosted
    before = refused("internal")
    _, reply = await ask(nc, {"type": "huge_int", "data": {}}, as_json=False)
    assert error_of(reply).code == ErrorCode.INTERNAL
    assert refused("internal") == before + 1
    assert not task.done()


@pytest.mark.parametrize("field", ["type", "id"])
async def test_types_and_ids_are_names_not_payloads(
        hosted: tuple[NATS, AgentRunner, asyncio.Task[None]], field: str) -> None:
    """The runtime remembers answered ids and names unknown types in its error: neither
    may be the size of a message."""
    nc, _runner, _task = hosted
    before = malformed()
    body = {"type": "bloat", "data": {"size": 1}, field: "i" * (MAX_NAME_CHARS + 1)}
    raw, reply = await ask(nc, body, as_json=True)
    err = error_of(reply)
    assert err.code == ErrorCode.MALFORMED and err.details == {"field": field}
    assert len(raw) < 1024 and json.loads(raw) == reply
    assert malformed() == before + 1
