"""Secure defaults for one machine: everything a node's embedded server needs, on first start.

``ensure_local(data_dir)`` creates (or keeps) in ``<data_dir>/auth``: the operator, the
account and the system account; one user per role, named after it (``node``, ``client``,
``admin``, ``observer``); a local CA and a server certificate for localhost, 127.0.0.1
and the given host names; a nats-server config using them; and a client context per
role (``context.json`` is the client's, ``context-<role>.json`` the others'), which
client commands find by themselves (``node.auth.context.find``). It is idempotent:
a second call changes nothing that is still valid.

``ensure_cluster`` does the same for several routed servers on this machine (a local
cluster, the test suite's): one config per server under ``<data_dir>/auth/servers`` and
contexts that list every server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from broker_agents.transport import Security
from node.auth.authority import Authority
from node.auth.context import ClientContext, context_name
from node.auth.private import private_dir, write_private
from node.auth.roles import DEFAULT_PREFIX, Role, inbox_prefix
from node.auth.server_config import ServerSpec, render, write_configs

SERVER_NAME = "local"


@dataclass(frozen=True)
class LocalAuth:
    """What ``ensure_local`` (or ``ensure_cluster``) made, by path."""

    dir: Path
    created: bool
    server_configs: tuple[Path, ...]
    server_urls: tuple[str, ...]
    ca: Path
    creds: dict[Role, Path]
    contexts: dict[Role, Path]

    @property
    def server_config(self) -> Path:
        return self.server_configs[0]

    @property
    def server_url(self) -> str:
        return self.server_urls[0]

    @property
    def context(self) -> Path:
        """The client role's context, the one commands use by default."""
        return self.contexts[Role.CLIENT]

    def security(self, role: Role) -> Security:
        """How a connection of ``role`` proves who it is and checks the servers."""
        return Security(creds_file=self.creds[role], tls_ca_file=self.ca,
                        inbox_prefix=inbox_prefix(role.value))

    def user_security(self, role: Role, user: str) -> Security:
        """Like ``security``, for another principal ``user`` in ``role`` (its creds are
        issued on first use): two clients that must not pass for each other."""
        creds = Authority.ensure(self.dir)[0].ensure_user(role, user)
        return Security(creds_file=creds, tls_ca_file=self.ca, inbox_prefix=inbox_prefix(user))


def _identities(directory: Path, prefix: str) -> tuple[Authority, bool, dict[Role, Path]]:
    authority, created = Authority.ensure(directory)
    creds = {role: authority.ensure_user(role, role.value, prefix=prefix) for role in Role}
    return authority, created, creds


def _contexts(directory: Path, urls: Sequence[str], ca: Path, creds: dict[Role, Path],
              prefix: str, where: str) -> dict[Role, Path]:
    return {role: ClientContext(servers=tuple(urls), creds=path, ca=ca,
                                inbox_prefix=inbox_prefix(role.value), subject_prefix=prefix,
                                description=f"broker-agents {role} {where}"
                                ).write(directory / context_name(role))
            for role, path in creds.items()}


def ensure_local(data_dir: Path, *, hosts: Sequence[str] = (), port: int = 4222,
                 http_port: int | None = None, listen: str = "127.0.0.1",
                 prefix: str = DEFAULT_PREFIX, store_dir: Path | None = None) -> LocalAuth:
    """Create what is missing under ``<data_dir>/auth`` and (re)write the server config."""
    directory = private_dir(data_dir.resolve() / "auth")
    authority, created, creds = _identities(directory, prefix)
    host = hosts[0] if hosts else "127.0.0.1"
    tls = authority.ensure_server_cert(SERVER_NAME, list(hosts))
    server = ServerSpec(SERVER_NAME, host, port=port, http_port=http_port, listen=listen)
    config = write_private(directory / "nats-server.conf", render(
        server, authority, tls, store_dir or data_dir.resolve() / "nats"))
    contexts = _contexts(directory, [server.client_url], tls.ca, creds, prefix,
                         "on this machine")
    return LocalAuth(directory, created, (config,), (server.client_url,), tls.ca, creds,
                     contexts)


def ensure_cluster(data_dir: Path, servers: Sequence[ServerSpec], *,
                   prefix: str = DEFAULT_PREFIX, cluster_name: str = "ba") -> LocalAuth:
    """``ensure_local`` for routed servers: route TLS and route auth as ``broker-agents auth
    server-config`` writes them; every context names all the servers."""
    directory = private_dir(data_dir.resolve() / "auth")
    authority, created, creds = _identities(directory, prefix)
    configs = write_configs(authority, servers, cluster_name=cluster_name)
    urls = [server.client_url for server in servers]
    contexts = _contexts(directory, urls, authority.ca_path, creds, prefix,
                         f"on the local {len(servers)}-server cluster")
    return LocalAuth(directory, created, tuple(configs), tuple(urls), authority.ca_path,
                     creds, contexts)


def ensure_identities(data_dir: Path, *, prefix: str = DEFAULT_PREFIX
                      ) -> tuple[Authority, dict[Role, Path]]:
    """The authority and one user per role, for a harness that renders its own server
    configs (the chaos suite's proxied routes)."""
    authority, _, creds = _identities(private_dir(data_dir.resolve() / "auth"), prefix)
    authority.ensure_ca()
    return authority, creds
