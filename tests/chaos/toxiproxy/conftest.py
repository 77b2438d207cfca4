"""Fixtures: our Toxiproxy-compatible server in a thread, a client, and TCP echo servers."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator

import pytest

from chaos.toxiproxy import ThreadedToxiproxy, ToxiproxyClient


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while True:
            try:
                data = self.request.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.request.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo_addr() -> Iterator[str]:
    """``host:port`` of a TCP echo server."""
    server = _Server(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def toxi_server() -> Iterator[ThreadedToxiproxy]:
    with ThreadedToxiproxy(seed=7) as server:
        yield server


@pytest.fixture
def toxi(toxi_server: ThreadedToxiproxy) -> ToxiproxyClient:
    return ToxiproxyClient(toxi_server.url)
