"""Shared fixtures: real, secured nats-servers on free ports, and seeds for simulation tests.

``nats_server`` / ``nats_cluster`` run with operator auth and TLS (``node.embedded``); ``nc``
is a ``node`` connection to ``nats_server``; ``connect`` opens more, as any role
(``tests.secured``), and closes them after the test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from node.auth.roles import Role
from node.embedded import NatsCluster, NatsServer, start_cluster, start_server
from tests.secured import Secured, connect_as


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
    """A secured ``nats-server`` with JetStream on a free port, its auth and store in a
    temp dir."""
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
    """Three secured nats-servers in one JetStream cluster (route TLS and auth)."""
    cluster = start_cluster(tmp_path / "cluster", size=3)
    try:
        yield cluster
    finally:
        cluster.stop()


Connect = Callable[..., Awaitable[NATS]]


@pytest.fixture
async def connect(nats_server: NatsServer) -> AsyncIterator[Connect]:
    """``await connect(Role.CLIENT, target=None, user=None, **options)``: a connection as
    that role (as principal ``user``, say "mallory") to ``target`` (default
    ``nats_server``), closed after the test."""
    opened: list[NATS] = []

    async def open_as(role: Role = Role.NODE, target: Secured | None = None,
                      user: str | None = None, **options: Any) -> NATS:
        nc = await connect_as(target or nats_server, role, user, **options)
        opened.append(nc)
        return nc

    yield open_as
    for conn in opened:
        if not conn.is_closed:
            await conn.close()


@pytest.fixture
async def nc(connect: Connect) -> NATS:
    """A ``node`` connection to ``nats_server``."""
    return await connect(Role.NODE)
