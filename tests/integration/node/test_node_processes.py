"""Node daemons as separate OS processes talking over one nats-server."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broker_agents import codec
from broker_agents.core.errors import BrokerError
from broker_agents.messages import envelope
from broker_agents.samples import Crash, Echo, Relay
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.cluster import LocalCluster

S = Subjects()
TWO_NODES: list[list[dict[str, Any]]] = [
    [{"class": "broker_agents.samples:RelayAgent", "id": "relay"},
     {"class": "broker_agents.samples:EchoAgent", "id": "echo-a"}],
    [{"class": "broker_agents.samples:EchoAgent", "id": "echo-b"},
     {"class": "broker_agents.samples:WorkerAgent", "id": "worker"}],
]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path, nodes=2, agents=TWO_NODES)
    await c.start()
    yield c
    await asyncio.to_thread(c.stop)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_agents_on_two_node_processes_talk_by_request_reply(
        cluster: LocalCluster) -> None:
    nc = await cluster.client()
    reply = await nats_request(nc, S.agent("relay"),
                             codec.encode(envelope(Relay(target="echo-b", text="ping"))),
                             timeout=5)
    got = codec.decode(reply.data)
    assert got["via_node"] == "node-1"
    assert got["reply"] == {"text": "ping", "agent_id": "echo-b", "node_id": "node-2"}
    await nc.close()


async def test_capability_requests_spread_over_both_nodes(cluster: LocalCluster) -> None:
    nc = await cluster.client()
    nodes = set()
    for i in range(40):
        reply = await nats_request(nc, S.cap("echo"), codec.encode(envelope(Echo(text=str(i)))),
                                 timeout=5)
        nodes.add(codec.decode(reply.data)["node_id"])
    assert nodes == {"node-1", "node-2"}
    await nc.close()


async def test_http_endpoints_report_ready_and_metrics(cluster: LocalCluster) -> None:
    port = cluster.procs[0].http_port
    status, body = await asyncio.to_thread(http_get, port, "/readyz")
    assert status == 200 and json.loads(body)["agents_running"] == 2
    status, body = await asyncio.to_thread(http_get, port, "/healthz")
    assert status == 200
    status, body = await asyncio.to_thread(http_get, port, "/metrics")
    assert status == 200 and "ba_agents_running 2.0" in body and "ba_nats_connected 1.0" in body


async def test_crashed_agent_is_restarted_by_its_node(cluster: LocalCluster) -> None:
    nc = await cluster.client()
    events = await cluster.client(Role.OBSERVER)  # lifecycle events are an observer's
    restarted: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def on_started(msg: Any) -> None:
        event = codec.decode(msg.data)
        if event["agent_id"] == "worker" and event["restarts"] == 1:
            restarted.set_result(event)

    await events.subscribe(S.events("agent", "started"), cb=on_started)
    await events.flush()
    got = codec.decode((await nats_request(nc, S.agent("worker"), codec.encode(envelope(Crash())),
                                         timeout=5)).data)
    assert BrokerError.from_payload(got) is not None
    event = await asyncio.wait_for(restarted, 10)
    assert event["node_id"] == "node-2"
    reply = await nats_request(nc, S.agent("worker"), codec.encode({"type": "work", "data": {}}),
                             timeout=5)
    assert codec.decode(reply.data)["starts"] == 2
    _, body = await asyncio.to_thread(http_get, cluster.procs[1].http_port, "/metrics")
    assert 'ba_agent_restarts_total{agent="worker"} 1.0' in body
    await nc.close()
    await events.close()


async def test_sigterm_stops_every_node_with_exit_code_zero(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, nodes=2, agents=TWO_NODES)
    await c.start()
    codes = await asyncio.to_thread(c.stop)
    assert codes == {"node-1": 0, "node-2": 0}


async def test_node_exits_nonzero_when_root_supervisor_gives_up(tmp_path: Path) -> None:
    """Only when configured (on_exhausted = stop_node): by default only the agent stops
    (tests/security/test_restart_budget.py)."""
    agents = [[{"class": "broker_agents.samples:WorkerAgent", "id": "fragile"}]]
    c = LocalCluster(tmp_path, nodes=1, agents=agents,
                     extra_env={"BA_SUPERVISOR__MAX_RESTARTS": "0",
                                "BA_SUPERVISOR__ON_EXHAUSTED": "stop_node"})
    await c.start()
    nc = await c.client()
    await nats_request(nc, S.agent("fragile"), codec.encode(envelope(Crash())), timeout=5)
    await nc.close()
    code = await asyncio.to_thread(c.procs[0].wait, 20)
    assert code == 1
    log = c.procs[0].log_path.read_text()
    assert "root supervisor gave up" in log
    c.procs[0].signal(signal.SIGTERM)
    await asyncio.to_thread(c.stop)
