"""Shared fixtures: real nats-servers on free ports, and seeds for simulation tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from node.embedded import NatsCluster, NatsServer, start_cluster, start_server


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--seed", action="store", type=int, default=None,
        help="replay one simulation seed (also BA_SIM_SEED)",
    )
    parser.addoption(
        "--seeds", action="store", type=int, default=None,
        help="how many simulation seeds to run (also BA_SIM_SEEDS)",
    )


@pytest.fixture
def sim_seeds(request: pytest.FixtureRequest) -> list[int]:
    """Seeds for a simulation test: one replayed seed, or a range of them."""
    one = request.config.getoption("--seed") or os.environ.get("BA_SIM_SEED")
    if one is not None:
        return [int(one)]
    count = request.config.getoption("--seeds") or int(os.environ.get("BA_SIM_SEEDS", "0"))
    default = getattr(request, "param", None) or 500
    return list(range(count or default))


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A real ``nats-server -js`` on a free port with its store in a temp dir."""
    server = start_server(tmp_path / "nats")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-servers in one JetStream cluster."""
    cluster = start_cluster(tmp_path / "cluster", size=3)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[object]:
    import nats

    conn = await nats.connect(nats_url)
    await conn.flush()  # see broker_agents.transport.connect_client
    try:
        yield conn
    finally:
        await conn.close()
