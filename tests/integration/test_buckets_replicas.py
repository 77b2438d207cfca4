"""Bucket replicas follow the cluster (or the config), with leader-only reads; an existing
bucket is left as it is, with a warning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker_agents import kv as kvmod
from broker_agents.kv import REPLICAS_MISMATCH, configure_replicas, open_bucket
from broker_agents.registry.store import RegistryStore
from broker_agents.reputation import open_reputation
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.config import ConfigError, load_config
from node.daemon import Node
from node.embedded import NatsCluster, NatsServer
from tests.secured import connect_as


@pytest.fixture(autouse=True)
def unconfigured() -> Iterator[None]:
    configure_replicas(None)
    yield
    configure_replicas(None)


async def stream_config(js: object, bucket: str) -> tuple[int, bool]:
    info = await js.stream_info(f"KV_{bucket}")  # type: ignore[attr-defined]
    return info.config.num_replicas, bool(info.config.allow_direct)


async def test_buckets_in_a_three_server_cluster_are_r3_with_leader_reads(
        nats_cluster: NatsCluster) -> None:
    nc = await connect_as(nats_cluster, Role.NODE, servers=nats_cluster.urls[:1])
    try:
        js = nc.jetstream()
        assert kvmod.cluster_size(js) == 3
        accounts = await open_bucket(js, "ba_accounts")
        await accounts.put("alice", b"100")
        assert await stream_config(js, "ba_accounts") == (3, False)
        await RegistryStore.open(nc, Subjects("ba"))  # the registry follows, too
        assert await stream_config(js, "ba_agents") == (3, False)
        await open_reputation(js, Subjects("ba"))
        assert await stream_config(js, "ba_reputation") == (3, False)
    finally:
        await nc.close()


async def test_the_configured_count_wins_and_an_existing_bucket_is_left_as_is(
        nats_cluster: NatsCluster) -> None:
    nc = await connect_as(nats_cluster, Role.NODE, servers=nats_cluster.urls[1:2])
    try:
        js = nc.jetstream()
        configure_replicas(1)
        await open_bucket(js, "ba_leases")
        assert await stream_config(js, "ba_leases") == (1, False)
        configure_replicas(3)
        before = REPLICAS_MISMATCH._value.get()
        kv = await open_bucket(js, "ba_leases")
        await kv.put("k", b"v")  # still usable
        assert await stream_config(js, "ba_leases") == (1, False)
        assert REPLICAS_MISMATCH._value.get() == before + 1
    finally:
        await nc.close()


async def test_a_single_server_gets_one_replica(nats_server: NatsServer) -> None:
    nc = await connect_as(nats_server, Role.NODE)
    try:
        js = nc.jetstream()
        assert kvmod.cluster_size(js) == 1
        await open_bucket(js, "ba_auctions")
        assert await stream_config(js, "ba_auctions") == (1, False)
    finally:
        await nc.close()


def test_the_node_config_sets_the_replicas_of_every_bucket(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bucket_replicas"):
        load_config(nats={"bucket_replicas": 0})
    Node(load_config(nats={"bucket_replicas": 2}, node={"data_dir": str(tmp_path)}))
    assert kvmod.default_replicas(None) == 2
