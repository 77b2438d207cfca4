"""A node's connection reconnects forever with exponential backoff, reset once back."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from broker_agents.transport import ConnectOptions, connect
from node.auth.roles import Role
from node.embedded import start_server
from tests.secured import security


async def test_reconnect_wait_doubles_while_down_and_resets_after(tmp_path: Path) -> None:
    server = start_server(tmp_path / "s")
    back, capped = asyncio.Event(), asyncio.Event()
    waits: list[float] = []

    async def on_back() -> None:
        back.set()

    async def on_error(nc: Any, _: Exception) -> None:
        if nc is not None and nc.is_reconnecting:
            waits.append(nc.options["reconnect_time_wait"])
            if waits[-1] >= 0.16:
                capped.set()

    nc = await connect(ConnectOptions(servers=[server.url], reconnect_wait=0.02,
                                      security=security(server, Role.NODE),
                                      max_reconnect_wait=0.16, on_reconnect=[on_back],
                                      on_error=[on_error]))
    try:
        server.kill()
        await asyncio.wait_for(capped.wait(), 10)  # each failed attempt doubles the wait
        assert waits[0] <= 0.04 and waits[-1] == 0.16
        assert all(b in (a, 2 * a, 0.16) for a, b in itertools.pairwise(waits))
        assert nc.is_reconnecting
        server.start()
        await asyncio.wait_for(back.wait(), 10)
        assert nc.options["reconnect_time_wait"] == 0.02
        await nc.flush()
    finally:
        await nc.close()
        server.stop()
