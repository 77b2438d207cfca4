"""Secured nats-servers for the auth tests: configs rendered by ``node.auth``, real servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

from node.auth.context import ClientContext, connect_kwargs
from node.auth.local import LocalAuth, ensure_local
from node.auth.roles import Role
from node.embedded import NatsServer, free_port


@dataclass
class Connection:
    """A NATS connection and the errors its error callback saw, in order."""

    nc: NATS
    errors: asyncio.Queue[Exception]

    async def next_error(self, timeout: float = 5.0) -> str:
        return str(await asyncio.wait_for(self.errors.get(), timeout)).lower()

    async def violation(self, kind: str, subject: str) -> None:
        """Wait for the server's permissions violation for ``kind`` (publish or
        subscription) to ``subject``; other errors in between fail the test."""
        error = await self.next_error()
        assert error == f'nats: permissions violation for {kind} to "{subject.lower()}"', error


Connect = Callable[..., Awaitable[Connection]]


@pytest.fixture
def local_auth(tmp_path: Path) -> LocalAuth:
    return ensure_local(tmp_path / "data", port=free_port(), http_port=free_port())


@pytest.fixture
def secured_server(local_auth: LocalAuth, tmp_path: Path) -> Iterator[NatsServer]:
    port = int(local_auth.server_url.rsplit(":", 1)[1])
    http_port = _http_port(local_auth.server_config)
    server = NatsServer(store_dir=tmp_path / "data" / "nats", port=port, tls=True,
                        monitor_port=http_port, config=local_auth.server_config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _http_port(config: Path) -> int:
    for line in config.read_text().splitlines():
        if line.startswith("http:"):
            return int(line.rsplit(":", 1)[1].strip().strip('"'))
    raise AssertionError(f"no http port in {config}")


@pytest.fixture
async def connect(local_auth: LocalAuth, secured_server: NatsServer
                  ) -> AsyncIterator[Connect]:
    """``await connect(Role.CLIENT)``: a connection with that role's local context."""
    opened: list[NATS] = []

    async def open_as(role: Role | None = None, *, context: ClientContext | None = None,
                      **overrides: Any) -> Connection:
        ctx = context or ClientContext.read(local_auth.contexts[role or Role.CLIENT])
        errors: asyncio.Queue[Exception] = asyncio.Queue()

        async def on_error(exc: Exception) -> None:
            errors.put_nowait(exc)

        options = {**connect_kwargs(ctx), "error_cb": on_error, "allow_reconnect": False,
                   "connect_timeout": 3, **overrides}
        nc = await nats.connect(**options)
        opened.append(nc)
        await nc.flush()
        return Connection(nc, errors)

    yield open_as
    for nc in opened:
        await nc.close()
