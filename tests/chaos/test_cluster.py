"""The proxied cluster harness and the faults against a real 3-server JetStream cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker_agents.transport import connect_client
from chaos.cluster import ProxiedNatsCluster
from chaos.faults import cut_server, isolate_client, kill_server
from chaos.toxiproxy import ToxiproxyClient, toxiproxy_client
from node.auth.roles import Role

pytestmark = pytest.mark.chaos


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # sleep-ok: polling an external process's monitoring endpoint


async def until_ok(call: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Retry while the stream elects a new leader (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await asyncio.wait_for(call(), 2)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)  # sleep-ok: backoff between retries


@pytest.fixture
def toxi() -> Iterator[ToxiproxyClient]:
    with toxiproxy_client() as client:
        yield client


@pytest.fixture
def cluster(tmp_path: Path, toxi: ToxiproxyClient) -> Iterator[ProxiedNatsCluster]:
    c = ProxiedNatsCluster(tmp_path / "cluster", toxi).start()
    try:
        yield c
    finally:
        c.stop()


def test_routes_only_go_through_proxies_and_a_cut_is_a_cut(cluster: ProxiedNatsCluster) -> None:
    wait_for(lambda: [cluster.routes_of(i) for i in range(3)] == [2, 2, 2], 10, "full mesh")
    proxy_ports = {int(cluster.toxi.get(name)["listen"].rsplit(":", 1)[1])
                   for a in range(3) for b in range(3) if a != b
                   for name in cluster.route_proxies(a, b)[:1]}
    direct = {n.cluster_port for n in cluster.nodes}
    remote = [r for i in range(3) for r in cluster.nodes[i].monitor("routez")[1]["routes"]]
    solicited = {r["port"] for r in remote if r.get("did_solicit")}
    assert solicited and solicited <= proxy_ports
    assert not {r["port"] for r in remote} & direct, "a route connects to a server directly"
    fault = cut_server(cluster, 0)
    fault.inject()
    wait_for(lambda: cluster.routes_of(0) == 0, 5, "server 0 to lose its routes")
    time.sleep(2.5)  # sleep-ok: give implicit-route gossip time to (wrongly) reconnect
    assert cluster.routes_of(0) == 0, "a route bypassed the proxies"
    assert cluster.routes_of(1) == 1 and cluster.routes_of(2) == 1
    fault.heal()
    wait_for(lambda: [cluster.routes_of(i) for i in range(3)] == [2, 2, 2], 10, "heal")


async def test_isolating_a_client_disconnects_it_and_heal_reconnects(
        cluster: ProxiedNatsCluster) -> None:
    disconnected, reconnected = asyncio.Event(), asyncio.Event()

    async def on_disc() -> None:
        disconnected.set()

    async def on_reconn() -> None:
        reconnected.set()

    nc = await connect_client(cluster.client_urls("c1"), security=cluster.security(Role.CLIENT),
                              reconnect_time_wait=0.1, max_reconnect_attempts=-1,
                              disconnected_cb=on_disc, reconnected_cb=on_reconn)
    other = await connect_client(cluster.client_urls("c2"),
                                 security=cluster.security(Role.CLIENT))
    try:
        fault = isolate_client(cluster, "c1")
        await asyncio.to_thread(fault.inject)
        await asyncio.wait_for(disconnected.wait(), 5)
        await other.flush(timeout=2)  # another client is unaffected
        assert nc.is_reconnecting or not nc.is_connected
        await asyncio.to_thread(fault.heal)
        await asyncio.wait_for(reconnected.wait(), 10)
        await nc.flush(timeout=2)
    finally:
        await nc.close()
        await other.close()


async def test_kill_9_and_restart_keeps_replicated_data(cluster: ProxiedNatsCluster) -> None:
    nc = await connect_client(cluster.client_urls(), security=cluster.security(Role.NODE),
                              reconnect_time_wait=0.1, max_reconnect_attempts=-1)
    try:
        js = nc.jetstream(timeout=5)
        kv = await js.create_key_value(bucket="ba_raw", replicas=3, direct=False)
        await kv.put("k", b"v1")
        old_pid = cluster.nodes[1].process().pid
        fault = kill_server(cluster, 1)
        await asyncio.to_thread(fault.inject)
        assert not cluster.nodes[1].process().alive
        await until_ok(lambda: kv.put("k", b"v2"))  # two of three servers make a quorum
        await asyncio.to_thread(fault.heal)
        await asyncio.to_thread(cluster.wait_healthy, 30.0)
        assert cluster.nodes[1].process().pid != old_pid
        assert (await until_ok(lambda: kv.get("k"))).value == b"v2"
    finally:
        await nc.close()
