"""``broker-agents dashboard`` as a library: a typed config and ``run()``, like uvicorn's.

The dashboard connects as an ``observer`` (read-only: events and bucket reads; it cannot
publish a request that writes or a bucket entry), found like any CLI command's context
(``--context``, ``$BA_CONTEXT``, then ``~/.config/broker-agents/`` where ``broker-agents
up`` writes it, then ``./data/auth/``). It listens on 127.0.0.1 unless told otherwise, and
never shows credentials: none are in the model it serves. ``Embedded`` is the same thing
inside a node (``[dashboard] enabled``), mounted on the node's HTTP server at ``/ui``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from nats.aio.client import Client as NATS
from pydantic import BaseModel, Field

from broker_agents.logging import get_logger
from broker_agents.transport import connect_client
from node.auth.roles import Role
from node.dashboard.app import Dashboard
from node.dashboard.collector import Collector
from node.dashboard.model import ClusterModel

log = get_logger(component="dashboard")


class DashboardSettings(BaseModel):
    """Everything ``run()`` needs; the CLI fills it from flags and a config file."""

    model_config = {"extra": "forbid"}

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    prefix: str = "ba"
    prometheus_url: str | None = None
    nats: str | None = None
    context: Path | None = None
    creds: Path | None = None
    tls_ca: Path | None = None

    @classmethod
    def from_config_file(cls, path: Path, **overrides: Any) -> DashboardSettings:
        """A node or playground TOML's ``[node] subject_prefix`` and ``[dashboard]``
        (``host``, ``port``, ``prometheus_url``, ``context``); ``overrides`` (flags that
        were given) win."""
        data = tomllib.loads(path.read_text())
        section = data.get("dashboard") or {}
        base: dict[str, Any] = {"prefix": (data.get("node") or {}).get("subject_prefix", "ba")}
        for key in ("host", "port", "prometheus_url", "context"):
            if section.get(key) is not None:
                base[key] = section[key]
        return cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


async def connect_observer(settings: DashboardSettings,
                           reconnected: Callable[[], None] | None = None,
                           errors: Callable[[Exception], None] | None = None) -> NATS:
    """The dashboard's own long-lived observer connection (reconnects for ever);
    ``reconnected`` is called after each reconnect (mirrors re-list)."""
    from node.cli.common import Target

    servers, security, found = Target(settings.nats, settings.context, settings.creds,
                                      settings.tls_ca).resolve(Role.OBSERVER)
    log.info("dashboard.connecting", servers=servers, context=str(found) if found else None)

    async def on_error(exc: Exception) -> None:
        log.warning("dashboard.nats_error", error=repr(exc))
        if errors is not None:
            errors(exc)

    async def on_reconnect() -> None:
        if reconnected is not None:
            reconnected()

    return await connect_client(servers, security=security, connect_timeout=3,
                                max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                error_cb=on_error, reconnected_cb=on_reconnect,
                                name="ba-dashboard")


class Embedded:
    """A model, its collector and its routes over one connection (standalone or node)."""

    def __init__(self, nc: NATS, prefix: str, prometheus_url: str | None = None) -> None:
        self.nc = nc
        self.model = ClusterModel(prefix=prefix)
        self.collector = Collector(nc, self.model, prefix, prometheus_url)
        self.dashboard = Dashboard(self.model, lambda: self.nc.is_connected)

    async def start(self) -> None:
        await self.collector.start()

    async def stop(self) -> None:
        await self.collector.stop()


async def serve(settings: DashboardSettings, stop: asyncio.Event | None = None,
                started: asyncio.Future[int] | None = None) -> None:
    """Connect, collect, serve until ``stop`` is set; ``started`` gets the bound port."""
    holder: list[Embedded] = []

    def reconnected() -> None:
        for each in holder:
            each.collector.notify_reconnected()

    nc = await connect_observer(settings, reconnected)
    embedded = Embedded(nc, settings.prefix, settings.prometheus_url)
    holder.append(embedded)
    await embedded.start()
    app = web.Application()
    embedded.dashboard.routes(app, ui="")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    sockets = getattr(site._server, "sockets", None)
    port = int(sockets[0].getsockname()[1]) if sockets else settings.port
    log.info("dashboard.listening", url=f"http://{settings.host}:{port}/")
    if started is not None and not started.done():
        started.set_result(port)
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
        await embedded.stop()
        with contextlib.suppress(Exception):
            await nc.close()


def run(settings: DashboardSettings) -> None:
    """Serve until Ctrl-C (SIGINT/SIGTERM end it cleanly)."""
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(main())
