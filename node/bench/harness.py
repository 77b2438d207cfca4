"""What a benchmark runs on: a local cluster of node processes, or a nats-server of its own;
and one checked request (an error reply raises, so a failing run never reports figures)."""

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
from node.cluster import LocalCluster
from node.embedded import NatsServer

AgentSpecs = list[list[dict[str, Any]]]


@asynccontextmanager
async def running_cluster(
    name: str, agents: AgentSpecs, *, services: dict[str, dict[str, Any]] | None = None,
    tmp_dir: str | Path | None = None,
) -> AsyncIterator[tuple[LocalCluster, NATS]]:
    """``len(agents)`` node processes on one embedded nats-server, and a client of it.

    Node logs go to the (temporary) cluster directory at level warning; every process is
    stopped on the way out, also when the benchmark fails.
    """
    with tempfile.TemporaryDirectory(prefix=f"ba-bench-{name}-", dir=tmp_dir) as tmp:
        cluster = LocalCluster(Path(tmp), nodes=len(agents), agents=agents,
                               services=services or {},
                               extra_env={"BA_NODE__LOG_LEVEL": "warning"})
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
    bench: Callable[[str, Path], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """``await bench(url, tmp_dir)`` against a nats-server of its own."""
    with tempfile.TemporaryDirectory(prefix="ba-bench-") as tmp:
        server = await asyncio.to_thread(NatsServer(store_dir=Path(tmp) / "nats").start)
        try:
            return await bench(server.url, Path(tmp))
        finally:
            server.stop()


async def ask(nc: NATS, subject: str, data: bytes, timeout: float) -> dict[str, Any]:
    """One request; its answer, or the error it amounts to raised."""
    outcome = await ask_one(nc, subject, data, timeout)
    if isinstance(outcome, BrokerError):
        raise outcome
    return outcome
