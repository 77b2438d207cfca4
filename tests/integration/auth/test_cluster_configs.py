"""A 3-server cluster from ``broker-agents auth server-config --servers 3``: routes over
TLS with route authentication form, and the cluster serves an R3 KV put made with node
creds through a context written by ``auth context``."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from typer.testing import CliRunner

from node.auth.authority import Authority
from node.auth.context import ClientContext, connect_kwargs
from node.auth.server_config import ROUTE_USER
from node.cli import app
from node.embedded import NatsServer, free_port

pytestmark = pytest.mark.timeout(90)
SIZE = 3


def cli(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.output)
    return data


def peers(server: NatsServer) -> set[str]:
    """The names of the servers ``server`` has a route to (a pooled route counts once)."""
    url = f"http://127.0.0.1:{server.monitor_port}/routez"
    with urllib.request.urlopen(url, timeout=1.0) as resp:
        routes = json.loads(resp.read()).get("routes") or []
    return {r.get("remote_name") or r["remote_id"] for r in routes}


def wait_for_routes(servers: list[NatsServer], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(peers(s)) == SIZE - 1 for s in servers):
            return
        threading.Event().wait(0.05)  # bounded poll of external processes
    raise AssertionError(f"routes did not form: {[peers(s) for s in servers]}")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Path, list[NatsServer]]]:
    directory = tmp_path / "auth"
    ports = [[free_port() for _ in range(SIZE)] for _ in range(3)]
    cli("auth", "init", "--dir", str(directory))
    written = cli("auth", "server-config", "--dir", str(directory), "--servers", str(SIZE),
                  "--host", "127.0.0.1", "--listen", "127.0.0.1",
                  "--store-dir", str(tmp_path / "store" / "{name}"),
                  *(a for p in ports[0] for a in ("--port", str(p))),
                  *(a for p in ports[1] for a in ("--cluster-port", str(p))),
                  *(a for p in ports[2] for a in ("--http-port", str(p))))["wrote"]
    assert isinstance(written, list) and len(written) == SIZE
    servers = [NatsServer(tls=True, store_dir=tmp_path / "store" / f"ba-{i + 1}",
                                port=ports[0][i], monitor_port=ports[2][i],
                                cluster_port=ports[1][i], config=Path(conf),
                                min_version=(2, 10))
               for i, conf in enumerate(written)]
    try:
        for server in servers:
            server.start(wait_jetstream=False)
        for server in servers:
            server.wait_healthy(30.0)
        yield directory, servers
    finally:
        for server in servers:
            server.stop()


def route_hello(port: int, tls: ssl.SSLContext, password: str) -> bytes:
    """Dial a route port as a would-be peer server: TLS, then the route CONNECT; what the
    server says before it closes the connection."""
    connect = {"verbose": False, "pedantic": False, "user": ROUTE_USER, "pass": password,
               "tls_required": True, "name": "rogue", "cluster": "ba"}
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            tls.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        stream = sock.makefile("rb")
        try:
            info = stream.readline()
            if not info.startswith(b"INFO "):
                return info
            sock.sendall(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
            return stream.read()  # until the server closes the connection
        except (ssl.SSLError, ConnectionError) as exc:
            return repr(exc).encode()


def test_a_route_needs_a_certificate_from_the_ca_and_the_route_secret(
        cluster: tuple[Path, list[NatsServer]]) -> None:
    directory, servers = cluster
    auth = Authority.load(directory)
    password = auth.ensure_route_password()
    port = servers[0].cluster_port
    anonymous = ssl.create_default_context(cafile=str(auth.ca_path))
    said = route_hello(port, anonymous, password)
    assert b"INFO" not in said and b"PONG" not in said, said
    rogue = auth.ensure_server_cert("rogue", ["127.0.0.1"])  # a good certificate ...
    certified = ssl.create_default_context(cafile=str(auth.ca_path))
    certified.load_cert_chain(str(rogue.cert), str(rogue.key))
    said = route_hello(port, certified, password + "x")  # ... but not the route secret
    assert b"Authorization Violation" in said and b"PONG" not in said, said


async def test_three_servers_route_and_serve_an_r3_put_with_node_creds(
        cluster: tuple[Path, list[NatsServer]]) -> None:
    directory, servers = cluster
    wait_for_routes(servers)
    cli("auth", "issue", "node", "node-1", "--dir", str(directory))
    context_file = cli("auth", "context", "--dir", str(directory), "--user", "node-1",
                       *(a for s in servers for a in ("--server", f"tls://127.0.0.1:{s.port}"))
                       )["wrote"]
    assert isinstance(context_file, list)
    ctx = ClientContext.read(Path(context_file[0]))
    assert ctx.inbox_prefix == "_INBOX.node-1" and len(ctx.servers) == SIZE
    nc = await nats.connect(**connect_kwargs(ctx), allow_reconnect=False, connect_timeout=3)
    try:
        js = nc.jetstream(timeout=10)
        kv = await js.create_key_value(bucket="ba_accounts", replicas=SIZE, history=1)
        revision = await kv.put("bidder-1", b'{"balance": 100}')
        entry = await kv.get("bidder-1")
        assert (entry.value, entry.revision) == (b'{"balance": 100}', revision)
        info = await js.stream_info("KV_ba_accounts")
        assert info.config.num_replicas == SIZE
        assert info.cluster is not None and len(info.cluster.replicas or []) == SIZE - 1
    finally:
        await nc.close()
