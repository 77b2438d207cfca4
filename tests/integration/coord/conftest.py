"""The running cluster and client fixtures the coord test modules share.

A module states its layout as ``cluster_agents()``: one list of agent specs per node
process. ``cluster`` starts those nodes once for the module (in its event loop) and stops
them afterwards; ``nc`` is a client connection for one test (the public requests);
``admin`` an admin's (it acts for named holders), ``events`` an observer's (it may
read events, which a client may not).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS

from node.auth.roles import Role
from node.cluster import LocalCluster
from tests.integration.coord.helpers import client_of, running_cluster


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalCluster]:
    agents = request.module.cluster_agents()
    base = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    async with running_cluster(base, len(agents), agents) as c:
        yield c


@pytest_asyncio.fixture(loop_scope="module")
async def nc(cluster: LocalCluster) -> AsyncIterator[NATS]:
    async with client_of(cluster) as conn:
        yield conn


@pytest_asyncio.fixture(loop_scope="module")
async def admin(cluster: LocalCluster) -> AsyncIterator[NATS]:
    """An admin's connection: it may act for anyone (``acting_for``), say for the
    holders of the lock tests."""
    async with client_of(cluster, Role.ADMIN) as conn:
        yield conn


@pytest_asyncio.fixture(loop_scope="module")
async def events(cluster: LocalCluster) -> AsyncIterator[NATS]:
    async with client_of(cluster, Role.OBSERVER) as conn:
        yield conn
