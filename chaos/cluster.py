"""A local 3-server JetStream cluster whose every link runs through Toxiproxy.

Routes: server i reaches server j only through proxy ``route_i_j`` (one per ordered pair,
so a cut can be symmetric or one-way). Servers advertise no direct addresses: client URLs
are not gossiped (``no_advertise``) and the route address they gossip is a dead port, so
an implicit route cannot bypass a cut. Clients reach server i through ``<client>_to_i``
proxies; each client gets its own set so one client can be isolated alone.

Secured like a real cluster (``node.auth``): operator auth, TLS for clients, route TLS
with certificates from the harness's CA and route authentication. The proxies carry TCP,
so TLS runs end to end through them (each certificate names 127.0.0.1, where the proxies
listen). A connection proves a role with ``security(role)``.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker_agents.transport import Security
from chaos.process import ManagedProcess
from chaos.toxiproxy.client import ToxiproxyClient
from node.auth.authority import Authority
from node.auth.local import ensure_identities
from node.auth.private import write_private
from node.auth.roles import Role, inbox_prefix
from node.auth.server_config import ServerSpec, render
from node.embedded import CLUSTER_CAS_SAFE, binary_version, find_binary, free_port

HOST = "127.0.0.1"
DEAD_ADDR = "127.0.0.1:1"  # gossiped route address nobody listens on


def route_proxy(prefix: str, src: int, dst: int) -> str:
    return f"{prefix}route_{src}_{dst}"


def client_proxy(prefix: str, client: str, server: int) -> str:
    return f"{prefix}{client}_to_{server}"


def http_json(url: str, timeout: float = 1.0) -> tuple[int, dict[str, Any]]:
    """GET a monitoring endpoint; (0, {}) if unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (OSError, ValueError):
        return 0, {}


@dataclass
class NatsNode:
    """One nats-server: its ports, config file, store and managed process."""

    index: int
    name: str
    base_dir: Path
    port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    proc: ManagedProcess | None = None

    @property
    def store_dir(self) -> Path:
        return self.base_dir / "store"

    @property
    def config_path(self) -> Path:
        return self.base_dir / "nats.conf"

    @property
    def direct_url(self) -> str:
        return f"tls://{HOST}:{self.port}"

    def monitor(self, endpoint: str) -> tuple[int, dict[str, Any]]:
        return http_json(f"http://{HOST}:{self.monitor_port}/{endpoint}")

    def healthy(self) -> bool:
        status, body = self.monitor("healthz")
        return status == 200 and body.get("status") == "ok"

    def write_config(self, cluster_name: str, routes: list[str], authority: Authority,
                     route_password: str) -> None:
        """The secured config ``broker-agents auth server-config`` writes, its routes
        dialled through the proxies (``host:port`` each) and nothing direct advertised."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        me = ServerSpec(self.name, HOST, port=self.port, cluster_port=self.cluster_port,
                        http_port=self.monitor_port, listen=HOST)
        proxies = [ServerSpec(f"{self.name}-route-{i}", r.rsplit(":", 1)[0],
                              cluster_port=int(r.rsplit(":", 1)[1]))
                   for i, r in enumerate(routes)]
        tls = authority.ensure_server_cert(self.name, [HOST])
        write_private(self.config_path, render(  # private: it holds the route secret
            me, authority, tls, self.store_dir, peers=proxies, cluster_name=cluster_name,
            route_password=route_password, advertise=DEAD_ADDR, no_advertise=True))

    def process(self) -> ManagedProcess:
        if self.proc is None:
            self.proc = ManagedProcess(
                name=self.name, argv=[server_binary(), "-c", str(self.config_path)],
                ready_line="Server is ready", log_path=self.base_dir / "nats.log",
            )
        return self.proc


def server_binary() -> str:
    """A nats-server >= 2.10, whose clustered CAS is serialized (``node.nats_binary``):
    refused without one unless BA_NATS_ALLOW_OLD_CLUSTER=1 (to reproduce #4320 on 2.9)."""
    return find_binary(CLUSTER_CAS_SAFE, cluster=True)


def server_version() -> str:
    return ".".join(str(p) for p in binary_version(server_binary()))


@dataclass
class ProxiedNatsCluster:
    """Three (or ``size``) nats-servers, all routes and client links through proxies."""

    base_dir: Path
    toxi: ToxiproxyClient
    size: int = 3
    cluster_name: str = "chaos"
    prefix: str = "ba_"
    upstream_host: str = HOST
    nodes: list[NatsNode] = field(default_factory=list)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    clients: dict[str, list[str]] = field(default_factory=dict)
    authority: Authority | None = None
    creds: dict[Role, Path] = field(default_factory=dict)

    def security(self, role: Role) -> Security:
        """How a connection of ``role`` proves who it is and checks the servers."""
        assert self.authority is not None, "start the cluster first"
        return Security(creds_file=self.creds[role], tls_ca_file=self.authority.ca_path,
                        inbox_prefix=inbox_prefix(role.value))

    def start(self, timeout: float = 30.0) -> ProxiedNatsCluster:
        self.authority, self.creds = ensure_identities(self.base_dir)
        password = self.authority.ensure_route_password()
        self.nodes = [NatsNode(i, f"{self.cluster_name}-{i}", self.base_dir / f"n{i}")
                      for i in range(self.size)]
        for src in self.nodes:
            routes = []
            for dst in self.nodes:
                if dst is src:
                    continue
                created = self.toxi.create(
                    route_proxy(self.prefix, src.index, dst.index),
                    f"{self.upstream_host}:{dst.cluster_port}")
                routes.append(created["listen"])
            src.write_config(self.cluster_name, routes, self.authority, password)
        try:
            for node in self.nodes:
                node.process().start(timeout)
            self.wait_healthy(timeout)
        except Exception:
            self.stop()
            raise
        self.client_urls("client")
        return self

    def wait_healthy(self, timeout: float = 30.0, nodes: list[int] | None = None) -> None:
        """Until each (running) server reports JetStream healthy."""
        for index in nodes if nodes is not None else range(self.size):
            node = self.nodes[index]
            proc = node.process()
            proc.probe = node.healthy
            try:
                proc.wait_ready(timeout)
            finally:
                proc.probe = None

    def client_urls(self, client: str = "client") -> list[str]:
        """Proxied URLs (one per server) for ``client``; creates its proxies once."""
        if client not in self.clients:
            urls = []
            for node in self.nodes:
                created = self.toxi.create(client_proxy(self.prefix, client, node.index),
                                           f"{self.upstream_host}:{node.port}")
                urls.append(f"tls://{created['listen']}")
            self.clients[client] = urls
        return list(self.clients[client])

    @property
    def direct_urls(self) -> list[str]:
        return [n.direct_url for n in self.nodes]

    def route_proxies(self, a: int, b: int) -> list[str]:
        """Both directed route proxies between servers ``a`` and ``b``."""
        return [route_proxy(self.prefix, a, b), route_proxy(self.prefix, b, a)]

    def client_proxies(self, client: str = "client") -> list[str]:
        self.client_urls(client)
        return [client_proxy(self.prefix, client, i) for i in range(self.size)]

    def kill(self, index: int) -> None:
        """kill -9 one nats-server (ports and store are kept for restart)."""
        self.nodes[index].process().kill()

    def restart(self, index: int, timeout: float = 30.0) -> None:
        node = self.nodes[index]
        node.process().start(timeout)

    def routes_of(self, index: int) -> int:
        """How many peers server ``index`` has routes to (from /routez). Servers >= 2.10
        pool several connections per peer, so count distinct remote servers."""
        status, body = self.nodes[index].monitor("routez")
        if status != 200:
            return -1
        return len({r.get("remote_id") for r in body.get("routes") or []})

    def add_process(self, name: str, argv: list[str], **kwargs: Any) -> ManagedProcess:
        """Register a node daemon (or any helper) the harness owns and stops with the rest."""
        proc = ManagedProcess(name=name, argv=argv, **kwargs)
        self.processes[name] = proc
        return proc

    def stop(self) -> None:
        for proc in self.processes.values():
            proc.stop()
        for node in self.nodes:
            node.process().stop()
        names = [route_proxy(self.prefix, a.index, b.index)
                 for a in self.nodes for b in self.nodes if a is not b]
        for client in self.clients:
            names += self.client_proxies(client)
        for name in names:
            with contextlib.suppress(Exception):  # best effort: the server may be gone
                self.toxi.delete(name)
        self.clients.clear()
