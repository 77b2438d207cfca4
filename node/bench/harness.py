"""What a benchmark runs on: a local cluster of node processes, or a nats-server of its own;
and one checked request (an error reply raises, so a failing run never reports figures).

Both run secured, as a deployment does: the cluster's nodes and the fresh server use the
local auth (TLS, creds); a benchmark connects as the role it plays (``connect``)."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from broker_agents.core.errors import BrokerError
from broker_agents.gather import ask_one
from broker_agents.transport import connect_client
from node.auth.roles import Role
from node.cluster import LocalCluster
from node.embedded import NatsServer, start_server

AgentSpecs = list[list[dict[str, Any]]]


@asynccontextmanager
async def running_cluster(
    name: str, agents: AgentSpecs, *, services: dict[str, dict[str, Any]] | None = None,
    tmp_dir: str | Path | None = None, env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[LocalCluster, NATS]]:
    """``len(agents)`` node processes on one embedded nats-server, and a client of it
    (``cluster.client(role)`` opens others: the raw baselines need a node's).

    Node logs go to the (temporary) cluster directory at level warning; ``env`` adds node
    settings; every process is stopped on the way out, also when the benchmark fails.
    """
    with tempfile.TemporaryDirectory(prefix=f"ba-bench-{name}-", dir=tmp_dir) as tmp:
        cluster = LocalCluster(Path(tmp), nodes=len(agents), agents=agents,
                               services=services or {},
                               extra_env={"BA_NODE__LOG_LEVEL": "warning", **(env or {})})
        await cluster.start()
        try:
            nc = await cluster.client()
            try:
                yield cluster, nc
            finally:
                await nc.close()
        finally:
            await asyncio.to_thread(cluster.stop)


async def on_fresh_server(
    bench: Callable[[NatsServer, Path], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """``await bench(server, tmp_dir)`` against a (secured) nats-server of its own."""
    with tempfile.TemporaryDirectory(prefix="ba-bench-") as tmp:
        server = await asyncio.to_thread(start_server, Path(tmp) / "nats")
        try:
            return await bench(server, Path(tmp))
        finally:
            server.stop()


async def connect(server: NatsServer, role: Role = Role.NODE) -> NATS:
    """A connection to ``server`` as ``role`` (a node's by default: benchmarks measure
    what daemons do, raw KV puts and Raft members included)."""
    security = server.auth.security(role) if server.auth is not None else None
    return await connect_client(server.urls, security=security)


async def ask(nc: NATS, subject: str, data: bytes, timeout: float) -> dict[str, Any]:
    """One request; its answer, or the error it amounts to raised."""
    outcome = await ask_one(nc, subject, data, timeout)
    if isinstance(outcome, BrokerError):
        raise outcome
    return outcome
