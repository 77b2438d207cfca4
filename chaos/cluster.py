"""The harness's 3-server JetStream cluster: what every network shares (``NatsCluster``)
and the loopback network, whose every link runs through Toxiproxy (``ProxiedNatsCluster``;
the netns network is ``chaos.netns.cluster``).

Loopback routes: server i reaches server j only through proxy ``route_i_j`` (one per ordered pair,
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from broker_agents.transport import Security
from chaos.fault import Fault
from chaos.process import ManagedProcess
from chaos.proxyfaults import DisableProxies, ToxicFault, ToxicSpec
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
    address: str = HOST  # where clients, peers and the monitor reach it
    wrap: Callable[[list[str]], list[str]] = list  # the command as its host runs it
    proc: ManagedProcess | None = None

    @property
    def store_dir(self) -> Path:
        return self.base_dir / "store"

    @property
    def config_path(self) -> Path:
        return self.base_dir / "nats.conf"

    @property
    def direct_url(self) -> str:
        return f"tls://{self.address}:{self.port}"

    def monitor(self, endpoint: str) -> tuple[int, dict[str, Any]]:
        return http_json(f"http://{self.address}:{self.monitor_port}/{endpoint}")

    def healthy(self) -> bool:
        status, body = self.monitor("healthz")
        return status == 200 and body.get("status") == "ok"

    def write_config(self, cluster_name: str, routes: list[str], authority: Authority,
                     route_password: str, advertise: str | None = DEAD_ADDR) -> None:
        """The secured config ``broker-agents auth server-config`` writes, its routes
        dialled at ``routes`` (``host:port`` each). Through proxies, nothing direct is
        advertised (``advertise`` is a dead address); on real hosts (None) it is."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        me = ServerSpec(self.name, self.address, port=self.port,
                        cluster_port=self.cluster_port, http_port=self.monitor_port,
                        listen=self.address, http_listen=self.address)
        peers = [ServerSpec(f"{self.name}-route-{i}", r.rsplit(":", 1)[0],
                            cluster_port=int(r.rsplit(":", 1)[1]))
                 for i, r in enumerate(routes)]
        tls = authority.ensure_server_cert(self.name, [self.address])
        write_private(self.config_path, render(  # private: it holds the route secret
            me, authority, tls, self.store_dir, peers=peers, cluster_name=cluster_name,
            route_password=route_password, advertise=advertise,
            no_advertise=advertise is not None))

    def process(self) -> ManagedProcess:
        if self.proc is None:
            self.proc = ManagedProcess(
                name=self.name, argv=self.wrap([server_binary(), "-c", str(self.config_path)]),
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
class NodeLink:
    """How a node daemon of the harness reaches NATS and is reached: the server URLs it
    dials, the address its HTTP server listens on, and its command as its host runs it."""

    servers: list[str]
    http_host: str = HOST
    wrap: Callable[[list[str]], list[str]] = list


@dataclass
class NatsCluster:
    """Three (or ``size``) secured nats-servers the harness owns, the harness's clients'
    proxied links to them, and the processes it stops with them. A subclass places the
    servers (loopback behind proxies, or hosts in namespaces) and makes the network
    faults; scenarios use only this face, so they run on either network."""

    base_dir: Path
    toxi: ToxiproxyClient
    size: int = 3
    cluster_name: str = "chaos"
    prefix: str = "ba_"
    nodes: list[NatsNode] = field(default_factory=list)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    clients: dict[str, list[str]] = field(default_factory=dict)
    authority: Authority | None = None
    creds: dict[Role, Path] = field(default_factory=dict)

    network: ClassVar[str] = "abstract"

    def security(self, role: Role) -> Security:
        """How a connection of ``role`` proves who it is and checks the servers."""
        assert self.authority is not None, "start the cluster first"
        return Security(creds_file=self.creds[role], tls_ca_file=self.authority.ca_path,
                        inbox_prefix=inbox_prefix(role.value))

    def start(self, timeout: float = 30.0) -> Self:
        self.authority, self.creds = ensure_identities(self.base_dir)
        try:
            self._place(self.authority, self.authority.ensure_route_password())
            for node in self.nodes:
                node.process().start(timeout)
            self.wait_healthy(timeout)
        except Exception:
            self.stop()
            raise
        self.client_urls("client")
        return self

    def _place(self, authority: Authority, route_password: str) -> None:
        """Make ``self.nodes`` and write their configs (and whatever network they need)."""
        raise NotImplementedError

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
        """Proxied URLs (one per server) for ``client``; creates its proxies once. The
        harness's clients each get their own, so one can be isolated or slowed alone."""
        if client not in self.clients:
            urls = []
            for node in self.nodes:
                created = self.toxi.create(client_proxy(self.prefix, client, node.index),
                                           f"{node.address}:{node.port}")
                urls.append(f"tls://{created['listen']}")
            self.clients[client] = urls
        return list(self.clients[client])

    @property
    def direct_urls(self) -> list[str]:
        return [n.direct_url for n in self.nodes]

    def client_proxies(self, client: str = "client") -> list[str]:
        self.client_urls(client)
        return [client_proxy(self.prefix, client, i) for i in range(self.size)]

    def node_link(self, node_id: str) -> NodeLink:
        """Where node daemon ``node_id`` runs and how it reaches the servers."""
        raise NotImplementedError

    def hosts(self) -> list[dict[str, Any]]:
        """The machines of this network, for the report."""
        return [{"host": n.name, "address": n.address} for n in self.nodes]

    # -- network faults (each network its own) -----------------------------------------

    def isolate(self, name: str) -> Fault:
        """Cut a client of the harness, or a node daemon, off from every server."""
        return DisableProxies(self.toxi, self.client_proxies(name), kind="isolate_client",
                              target=name)

    def cut_server(self, index: int) -> Fault:
        """Cut server ``index`` from the other servers (clients still reach it)."""
        raise NotImplementedError

    def partition(self, groups: Sequence[Sequence[int]]) -> Fault:
        """Cut every route between servers in different groups."""
        raise NotImplementedError

    def asymmetric_cut(self, src: int, dst: int, mode: str = "timeout") -> Fault:
        """Lose what server ``src`` sends to ``dst``; ``dst`` to ``src`` still flows."""
        raise NotImplementedError

    # -- processes ---------------------------------------------------------------------

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
        names = self._proxy_names()
        for client in self.clients:
            names += self.client_proxies(client)
        for name in names:
            with contextlib.suppress(Exception):  # best effort: the server may be gone
                self.toxi.delete(name)
        self.clients.clear()

    def _proxy_names(self) -> list[str]:
        """Proxies of the servers' own links (none unless they run through proxies)."""
        return []


@dataclass
class ProxiedNatsCluster(NatsCluster):
    """Three servers on loopback, every route and client link through its own proxy."""

    upstream_host: str = HOST
    network: ClassVar[str] = "loopback"

    def _place(self, authority: Authority, route_password: str) -> None:
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
            src.write_config(self.cluster_name, routes, authority, route_password)

    def node_link(self, node_id: str) -> NodeLink:
        """A daemon on loopback dials its own proxies, so it can be isolated alone."""
        return NodeLink(self.client_urls(node_id))

    def route_proxies(self, a: int, b: int) -> list[str]:
        """Both directed route proxies between servers ``a`` and ``b``."""
        return [route_proxy(self.prefix, a, b), route_proxy(self.prefix, b, a)]

    def cut_server(self, index: int) -> Fault:
        names = [p for other in range(self.size) if other != index
                 for p in self.route_proxies(index, other)]
        return DisableProxies(self.toxi, names, kind="cut_server", target=f"server-{index}")

    def partition(self, groups: Sequence[Sequence[int]]) -> Fault:
        where = {i: g for g, members in enumerate(groups) for i in members}
        names = [self.route_proxies(a, b)[0] for a in range(self.size)
                 for b in range(self.size) if a != b and where.get(a) != where.get(b)]
        return DisableProxies(self.toxi, names, kind="partition",
                              target="|".join(",".join(map(str, g)) for g in groups))

    def asymmetric_cut(self, src: int, dst: int, mode: str = "timeout") -> Fault:
        """``mode`` "timeout" silently drops the bytes and holds the connection open;
        "limit_data" closes any connection as soon as ``src`` sends a byte to ``dst``."""
        attrs = {"timeout": 0} if mode == "timeout" else {"bytes": 0}
        specs = [
            # on src->dst's proxy the client is src: its bytes to dst travel upstream
            ToxicSpec(self.route_proxies(src, dst)[0], mode, "upstream", attrs),
            # on dst->src's proxy the server is src: its bytes to dst travel downstream
            ToxicSpec(self.route_proxies(src, dst)[1], mode, "downstream", attrs),
        ]
        return ToxicFault(self.toxi, specs, kind="asymmetric_cut", target=f"{src}->{dst}",
                          name=f"asym_{src}_{dst}")

    def _proxy_names(self) -> list[str]:
        return [route_proxy(self.prefix, a.index, b.index)
                for a in self.nodes for b in self.nodes if a is not b]
