import asyncio
from pathlib import Path
from typing import Any

from broker_agents.kv import once_account_enabled
from broker_agents.logging import get_logger
from node.auth.roles import Role
from node.config import EmbeddedSection
from node.embedded import NatsCluster, NatsServer, start_server
from node.nats_access import EmbeddedSupervisor
from tests.integration.raft.helpers import wait_for
from tests.secured import connect_as


async def test_embedded_server_serves_jetstream_kv_and_stops(tmp_path: Path) -> None:
    server = start_server(tmp_path / "s")
    try:
        nc = await connect_as(server, Role.NODE)
        kv = await nc.jetstream().create_key_value(bucket="ba_raw")  # a node's bucket
        rev = await kv.put("k", b"v")
        assert (await kv.get("k")).value == b"v" and rev >= 1
        await nc.close()
    finally:
        server.stop()
    assert server.process is not None and server.process.poll() is not None


async def test_three_server_cluster_replicates_kv(nats_cluster: NatsCluster) -> None:
    nc = await connect_as(nats_cluster, Role.NODE, servers=nats_cluster.urls[:1])
    js = nc.jetstream()
    kv = await once_account_enabled(lambda: js.create_key_value(bucket="ba_raw", replicas=3))
    await kv.put("k", b"v")
    other = await connect_as(nats_cluster, Role.NODE, servers=nats_cluster.urls[2:])
    kv2 = await other.jetstream().key_value("ba_raw")
    assert (await kv2.get("k")).value == b"v"
    await nc.close()
    await other.close()


def _supervised(server: NatsServer, **settings: Any) -> EmbeddedSupervisor:
    supervisor = EmbeddedSupervisor(server, EmbeddedSection(**settings),
                                    get_logger(component="test"))
    supervisor.start()
    return supervisor


async def test_supervisor_restarts_a_killed_server_on_its_port(tmp_path: Path) -> None:
    server = start_server(tmp_path / "s")
    supervisor = _supervised(server, restart_backoff_initial=0.05)
    try:
        old_pid, url = server.pid, server.url
        await asyncio.to_thread(server.kill)
        await wait_for(lambda: supervisor.restarts == 1, 10, "the restart")
        assert server.pid != old_pid and server.url == url and supervisor.problem is None
        nc = await connect_as(server, Role.NODE)  # it serves again, JetStream and all
        assert (await nc.jetstream().account_info()).streams >= 0
        await nc.close()
    finally:
        await supervisor.stop()
    assert server.process is not None and server.process.poll() is not None
    assert supervisor.task is not None and supervisor.task.done()


async def test_supervisor_gives_up_past_its_intensity(tmp_path: Path) -> None:
    server = start_server(tmp_path / "s")
    supervisor = _supervised(server, max_restarts=1, restart_backoff_initial=0.05)
    try:
        await asyncio.to_thread(server.kill)
        await wait_for(lambda: supervisor.restarts == 1, 10, "the first restart")
        await asyncio.to_thread(server.kill)
        assert supervisor.task is not None
        await asyncio.wait_for(asyncio.shield(supervisor.task), 10)  # it ends: gave up
        assert supervisor.gave_up is not None and "gave up" in supervisor.gave_up
        assert server.process is not None and server.process.poll() is not None
    finally:
        await supervisor.stop()
