from pathlib import Path

import nats

from node.embedded import NatsCluster, start_server


async def test_embedded_server_serves_jetstream_kv_and_stops(tmp_path: Path) -> None:
    server = start_server(tmp_path / "s")
    try:
        nc = await nats.connect(server.url)
        kv = await nc.jetstream().create_key_value(bucket="probe")
        rev = await kv.put("k", b"v")
        assert (await kv.get("k")).value == b"v" and rev >= 1
        await nc.close()
    finally:
        server.stop()
    assert server.process is not None and server.process.poll() is not None


async def test_three_server_cluster_replicates_kv(nats_cluster: NatsCluster) -> None:
    nc = await nats.connect(nats_cluster.urls[0])
    js = nc.jetstream()
    kv = await js.create_key_value(bucket="rep", replicas=3)
    await kv.put("k", b"v")
    other = await nats.connect(nats_cluster.urls[2])
    kv2 = await other.jetstream().key_value("rep")
    assert (await kv2.get("k")).value == b"v"
    await nc.close()
    await other.close()
