"""A node in-process: embedded nats-server (secured by its data dir), graceful shutdown
with work in flight."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from broker_agents import codec
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.config import load_config
from node.daemon import Node
from tests.secured import connect_as


def config(tmp_path: Path) -> Any:
    return load_config(None, node={"id": "n1", "data_dir": tmp_path, "shutdown_timeout": 10},
                       nats={"embedded": {"port": 0}}, http={"port": 0},
                       agents=[{"class": "broker_agents.samples:WorkerAgent", "id": "w"},
                               {"class": "broker_agents.samples:EchoAgent", "id": "e",
                                "count": 2}])


async def test_node_starts_embedded_nats_and_hosts_agents(tmp_path: Path) -> None:
    node = Node(config(tmp_path))
    await node.start()
    try:
        assert node.embedded is not None and node.embedded.process is not None
        assert node.readiness()["ready"]
        assert sorted(node.agents) == ["e-1", "e-2", "w"]
        assert (tmp_path / "nats" / "jetstream").is_dir()
    finally:
        await node.shutdown()
    assert node.embedded.process.poll() is not None
    assert not node.readiness()["ready"]


async def test_shutdown_finishes_in_flight_handlers_and_leaves_no_task(tmp_path: Path) -> None:
    before = asyncio.all_tasks()
    node = Node(config(tmp_path))
    await node.start()
    assert node.embedded is not None
    client = await connect_as(node.embedded, Role.NODE)  # the release subject is a node's
    started = asyncio.Event()

    async def on_started(_: Any) -> None:
        started.set()

    await client.subscribe("ba.test.release.started", cb=on_started)
    await client.flush()
    pending = asyncio.ensure_future(nats_request(client,
        "ba.agent.w", codec.encode({"type": "work", "data": {"release": "ba.test.release"}}),
        timeout=15))
    await asyncio.wait_for(started.wait(), 5)
    shutdown = asyncio.ensure_future(node.shutdown())
    await asyncio.wait_for(node.stopping.wait(), 5)
    await client.publish("ba.test.release", b"")
    reply = await asyncio.wait_for(pending, 15)
    assert codec.decode(reply.data)["done"] is True
    await client.close()  # before the embedded server goes away under it
    await asyncio.wait_for(shutdown, 15)
    leftover = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
    if leftover:  # closed clients cancel their reader tasks; those must finish at once
        await asyncio.wait(leftover, timeout=2)
    assert [t for t in leftover if not t.done()] == []
