"""Run the Toxiproxy-compatible server: in the current event loop, or in its own thread.

The thread form exists because the toxiproxy-python client is blocking (``requests``):
called from a test or a harness, it must not share the loop that serves it.
"""

from __future__ import annotations

import asyncio
import random
import threading
from concurrent.futures import Future

from aiohttp import web

from chaos.toxiproxy.api import ProxyCollection, build_app


class ToxiproxyServer:
    """The API server plus its proxies, living in one asyncio loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int | None = None) -> None:
        self.host = host
        self.port = port
        self.collection = ProxyCollection(random.Random(seed))
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> ToxiproxyServer:
        self._runner = web.AppRunner(build_app(self.collection), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # aiohttp keeps the asyncio server here
        if server is not None and self.port == 0:
            sockets = getattr(server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        await self.collection.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class ThreadedToxiproxy:
    """A ToxiproxyServer in a daemon thread with its own loop; ``start()`` blocks until ready."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int | None = None) -> None:
        self.server = ToxiproxyServer(host, port, seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    def start(self, timeout: float = 10.0) -> ThreadedToxiproxy:
        ready: Future[None] = Future()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(ready))
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="toxiproxy", daemon=True)
        self._thread.start()
        ready.result(timeout)
        return self

    async def _serve(self, ready: Future[None]) -> None:
        self._stopped = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        await self._stopped.wait()
        await self.server.stop()

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is None or self._stopped is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout)
        self._loop = None

    def __enter__(self) -> ThreadedToxiproxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
