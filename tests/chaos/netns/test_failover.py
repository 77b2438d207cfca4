"""A node whose server becomes a black hole fails over to another server.

On real hosts a cut link drops packets without a reset: the connection looks alive until
pings go unanswered. nats-py's default (2 min, 2 outstanding) left a node on a dead server
for minutes; ``[nats] ping_interval`` and ``max_outstanding_pings`` bound it, and the
harness runs nodes at 0.5 s x 3. The node's server is found from the servers' ``/connz``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chaos.netns.cluster import NetnsNatsCluster, server_host
from chaos.netns.nemesis import split
from chaos.nodes import NodeDaemon, add_node, service_env, start_nodes
from chaos.probe import probe_spec
from chaos.toxiproxy.client import toxiproxy_client
from tests.chaos.netns.conftest import requires_netns

pytestmark = [pytest.mark.chaos, requires_netns]

PING_BOUND = 0.5 * (3 + 1)  # the harness's node settings: ping_interval * (max + 1)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[NetnsNatsCluster, NodeDaemon]]:
    with toxiproxy_client() as toxi:
        c = NetnsNatsCluster(tmp_path / "cluster", toxi, node_hosts=["node-1"])
        await asyncio.to_thread(c.start)
        try:
            node = add_node(c, "node-1", [probe_spec("node-1")], service_env())
            await start_nodes([node])
            yield c, node
        finally:
            await asyncio.to_thread(c.stop)


def serving(cluster: NetnsNatsCluster, node_id: str) -> set[int]:
    """The servers that list a live connection of ``node_id`` (its name: ba-node-<id>)."""
    found = set()
    for server in cluster.nodes:
        status, body = server.monitor("connz?limit=1024")
        names = {c.get("name") for c in body.get("connections") or []} if status == 200 else set()
        if f"ba-node-{node_id}" in names:
            found.add(server.index)
    return found


async def until(predicate: object, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not await asyncio.to_thread(predicate):  # type: ignore[arg-type]
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)  # sleep-ok: polling the servers' monitoring endpoints
    return time.monotonic() - start


async def test_a_node_leaves_a_server_it_can_no_longer_reach(
        cluster: tuple[NetnsNatsCluster, NodeDaemon]) -> None:
    c, node = cluster
    await until(lambda: len(serving(c, "node-1")) == 1, 10, "the node's server")
    (first,) = serving(c, "node-1")
    assert c.firewall is not None
    cut = split(c.firewall, [["node-1"], [server_host(first)]])
    cut.inject()
    try:
        # the dead connection still shows on the old server (it hears nothing either);
        # the node must show up on another one, and be ready there
        took = await until(lambda: bool(serving(c, "node-1") - {first}), PING_BOUND + 6,
                           "the node on another server")
        await asyncio.to_thread(node.wait_ready, 10)
    finally:
        cut.heal()
    assert took < PING_BOUND + 6
