"""The dashboard inside a node (``[dashboard] enabled = true``): pages at ``/ui``, the API
at ``/api/`` on the node's HTTP server.

Routes are mounted when the HTTP server starts (before NATS); the collector starts once
the node is connected, on a connection of its own as an ``observer`` (the context in
``[dashboard] context``, else found like a CLI command's, the node's data dir included),
never on the node's connection: the dashboard reads with the least rights that read. With
no observer identity to be found on a secured node it serves nothing live and says why in
the log (``dashboard.no_observer_context``); with ``auth = "none"`` it connects plainly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web
from nats.aio.client import Client as NATS

from broker_agents.logging import get_logger
from broker_agents.transport import Security, connect_client
from node.auth import context as contexts
from node.auth.context import ClientContext
from node.auth.roles import Role
from node.dashboard.app import Dashboard
from node.dashboard.collector import Collector
from node.dashboard.model import ClusterModel

if TYPE_CHECKING:
    from node.daemon import Node

log = get_logger(component="dashboard")


def attach(node: Node) -> list[Callable[[web.Application], None]]:
    """The HTTP mounts of ``node``'s dashboard (none unless enabled); sets
    ``node.dashboard``, which the daemon starts once connected and stops at shutdown."""
    if not node.config.dashboard.enabled:
        return []
    node.dashboard = NodeDashboard(node)
    return [node.dashboard.mount]


class NodeDashboard:
    def __init__(self, node: Node) -> None:
        self.node = node
        cfg = node.config
        self.prefix = cfg.node.subject_prefix
        self.model = ClusterModel(prefix=self.prefix)
        self.nc: NATS | None = None
        self.collector: Collector | None = None
        self.dashboard = Dashboard(self.model, lambda: bool(self.nc and self.nc.is_connected))
        self._task: asyncio.Task[None] | None = None

    def mount(self, app: web.Application) -> None:
        self.dashboard.routes(app, ui="/ui")

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect(), name="node-dashboard")

    async def _connect(self) -> None:
        cfg = self.node.config
        found = contexts.find(cfg.dashboard.context, data_dir=cfg.node.data_dir,
                              role=Role.OBSERVER)
        if found is not None:
            ctx = ClientContext.read(found)
            servers, security = list(ctx.servers), ctx.security()
        elif cfg.nats.mode == "none":
            servers, security = [self.node.nats_url], Security()
        else:
            log.error("dashboard.no_observer_context", data_dir=str(cfg.node.data_dir),
                      hint="give [dashboard] context an observer context "
                      "(broker-agents auth issue ... observer)")
            return

        async def reconnected() -> None:
            if self.collector is not None:
                self.collector.notify_reconnected()

        self.nc = await connect_client(servers, security=security, connect_timeout=3,
                                       max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                       reconnected_cb=reconnected, name="ba-dashboard")
        self.collector = Collector(self.nc, self.model, self.prefix,
                                   cfg.dashboard.prometheus_url)
        await self.collector.start()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.collector is not None:
            await self.collector.stop()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
