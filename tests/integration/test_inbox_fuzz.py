"""Random bytes and random JSON at an agent inbox: always a structured error, never a crash."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker_agents import codec
from broker_agents.core.errors import BrokerError
from broker_agents.messages import envelope
from broker_agents.runtime import AgentRunner
from broker_agents.samples import Calculate, CalculatorAgent
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.embedded import NatsServer, start_server
from tests.secured import connect_as

S = Subjects()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


class LoopThread:
    """An event loop in a thread hosting one agent, so sync hypothesis tests can call it."""

    def __init__(self, server: NatsServer) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = server
        self.call(self._start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=20)

    async def _start(self) -> None:
        self.host_nc = await connect_as(self.server, Role.NODE)
        self.client = await connect_as(self.server, Role.CLIENT)  # fuzzing is a client's
        self.runner = AgentRunner(CalculatorAgent("calc"), self.host_nc, node_id="fuzz",
                                  subjects=S)
        ready = asyncio.Event()
        self.task = asyncio.ensure_future(self.runner.run(ready.set))
        await asyncio.wait_for(ready.wait(), 5)

    async def ask(self, data: bytes) -> Any:
        reply = await nats_request(self.client, S.agent("calc"), data, timeout=5)
        return codec.decode(reply.data, reply.headers)

    async def _stop(self) -> None:
        self.runner.stop()
        await self.task
        await self.host_nc.close()
        await self.client.close()

    def close(self) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopThread]:
    server = start_server(tmp_path_factory.mktemp("fuzz"))
    hosted = LoopThread(server)
    yield hosted
    hosted.close()
    server.stop()


def assert_structured_error_and_still_serving(hosted: LoopThread, data: bytes) -> None:
    got = hosted.call(hosted.ask(data))
    if BrokerError.from_payload(got) is None:
        # A random payload can only succeed by being a valid calculate request.
        assert isinstance(got, dict) and "value" in got
    ok = hosted.call(hosted.ask(codec.encode(envelope(Calculate(op="add", a=1, b=1)))))
    assert ok["value"] == 2
    assert not hosted.task.done()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=512))
def test_random_bytes_get_structured_errors(agent: LoopThread, data: bytes) -> None:
    assert_structured_error_and_still_serving(agent, data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_random_json_gets_structured_errors(agent: LoopThread, value: Any) -> None:
    data = json.dumps(value).encode()
    if not data.strip():
        return
    assert_structured_error_and_still_serving(agent, data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["type", "data", "id"]), json_values, max_size=3))
def test_random_envelopes_get_structured_errors(agent: LoopThread, value: Any) -> None:
    assert_structured_error_and_still_serving(agent, json.dumps(value).encode())
