from pathlib import Path

from node.auth.roles import Role
from node.embedded import NatsCluster, start_server
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
    kv = await js.create_key_value(bucket="ba_raw", replicas=3)
    await kv.put("k", b"v")
    other = await connect_as(nats_cluster, Role.NODE, servers=nats_cluster.urls[2:])
    kv2 = await other.jetstream().key_value("ba_raw")
    assert (await kv2.get("k")).value == b"v"
    await nc.close()
    await other.close()
