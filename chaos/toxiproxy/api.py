"""The Toxiproxy HTTP API (v2 shapes): routes, JSON bodies, status codes, error bodies.

Errors look like Toxiproxy's: ``{"error": "<message>", "status": <code>}`` with the same
status (400 bad body/missing field/invalid toxic, 404 not found, 409 already exists).
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from aiohttp import web

from broker_agents.core.errors import BrokerError, ErrorCode
from chaos.toxiproxy.proxy import Proxy
from chaos.toxiproxy.toxics import Toxic, ToxicError

VERSION = "2.9.0-broker-agents"


# The HTTP status each API error answers with, as the code our errors carry.
_CODES = {400: ErrorCode.BAD_REQUEST, 404: ErrorCode.NOT_FOUND, 409: ErrorCode.ALREADY_EXISTS}


class ApiError(BrokerError):
    """An API request Toxiproxy would refuse; ``status`` is the HTTP status it answers."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(_CODES.get(status, ErrorCode.INTERNAL), message, {"status": status})
        self.status = status


def _error(exc: ApiError) -> web.Response:
    return web.json_response({"error": exc.message, "status": exc.status}, status=exc.status)


class ProxyCollection:
    """All proxies by name; one lock serialises changes (like Toxiproxy's collection)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.proxies: dict[str, Proxy] = {}
        self.lock = asyncio.Lock()
        self.rng = rng or random.Random()

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError("proxy not found", 404)
        return proxy

    async def add(self, body: Any) -> Proxy:
        if not isinstance(body, dict):
            raise ApiError("bad request body", 400)
        for key in ("name", "upstream"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise ApiError(f"missing required field: {key}", 400)
        if body["name"] in self.proxies:
            raise ApiError("proxy already exists", 409)
        proxy = Proxy(body["name"], body.get("listen") or "127.0.0.1:0", body["upstream"],
                      self.rng)
        if body.get("enabled", True):
            try:
                await proxy.start()
            except (OSError, ValueError) as exc:
                raise ApiError(f"listen {proxy.listen}: {exc}", 500) from exc
        self.proxies[proxy.name] = proxy
        return proxy

    async def remove(self, name: str) -> None:
        proxy = self.get(name)
        await proxy.stop()
        del self.proxies[name]

    async def update(self, name: str, body: Any) -> Proxy:
        proxy = self.get(name)
        if not isinstance(body, dict):
            raise ApiError("bad request body", 400)
        listen = body.get("listen") or proxy.listen
        upstream = body.get("upstream") or proxy.upstream
        enabled = body.get("enabled", proxy.enabled)
        if listen != proxy.listen or upstream != proxy.upstream:
            await proxy.stop()  # changing addresses restarts the proxy and drops connections
            proxy.listen, proxy.upstream = listen, upstream
        if enabled and not proxy.enabled:
            try:
                await proxy.start()
            except (OSError, ValueError) as exc:
                raise ApiError(f"listen {proxy.listen}: {exc}", 500) from exc
        elif not enabled and proxy.enabled:
            await proxy.stop()
        return proxy

    async def populate(self, body: Any) -> list[Proxy]:
        if not isinstance(body, list):
            raise ApiError("bad request body", 400)
        result = []
        for item in body:
            if not isinstance(item, dict):
                raise ApiError("bad request body", 400)
            existing = self.proxies.get(str(item.get("name")))
            if existing is not None and (
                existing.upstream != item.get("upstream")
                or (item.get("listen") and existing.listen != item.get("listen"))
            ):
                await self.remove(existing.name)
                existing = None
            result.append(existing if existing is not None else await self.add(item))
        return result

    async def reset(self) -> None:
        for proxy in self.proxies.values():
            proxy.toxics.clear()
            proxy.toxics_changed()
            if not proxy.enabled:
                await proxy.start()

    async def close(self) -> None:
        for proxy in list(self.proxies.values()):
            await proxy.stop()
        self.proxies.clear()


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"null")
    except ValueError as exc:
        raise ApiError(f"bad request body: {exc}", 400) from exc


def build_app(collection: ProxyCollection) -> web.Application:
    """An aiohttp app serving the Toxiproxy API over ``collection``."""
    routes = web.RouteTableDef()

    def guarded(handler: Any) -> Any:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            try:
                async with collection.lock:
                    result: web.StreamResponse = await handler(request)
                    return result
            except ApiError as exc:
                return _error(exc)
            except ToxicError as exc:
                return _error(ApiError(str(exc), exc.status))
        return wrapper

    @routes.get("/version")
    async def version(_: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    @routes.post("/reset")
    @guarded
    async def reset(_: web.Request) -> web.Response:
        await collection.reset()
        return web.Response(status=204)

    @routes.get("/proxies")
    @guarded
    async def proxy_index(_: web.Request) -> web.Response:
        return web.json_response({n: p.to_json() for n, p in collection.proxies.items()})

    @routes.post("/proxies")
    @guarded
    async def proxy_create(request: web.Request) -> web.Response:
        proxy = await collection.add(await _body(request))
        return web.json_response(proxy.to_json(), status=201)

    @routes.post("/populate")
    @guarded
    async def populate(request: web.Request) -> web.Response:
        try:
            proxies = await collection.populate(await _body(request))
        except ApiError as exc:
            return web.json_response({"error": exc.message, "status": exc.status,
                                      "proxies": []}, status=exc.status)
        return web.json_response({"proxies": [p.to_json() for p in proxies]}, status=201)

    @routes.get("/proxies/{proxy}")
    @guarded
    async def proxy_show(request: web.Request) -> web.Response:
        return web.json_response(collection.get(request.match_info["proxy"]).to_json())

    @routes.route("POST", "/proxies/{proxy}")
    @guarded
    async def proxy_update(request: web.Request) -> web.Response:
        name = request.match_info["proxy"]
        collection.get(name)
        proxy = await collection.update(name, await _body(request))
        return web.json_response(proxy.to_json())

    @routes.delete("/proxies/{proxy}")
    @guarded
    async def proxy_delete(request: web.Request) -> web.Response:
        await collection.remove(request.match_info["proxy"])
        return web.Response(status=204)

    @routes.get("/proxies/{proxy}/toxics")
    @guarded
    async def toxic_index(request: web.Request) -> web.Response:
        proxy = collection.get(request.match_info["proxy"])
        return web.json_response([t.to_json() for t in proxy.toxics.values()])

    @routes.post("/proxies/{proxy}/toxics")
    @guarded
    async def toxic_create(request: web.Request) -> web.Response:
        proxy = collection.get(request.match_info["proxy"])
        toxic = Toxic.from_json(await _body(request))
        if toxic.name in proxy.toxics:
            raise ApiError("toxic already exists", 409)
        proxy.toxics[toxic.name] = toxic
        proxy.toxics_changed()
        return web.json_response(toxic.to_json())

    def _toxic(request: web.Request) -> tuple[Proxy, Toxic]:
        proxy = collection.get(request.match_info["proxy"])
        toxic = proxy.toxics.get(request.match_info["toxic"])
        if toxic is None:
            raise ApiError("toxic not found", 404)
        return proxy, toxic

    @routes.get("/proxies/{proxy}/toxics/{toxic}")
    @guarded
    async def toxic_show(request: web.Request) -> web.Response:
        return web.json_response(_toxic(request)[1].to_json())

    @routes.route("POST", "/proxies/{proxy}/toxics/{toxic}")
    @guarded
    async def toxic_update(request: web.Request) -> web.Response:
        proxy, toxic = _toxic(request)
        toxic.update(await _body(request))
        proxy.toxics_changed()
        return web.json_response(toxic.to_json())

    @routes.delete("/proxies/{proxy}/toxics/{toxic}")
    @guarded
    async def toxic_delete(request: web.Request) -> web.Response:
        proxy, toxic = _toxic(request)
        del proxy.toxics[toxic.name]
        proxy.toxics_changed()
        return web.Response(status=204)

    app = web.Application()
    app.add_routes(routes)
    # PATCH is Toxiproxy's preferred update verb; POST stays for older clients.
    app.router.add_route("PATCH", "/proxies/{proxy}", proxy_update)
    app.router.add_route("PATCH", "/proxies/{proxy}/toxics/{toxic}", toxic_update)
    return app
