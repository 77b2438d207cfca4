"""TCP proxying: a listener per proxy, two toxic-chained links per accepted connection.

Toxics are looked up per chunk, so adding or removing a toxic changes live connections
immediately (a partition must cut connections that already exist, not just new ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from typing import Any

from chaos.toxiproxy.toxics import Chunk, LinkClose, Toxic, ToxicState, pipe

READ_SIZE = 64 * 1024
QUEUE_CHUNKS = 256


def split_hostport(addr: str) -> tuple[str, int]:
    """Parse ``host:port`` / ``[::]:port`` / ``:port`` as Go's net package would."""
    host, sep, port = addr.rpartition(":")
    if not sep:
        raise ValueError(f"address {addr!r} has no port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _set_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Link:
    """One direction of a connection: read chunks, pass them through the toxic chain."""

    def __init__(self, conn: Connection, stream: str, src: asyncio.StreamReader,
                 dst: asyncio.StreamWriter) -> None:
        self.conn = conn
        self.stream = stream
        self.src = src
        self.dst = dst
        self.queue: asyncio.Queue[Chunk | None] = asyncio.Queue(QUEUE_CHUNKS)
        self.states: dict[str, ToxicState] = {}
        self.applies: dict[str, bool] = {}

    def active(self) -> list[Toxic]:
        """The proxy's toxics on this stream that this link drew (per toxicity)."""
        chosen = []
        for toxic in self.conn.proxy.toxics.values():
            if toxic.stream != self.stream:
                continue
            if toxic.name not in self.applies:
                self.applies[toxic.name] = self.conn.proxy.rng.random() < toxic.toxicity
            if self.applies[toxic.name]:
                chosen.append(toxic)
        return chosen

    def forget(self, name: str) -> None:
        self.applies.pop(name, None)
        self.states.pop(name, None)

    async def read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await self.src.read(READ_SIZE)
                if not data:
                    break
                await self.queue.put(Chunk(data, loop.time()))
        except (ConnectionError, OSError):
            pass
        await self.queue.put(None)

    async def pump(self) -> None:
        """Pass chunks through the toxics; end the connection at EOF or on a toxic's say."""
        try:
            while True:
                chunk = await self.queue.get()
                toxics = self.active()
                if chunk is None:
                    delays = [t.attributes.get("delay", 0) for t in toxics
                              if t.type == "slow_close"]
                    if delays and max(delays) > 0:
                        await asyncio.sleep(max(delays) / 1000.0)  # sleep-ok: slow_close
                    raise LinkClose()
                await self._emit(0, chunk, toxics)
        except LinkClose as close:
            self.conn.close(reset=close.reset)
        except (ConnectionError, OSError):
            self.conn.close()

    async def _emit(self, index: int, chunk: Chunk, toxics: list[Toxic]) -> None:
        if index == len(toxics):
            self.dst.write(chunk.data)
            await self.dst.drain()
            return
        toxic = toxics[index]
        state = self.states.setdefault(toxic.name, ToxicState())

        async def out(piece: Chunk) -> None:
            await self._emit(index + 1, piece, toxics)

        await pipe(toxic, chunk, out, state, self.conn.proxy.rng)


class Connection:
    """A client connection and its upstream connection, with both links and timers."""

    def __init__(self, proxy: Proxy, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.proxy = proxy
        self.client_writer = client[1]
        self.upstream_writer = upstream[1]
        self.up = Link(self, "upstream", client[0], upstream[1])
        self.down = Link(self, "downstream", upstream[0], client[1])
        self.closed = asyncio.Event()
        self.timers: dict[str, tuple[int, asyncio.Task[None]]] = {}

    def close(self, reset: bool = False) -> None:
        """Drop both sockets now (RST if ``reset``); idempotent."""
        if self.closed.is_set():
            return
        self.closed.set()
        for writer in (self.client_writer, self.upstream_writer):
            if reset:
                _set_rst(writer)
            writer.transport.abort()
        for _, task in self.timers.values():
            task.cancel()

    def refresh(self) -> None:
        """Re-arm timers after the proxy's toxics changed (timeout closes idle links too)."""
        live: dict[str, Toxic] = {}
        for link in (self.up, self.down):
            for name in list(link.applies):
                if name not in self.proxy.toxics:
                    link.forget(name)
            for toxic in link.active():
                if toxic.type == "timeout" and toxic.attributes.get("timeout", 0) > 0:
                    live[toxic.name] = toxic
        for name, (version, task) in list(self.timers.items()):
            if name not in live or live[name].version != version:
                task.cancel()
                del self.timers[name]
        for name, toxic in live.items():
            if name not in self.timers:
                delay = toxic.attributes["timeout"] / 1000.0
                self.timers[name] = (toxic.version, asyncio.create_task(self._close_after(delay)))

    async def _close_after(self, delay: float) -> None:
        await asyncio.sleep(delay)  # sleep-ok: the timeout toxic's documented deadline
        self.close()

    async def run(self) -> None:
        self.refresh()
        tasks = [asyncio.create_task(c) for c in (
            self.up.read_loop(), self.down.read_loop(), self.up.pump(), self.down.pump())]
        try:
            await self.closed.wait()
        finally:
            self.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class Proxy:
    """A named listener forwarding to ``upstream``, with an ordered set of toxics."""

    def __init__(self, name: str, listen: str, upstream: str, rng: random.Random) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.rng = rng
        self.toxics: dict[str, Toxic] = {}
        self.connections: set[Connection] = set()
        self._server: asyncio.Server | None = None

    def to_json(self, with_toxics: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "listen": self.listen,
                                "upstream": self.upstream, "enabled": self.enabled}
        if with_toxics:
            data["toxics"] = [t.to_json() for t in self.toxics.values()]
        return data

    async def start(self) -> None:
        if self._server is not None:
            return
        host, port = split_hostport(self.listen)
        self._server = await asyncio.start_server(self._accept, host, port)
        actual = self._server.sockets[0].getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.listen = f"{shown}:{actual}"
        self.enabled = True

    async def stop(self) -> None:
        """Stop listening and drop every connection (what ``enabled: false`` means)."""
        self.enabled = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self.connections):
            conn.close()

    def toxics_changed(self) -> None:
        for conn in list(self.connections):
            conn.refresh()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = split_hostport(self.upstream)
        try:
            upstream = await asyncio.open_connection(host, port)
        except OSError:
            writer.transport.abort()
            return
        if not self.enabled:
            writer.transport.abort()
            upstream[1].transport.abort()
            return
        conn = Connection(self, (reader, writer), upstream)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
