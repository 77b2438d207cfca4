"""Input that crashes one agent cannot take its node down (issue 13, "six crash messages").

A client sends the sample worker one ``crash`` more than its restart budget allows. Only
that agent is given up (deregistered, counted, reported in readiness); the node process,
its other agent and its Raft member keep running.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.errors import NoRespondersError

from broker_agents import codec
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.messages import envelope
from broker_agents.raft.client import RaftClient
from broker_agents.registry.view import LocalView
from broker_agents.samples import Crash, Echo
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.cluster import LocalCluster

S = Subjects()
BUDGET = 5
AGENTS = [[{"class": "broker_agents.samples:WorkerAgent", "id": "fragile"},
           {"class": "broker_agents.samples:EchoAgent", "id": "steady"}]]
SERVICES = {"consensus": {"groups": [{"name": "solo", "members": ["node-1"]}]}}


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    # A long period: the budget is counted, not raced against the clock of a busy machine.
    c = LocalCluster(tmp_path, nodes=1, agents=AGENTS, services=SERVICES,
                     extra_env={"BA_SUPERVISOR__MAX_RESTARTS": str(BUDGET),
                                "BA_SUPERVISOR__PERIOD": "600"})
    await c.start()
    yield c
    await asyncio.to_thread(c.stop)


async def test_crashing_one_agent_past_its_budget_gives_up_that_agent_only(
        node: LocalCluster) -> None:
    client = await node.client(Role.CLIENT)
    events = await node.client(Role.OBSERVER)
    view = await LocalView.open(events, name="restart-budget-view")
    assert view.get("fragile") is not None
    loop = asyncio.get_running_loop()
    restarted: dict[int, asyncio.Future[None]] = {
        n: loop.create_future() for n in range(1, BUDGET + 1)}
    gave_up: asyncio.Future[dict[str, Any]] = loop.create_future()

    async def on_started(msg: Any) -> None:
        event = codec.decode(msg.data)
        future = restarted.get(event["restarts"])
        if event["agent_id"] == "fragile" and future is not None and not future.done():
            future.set_result(None)

    async def on_gave_up(msg: Any) -> None:
        if not gave_up.done():
            gave_up.set_result(codec.decode(msg.data))

    await events.subscribe(S.events("agent", "started"), cb=on_started)
    await events.subscribe(S.events("agent", "gave_up"), cb=on_gave_up)
    await events.flush()
    crash = codec.encode(envelope(Crash()))
    for n in range(1, BUDGET + 2):  # one crash more than the budget
        got = codec.decode((await nats_request(client, S.agent("fragile"), crash,
                                               timeout=5)).data)
        err = BrokerError.from_payload(got)
        assert err is not None and err.code == ErrorCode.HANDLER_ERROR
        if n <= BUDGET:
            await asyncio.wait_for(restarted[n], 15)
    event = await asyncio.wait_for(gave_up, 15)
    assert event["agent_id"] == "fragile" and event["node_id"] == "node-1"

    # The node process runs on, and so do its other agent and its Raft member.
    assert node.procs[0].process is not None and node.procs[0].process.poll() is None
    echo = codec.decode((await nats_request(client, S.agent("steady"),
                                            codec.encode(envelope(Echo(text="still here"))),
                                            timeout=5)).data)
    assert echo["text"] == "still here"
    raft = RaftClient(client, "solo")
    assert (await raft.propose({"op": "put", "key": "k", "value": 1}, timeout=10))["ok"]

    # The given-up agent answers nobody, is gone from the registry, and is reported.
    with pytest.raises(NoRespondersError):
        await nats_request(client, S.agent("fragile"), crash, timeout=5)
    await view.wait_for(lambda: view.get("fragile") is None, timeout=10)
    assert view.get("steady") is not None
    port = node.procs[0].http_port
    status, body = await asyncio.to_thread(http_get, port, "/readyz")
    ready = json.loads(body)
    assert status == 200 and ready["ready"], ready
    assert "fragile" in ready["agents_failed"]
    _, metrics = await asyncio.to_thread(http_get, port, "/metrics")
    assert 'ba_agent_gave_up_total{agent="fragile"} 1.0' in metrics
    await view.stop()
    # closed before the fixture stops the server: left open, they reconnect to it forever
    # and the teardown hung once in CI
    await client.close()
    await events.close()
