"""The node's HTTP face: Prometheus metrics, liveness and readiness.

``/healthz`` answers 503 with the node's liveness record (``healthy``, ``problems``) while
the process is not worth keeping; ``/readyz`` answers 503 with its readiness record while
it cannot serve. ``node.health`` decides both; a part of the node that can stop serving on
its own (a fail-stopped consensus member) says why in ``problems`` by being a
``ReadinessSource``. ``mounts`` add routes before it starts (the dashboard's ``/ui`` and
``/api/`` with ``[dashboard] enabled``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


@runtime_checkable
class ReadinessSource(Protocol):
    def unready(self) -> dict[str, str]:
        """What keeps this part from serving (name -> why); empty while it serves."""


class HttpServer:
    def __init__(self, host: str, port: int, readiness: Callable[[], dict[str, Any]],
                 liveness: Callable[[], dict[str, Any]],
                 mounts: Sequence[Callable[[web.Application], None]] = ()) -> None:
        self.host = host
        self._mounts = list(mounts)
        self.port = port
        self._readiness = readiness
        self._liveness = liveness
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        for mount in self._mounts:
            mount(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        state = self._liveness()
        return web.json_response(state, status=200 if state.get("healthy") else 503)

    async def _readyz(self, _: web.Request) -> web.Response:
        state = self._readiness()
        return web.json_response(state, status=200 if state.get("ready") else 503)
