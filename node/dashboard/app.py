"""The dashboard's HTTP face: the JSON API, server-sent events and the static pages.

Routes (``/work/briefs/dashboard_api.md``): ``/api/cluster``, ``/api/agents``,
``/api/agents/{id}``, ``/api/groups``, ``/api/auctions``, ``/api/accounts``,
``/api/coordination``, ``/api/variables``, ``/api/stream`` (SSE) and ``/healthz``. Pages:
``index.html`` at ``<ui>/`` and ``node/dashboard/static/*`` under ``<ui>/static/``, where
``<ui>`` is ``""`` standalone and ``/ui`` inside a node (``/ui`` redirects to ``/ui/``).
Pages use ``static/...`` relative and ``/api/...`` absolute.

Only GET (and HEAD) is answered: any other method is 405 with a structured error. Errors
are ``{"error": {"code", "message"}}``. The SSE hub builds a kind's document only when
the model says it changed, at most every ``SSE_PERIOD`` s, and only while clients listen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge

from broker_agents.core.errors import ErrorCode
from node.dashboard import docs
from node.dashboard.model import ClusterModel

STATIC = Path(__file__).parent / "static"
SSE_PERIOD = 0.5
PING_EVERY = 15.0

CLIENTS = Gauge("ba_dashboard_clients", "Server-sent event connections open")
REQUESTS = Counter("ba_dashboard_requests_total", "Dashboard HTTP requests", ["path"])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, code: ErrorCode | str, message: str) -> web.Response:
    return web.json_response({"error": {"code": str(code), "message": message}},
                             status=status)


def _dumps(doc: Any) -> str:
    return json.dumps(doc, default=str, allow_nan=False)


class Dashboard:
    """The routes over one ``ClusterModel``; ``connected()`` says whether NATS is up."""

    def __init__(self, model: ClusterModel, connected: Callable[[], bool],
                 static_dir: Path = STATIC) -> None:
        self.model = model
        self.connected = connected
        self.static_dir = static_dir
        self._clients: set[asyncio.Queue[str | None]] = set()
        self._hub: asyncio.Task[None] | None = None

    def routes(self, app: web.Application, ui: str = "") -> None:
        """Mount the API and pages on ``app``; ``ui`` is where the pages live."""
        api: dict[str, Handler] = {
            "/api/cluster": self._kind("cluster"), "/api/agents": self._agents,
            "/api/agents/{agent_id}": self._agent, "/api/groups": self._kind("groups"),
            "/api/auctions": self._auctions, "/api/accounts": self._kind("accounts"),
            "/api/coordination": self._kind("coordination"),
            "/api/variables": self._kind("variables"), "/api/stream": self._stream}
        for path, handler in api.items():
            app.router.add_route("*", path, self._only_get(path, handler))
        if not ui:
            app.router.add_route("*", "/healthz", self._only_get("/healthz", self._healthz))
        else:
            app.router.add_get(ui, lambda _: _redirect(f"{ui}/"))
        app.router.add_route("*", f"{ui}/", self._only_get(f"{ui}/", self._index))
        app.router.add_route("*", f"{ui}/api/{{tail:.*}}", self._only_get(
            "/api/unknown", self._unknown_api))
        if ui:
            app.router.add_route("*", "/api/{tail:.*}", self._only_get(
                "/api/unknown", self._unknown_api))
        if self.static_dir.is_dir():
            app.router.add_static(f"{ui}/static/", self.static_dir)
        app.on_shutdown.append(self._close_streams)

    # -- plumbing -------------------------------------------------------------------

    def _only_get(self, label: str, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            REQUESTS.labels(label).inc()
            if request.method not in ("GET", "HEAD"):
                return error(405, "method_not_allowed",
                             f"{request.method} is not allowed: the dashboard is read-only")
            return await handler(request)

        return guarded

    def _kind(self, kind: str) -> Handler:
        async def handler(_: web.Request) -> web.StreamResponse:
            return _json(docs.document(kind, self.model, time.time()))

        return handler

    async def _healthz(self, _: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True, "nats_connected": self.connected()})

    async def _index(self, _: web.Request) -> web.StreamResponse:
        index = self.static_dir / "index.html"
        if not index.is_file():
            return web.Response(text="<!doctype html><title>broker-agents dashboard</title>"
                                "<p>The pages are not installed; the API is at /api/.",
                                content_type="text/html")
        return web.FileResponse(index)

    async def _unknown_api(self, request: web.Request) -> web.StreamResponse:
        return error(404, ErrorCode.NOT_FOUND, f"no such API path: {request.path}")

    # -- API ------------------------------------------------------------------------

    async def _agents(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        bad = set(q) - {"capability", "health", "node"}
        if bad:
            return error(400, ErrorCode.VALIDATION,
                         f"unknown filter(s): {', '.join(sorted(bad))}; "
                         "use capability, health, node")
        return _json(docs.agents(self.model, time.time(), q.get("capability") or None,
                                 q.get("health") or None, q.get("node") or None))

    async def _agent(self, request: web.Request) -> web.StreamResponse:
        agent_id = request.match_info["agent_id"]
        doc = docs.agent(self.model, agent_id)
        if doc is None:
            return error(404, ErrorCode.NOT_FOUND, f"agent {agent_id!r} is not known")
        return _json(doc)

    async def _auctions(self, request: web.Request) -> web.StreamResponse:
        bad = set(request.query) - {"state"}
        if bad:
            return error(400, ErrorCode.VALIDATION,
                         f"unknown filter(s): {', '.join(sorted(bad))}; use state")
        return _json(docs.auctions(self.model, time.time(),
                                   request.query.get("state") or None))

    # -- server-sent events ---------------------------------------------------------

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=64)
        now = time.time()
        # The current state first (the page needs no GETs), built before the queue joins
        # with no await between: whatever the hub queues later is built later, so newer.
        state = [_event(kind, docs.document(kind, self.model, now)) for kind in docs.KINDS]
        self._clients.add(queue)
        CLIENTS.set(len(self._clients))
        if self._hub is None or self._hub.done():
            self._hub = asyncio.create_task(self._broadcast(), name="dashboard-sse")
        try:
            for chunk_bytes in state:
                await response.write(chunk_bytes)
            while True:
                try:
                    chunk = await asyncio.wait_for(queue.get(), PING_EVERY)
                except TimeoutError:
                    chunk = ": ping\n\n"
                if chunk is None:
                    break
                await response.write(chunk.encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(queue)
            CLIENTS.set(len(self._clients))
        return response

    async def _broadcast(self) -> None:
        """Every ``SSE_PERIOD``: each kind whose model version moved, to every client."""
        sent: dict[str, int] = {kind: self.model.versions.get(kind, 0) for kind in docs.KINDS}
        last_doc: dict[str, str] = {}
        while self._clients:
            await asyncio.sleep(SSE_PERIOD)  # the rate limit: at most twice a second per kind
            now = time.time()
            for kind in docs.KINDS:
                version = self.model.versions.get(kind, 0)
                # cluster documents age (uptime, down after silence): rebuild them anyway
                if version == sent[kind] and kind != "cluster":
                    continue
                sent[kind] = version
                doc = docs.document(kind, self.model, now)
                body = _dumps({k: v for k, v in doc.items() if k != "generated_at"})
                if last_doc.get(kind) == body:
                    continue
                last_doc[kind] = body
                chunk = _event(kind, doc).decode()
                for queue in list(self._clients):
                    with contextlib.suppress(asyncio.QueueFull):  # a stuck client skips one
                        queue.put_nowait(chunk)

    async def _close_streams(self, _: web.Application) -> None:
        for queue in list(self._clients):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        if self._hub is not None:
            self._hub.cancel()


def _json(doc: Any) -> web.Response:
    return web.Response(text=_dumps(doc), content_type="application/json")


def _event(kind: str, doc: Any) -> bytes:
    return f"event: {kind}\ndata: {_dumps(doc)}\n\n".encode()


async def _redirect(to: str) -> web.StreamResponse:
    raise web.HTTPFound(to)
