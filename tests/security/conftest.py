"""Fixtures the security tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from node.auth.roles import Role
from node.embedded import NatsServer
from tests.integration.test_runtime import Hosted
from tests.secured import connect_as


@pytest.fixture
async def host(nats_server: NatsServer) -> AsyncIterator[Hosted]:
    """Agents on a node's connection (a module may define its own ``host``)."""
    nc = await connect_as(nats_server, Role.NODE)
    hosted = Hosted(nc)
    yield hosted
    await hosted.stop_all()
    await nc.close()
