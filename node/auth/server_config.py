"""nats-server configuration for an auth directory: one server, or a routed cluster.

What a rendered config turns on:

- decentralized auth: ``operator`` (its JWT), ``system_account``, and ``resolver: MEMORY``
  with both account JWTs preloaded; every client needs a user JWT signed by the account;
- TLS for clients (certificate from the directory's CA; clients check it with the CA);
- JetStream, which the account's JWT limits enable;
- monitoring on loopback only (``/healthz`` for the local supervisor, nothing to reach
  from outside);
- for a cluster: routes over TLS with ``verify: true`` (both ends show a certificate from
  the CA) and route authentication with a shared secret.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.subjects import check_token
from node.auth.authority import Authority, TlsFiles
from node.auth.private import private_dir, write_private

ROUTE_USER = "route"
TLS_TIMEOUT_S = 2
# A client's CONNECT line carries its user JWT, and a role with per-bucket JetStream
# permissions (the observer) has a JWT past the default 4 KiB control line.
MAX_CONTROL_LINE = 16384
# A Raft snapshot goes to a lagging follower as one message: its dedup table alone is
# ~6.6 MB at the default 100,000 ids, past the default 1 MB payload (8 MB is NATS's
# recommended ceiling).
MAX_PAYLOAD = 8 * 1024 * 1024


@dataclass(frozen=True)
class ServerSpec:
    """One server: the name peers and clients know it by, and its ports."""

    name: str
    host: str
    port: int = 4222
    cluster_port: int = 6222
    http_port: int | None = 8222
    listen: str = "0.0.0.0"
    http_listen: str = "127.0.0.1"  # monitoring stays on loopback unless asked otherwise
    store_dir: Path | None = None

    @property
    def client_url(self) -> str:
        return f"tls://{hostport(self.host, self.port)}"

    def route_url(self, password: str) -> str:
        return f"nats-route://{ROUTE_USER}:{password}@{hostport(self.host, self.cluster_port)}"


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _q(value: str | Path) -> str:
    return json.dumps(str(value))


def _tls_block(tls: TlsFiles, *, verify: bool, indent: str) -> list[str]:
    lines = [f"{indent}tls {{",
             f"{indent}  cert_file: {_q(tls.cert)}",
             f"{indent}  key_file: {_q(tls.key)}",
             f"{indent}  ca_file: {_q(tls.ca)}"]
    if verify:
        lines.append(f"{indent}  verify: true")
    return [*lines, f"{indent}  timeout: {TLS_TIMEOUT_S}", f"{indent}}}"]


def _fsync_comment(sync_interval: str | None) -> list[str]:
    """What the jetstream block below fsyncs, said truthfully in the config itself."""
    if sync_interval == "always":
        return ["# JetStream fsyncs every write before acknowledging it (sync_interval: always)."]
    every = f"every {sync_interval}" if sync_interval else "every 2 minutes, the default"
    return [f"# JetStream fsyncs lazily ({every}); quorum replication on a cluster is what",
            "# makes an acknowledged write survive one server's crash, not this disk."]


def render(server: ServerSpec, authority: Authority, tls: TlsFiles, store_dir: Path, *,
           peers: Sequence[ServerSpec] = (), cluster_name: str = "ba",
           route_password: str | None = None, advertise: str | None = None,
           no_advertise: bool = False, sync_interval: str | None = None) -> str:
    """The config text of ``server``; with ``peers`` (the other servers), a cluster.

    ``advertise`` (the route address gossiped to peers) and ``no_advertise`` (client URLs
    not gossiped) are for clusters whose links run through proxies: a peer must not learn
    a direct address that bypasses a cut. ``sync_interval`` (nats-server >= 2.10):
    ``always`` fsyncs every write, what a deployment that must not lose an acknowledged
    write to a simultaneous crash of a majority chooses.
    """
    lines = [
        "# nats-server config written by `broker-agents auth server-config`.",
        "# Clients need a user .creds from the same auth directory and its CA (tls/ca.pem).",
        f"server_name: {_q(server.name)}",
        f"listen: {_q(hostport(server.listen, server.port))}",
        f"max_control_line: {MAX_CONTROL_LINE}",
        f"max_payload: {MAX_PAYLOAD}",
    ]
    if server.http_port is not None:
        lines.append(f"http: {_q(hostport(server.http_listen, server.http_port))}")
    lines += [
        "",
        f"operator: {_q(authority.operator_jwt_path)}",
        f"system_account: {_q(authority.system.public_key)}",
        "resolver: MEMORY",
        "resolver_preload: {",
        *(f"  {_q(key)}: {_q(token)}" for key, token in authority.preload().items()),
        "}",
        "",
        *_tls_block(tls, verify=False, indent=""),
        "",
        *_fsync_comment(sync_interval),
        "jetstream {",
        f"  store_dir: {_q(store_dir)}",
        *([f"  sync_interval: {_q(sync_interval)}"] if sync_interval else []),
        "}",
    ]
    if peers:
        if route_password is None:
            raise ValueError("a cluster needs a route password")
        lines += [
            "",
            "cluster {",
            f"  name: {_q(cluster_name)}",
            f"  listen: {_q(hostport(server.listen, server.cluster_port))}",
            *([f"  advertise: {_q(advertise)}"] if advertise else []),
            *(["  no_advertise: true"] if no_advertise else []),
            "  authorization {",
            f"    user: {_q(ROUTE_USER)}",
            f"    password: {_q(route_password)}",
            f"    timeout: {TLS_TIMEOUT_S}",
            "  }",
            *_tls_block(tls, verify=True, indent="  "),
            "  routes: [",
            *(f"    {_q(peer.route_url(route_password))}" for peer in peers),
            "  ]",
            "}",
        ]
    return "\n".join(lines) + "\n"


def check_specs(servers: Sequence[ServerSpec]) -> None:
    """Names unique and valid; no two servers listening on one host and port."""
    for server in servers:
        check_token(server.name, "server name")
    problems = [f"server name {n!r} is used twice"
                for n, c in Counter(s.name for s in servers).items() if c > 1]
    endpoints: Counter[tuple[str, int]] = Counter()
    for server in servers:
        ports = [server.port] + ([server.cluster_port] if len(servers) > 1 else [])
        ports += [] if server.http_port is None else [server.http_port]
        endpoints.update((server.host, p) for p in ports)
    problems += [f"{hostport(h, p)} is used twice: give each server on one host its own "
                 "ports" for (h, p), c in endpoints.items() if c > 1]
    if problems:
        raise BrokerError(ErrorCode.VALIDATION, "; ".join(problems))


def write_configs(authority: Authority, servers: Sequence[ServerSpec], *,
                  out_dir: Path | None = None, cluster_name: str = "ba",
                  sync_interval: str | None = None) -> list[Path]:
    """One config per server (``<out_dir>/<name>.conf``), with certificates from the
    directory's CA and, for more than one server, the route secret."""
    check_specs(servers)
    out_dir = private_dir(out_dir or authority.dir / "servers")
    password = authority.ensure_route_password() if len(servers) > 1 else None
    written = []
    for server in servers:
        tls = authority.ensure_server_cert(server.name, [server.host])
        store = server.store_dir or authority.dir / "jetstream" / server.name
        peers = [peer for peer in servers if peer is not server]
        text = render(server, authority, tls, store, peers=peers, cluster_name=cluster_name,
                      route_password=password, sync_interval=sync_interval)
        written.append(write_private(out_dir / f"{server.name}.conf", text))
    return written
