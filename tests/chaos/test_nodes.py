"""Node daemons in the proxied harness: their own proxies, isolation, kill -9, restart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nats.errors
import pytest

from broker_agents.transport import connect_client
from chaos.cluster import ProxiedNatsCluster
from chaos.faults import isolate_client
from chaos.nodes import add_node, create_buckets, service_env, start_nodes
from chaos.probe import fetch_view, probe_spec
from chaos.toxiproxy import toxiproxy_client
from node.auth.roles import Role

pytestmark = pytest.mark.chaos


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProxiedNatsCluster]:
    with toxiproxy_client() as toxi:
        c = ProxiedNatsCluster(tmp_path / "cluster", toxi, prefix="nodes_").start()
        try:
            yield c
        finally:
            c.stop()


async def until(cond: object, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(cond):  # type: ignore[arg-type]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)  # sleep-ok: polling a daemon's HTTP readiness


async def test_node_daemon_isolated_through_its_own_proxies_and_killed_and_restarted(
        cluster: ProxiedNatsCluster) -> None:
    nc = await connect_client(cluster.client_urls("admin"), security=cluster.security(Role.NODE),
                              max_reconnect_attempts=-1)
    try:
        await create_buckets(nc.jetstream(timeout=5))
        one = add_node(cluster, "node-1", [probe_spec("node-1")], service_env())
        two = add_node(cluster, "node-2", [probe_spec("node-2")], service_env())
        await start_nodes([one, two])
        assert await fetch_view(nc, "node-1", timeout=2) == await fetch_view(nc, "node-2", 2)
        assert set(await fetch_view(nc, "node-1", timeout=2)) == {"probe-node-1",
                                                                  "probe-node-2"}
        fault = isolate_client(cluster, "node-1")
        await asyncio.to_thread(fault.inject)
        await until(lambda: not one.ready(), 5, "node-1 to lose NATS")
        assert two.ready()
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await fetch_view(nc, "node-1", timeout=0.5)
        await asyncio.to_thread(fault.heal)
        await until(one.ready, 15, "node-1 to reconnect")
        old_pid = one.proc.pid
        kill = two.kill_fault()
        await asyncio.to_thread(kill.inject)
        assert not two.alive
        await asyncio.to_thread(kill.heal)
        await asyncio.to_thread(two.settle)
        assert two.alive and two.ready() and two.proc.pid != old_pid
        await fetch_view(nc, "node-2", timeout=2)
    finally:
        await nc.close()
