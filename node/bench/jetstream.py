"""The peer a replicated commit is measured against: a raw JetStream KV put on a 3-server
nats cluster whose servers fsync every write before acknowledging it.

``start_fsync_cluster`` starts the same secured cluster ``node.embedded.start_cluster``
does (operator auth, client and route TLS, route auth), with ``sync_interval: always`` in
every server config: JetStream's default fsyncs every 2 minutes, which would compare our
fsynced commit with an unsynced write. Raft members run on this same cluster, so both
replicated writes cross the same network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from broker_agents.kv import once_account_enabled
from broker_agents.subjects import Subjects
from node.auth.local import ensure_cluster, ensure_identities
from node.auth.server_config import ServerSpec, write_configs
from node.embedded import LOOPBACK, NatsCluster, NatsServer, free_port, start_all

BUCKET = Subjects().bucket("raw")  # the one bucket a node may write for baselines


def start_fsync_cluster(base_dir: Path, size: int = 3, name: str = "bench") -> NatsCluster:
    """``size`` secured, routed servers (nats-server >= 2.10: the package's binary) with
    ``sync_interval: always``; returns once JetStream is healthy on each."""
    specs = [ServerSpec(f"{name}-{i}", LOOPBACK, port=free_port(), cluster_port=free_port(),
                        http_port=free_port(), listen=LOOPBACK,
                        store_dir=base_dir.resolve() / f"n{i}") for i in range(size)]
    auth = ensure_cluster(base_dir, specs, cluster_name=name)
    authority, _ = ensure_identities(base_dir)
    # the same files ensure_cluster wrote, now with every write fsynced
    configs = write_configs(authority, specs, cluster_name=name, sync_interval="always")
    servers = [NatsServer(store_dir=spec.store_dir or base_dir / spec.name, port=spec.port,
                          monitor_port=spec.http_port or 0, cluster_name=name,
                          cluster_port=spec.cluster_port, server_name=spec.name,
                          config=config, tls=True, auth=auth)
               for spec, config in zip(specs, configs, strict=True)]
    start_all(servers)
    for config in configs:  # a bench must not measure another setting by mistake
        if 'sync_interval: "always"' not in config.read_text():
            raise RuntimeError(f"{config}: sync_interval is not always")
    return NatsCluster(servers, auth)


async def r3_bucket(nc: Any, bucket: str = BUCKET) -> Any:
    """An R3 KV bucket (one value per key) on ``nc``'s cluster."""
    js = nc.jetstream()
    from nats.js.api import KeyValueConfig

    config = KeyValueConfig(bucket=bucket, history=1, replicas=3)
    return await once_account_enabled(lambda: js.create_key_value(config))
