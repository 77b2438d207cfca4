"""The netns network: three nats-servers and the node daemons, each on its own host.

Servers listen on their host's address (client 4222, routes 6222, monitor 8222: every
host has its own ports) and dial each other's routes there; node daemons dial the servers
by host address only, and serve HTTP on their own. The harness runs on the control host
(the root namespace) and its clients reach the servers through their own proxies there,
so one client can be isolated or slowed alone (latency and bandwidth are the proxy's: the
kernel here has no netem). Network faults are nft drops inside the namespaces.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from chaos.cluster import NatsCluster, NatsNode, NodeLink
from chaos.fault import Fault
from chaos.netns.firewall import Firewall
from chaos.netns.hosts import HostNetwork
from chaos.netns.nemesis import isolate_host, one_way_drop, split
from node.auth.authority import Authority

CLIENT_PORT, ROUTE_PORT, MONITOR_PORT = 4222, 6222, 8222


def server_host(index: int) -> str:
    return f"nats-{index + 1}"


@dataclass
class NetnsNatsCluster(NatsCluster):
    """``size`` servers on hosts ``nats-1..``, and one host per name in ``node_hosts``."""

    node_hosts: list[str] = field(default_factory=list)
    hostnet: HostNetwork | None = None
    firewall: Firewall | None = None
    network: ClassVar[str] = "netns"

    @property
    def server_hosts(self) -> list[str]:
        return [server_host(i) for i in range(self.size)]

    def _place(self, authority: Authority, route_password: str) -> None:
        self.hostnet = HostNetwork([*self.server_hosts, *self.node_hosts]).create()
        self.firewall = Firewall(self.hostnet)
        self.firewall.install()
        self.nodes = []
        for i, name in enumerate(self.server_hosts):
            host = self.hostnet[name]
            self.nodes.append(NatsNode(i, f"{self.cluster_name}-{i}", self.base_dir / f"n{i}",
                                       port=CLIENT_PORT, cluster_port=ROUTE_PORT,
                                       monitor_port=MONITOR_PORT, address=host.address,
                                       wrap=host.argv))
        for node in self.nodes:
            routes = [f"{peer.address}:{ROUTE_PORT}" for peer in self.nodes if peer is not node]
            node.write_config(self.cluster_name, routes, authority, route_password,
                              advertise=None)

    def node_link(self, node_id: str) -> NodeLink:
        if self.hostnet is None or node_id not in self.node_hosts:
            raise ValueError(f"no host for node {node_id!r}: declare it in node_hosts "
                             f"({self.node_hosts})")
        host = self.hostnet[node_id]
        return NodeLink(self.direct_urls, http_host=host.address, wrap=host.argv)

    def client_proxies(self, client: str = "client") -> list[str]:
        if client in self.node_hosts:
            raise ValueError(f"{client} is a node daemon on its own host: it dials the servers "
                             "directly, so no proxy can slow it (slow a client instead)")
        return super().client_proxies(client)

    def hosts(self) -> list[dict[str, Any]]:
        assert self.hostnet is not None
        roles = {**dict.fromkeys(self.server_hosts, "nats-server"),
                 **dict.fromkeys(self.node_hosts, "node")}
        return [{**h, "role": roles.get(h["host"], "?")} for h in self.hostnet.describe()] + [
            {"host": "control", "address": self.hostnet.control, "role": "harness"}]

    # -- network faults: nft drops ------------------------------------------------------

    def _firewall(self) -> Firewall:
        assert self.firewall is not None, "start the cluster first"
        return self.firewall

    def isolate(self, name: str) -> Fault:
        if name in self.node_hosts:
            return isolate_host(self._firewall(), name, kind="isolate_client")
        return super().isolate(name)

    def cut_server(self, index: int) -> Fault:
        others = [h for h in self.server_hosts if h != server_host(index)]
        fault = split(self._firewall(), [[server_host(index)], others], kind="cut_server")
        fault.target = f"server-{index}"
        return fault

    def partition(self, groups: Sequence[Sequence[int]]) -> Fault:
        fault = split(self._firewall(), [[server_host(i) for i in g] for g in groups],
                      kind="partition")
        fault.target = "|".join(",".join(map(str, g)) for g in groups)
        return fault

    def asymmetric_cut(self, src: int, dst: int, mode: str = "timeout") -> Fault:
        fault = one_way_drop(self._firewall(), server_host(src), server_host(dst))
        fault.kind, fault.target = "asymmetric_cut", f"{src}->{dst}"
        return fault

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self.firewall is not None:
                with contextlib.suppress(Exception):
                    self.firewall.clear()
            if self.hostnet is not None:
                self.hostnet.teardown()
