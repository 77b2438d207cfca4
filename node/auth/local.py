"""Secure defaults for one machine: everything a node's embedded server needs, on first start.

``ensure_local(data_dir)`` creates (or keeps) in ``<data_dir>/auth``: the operator, the
account and the system account; one user per role, named after it (``node``, ``client``,
``admin``, ``observer``); a local CA and a server certificate for localhost, 127.0.0.1
and the given host names; a nats-server config using them; and a client context per
role (``context.json`` is the client's, ``context-<role>.json`` the others'), which
client commands find by themselves (``node.auth.context.find``). It is idempotent:
a second call changes nothing that is still valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from node.auth.authority import Authority
from node.auth.context import FILE_NAME, ClientContext
from node.auth.private import private_dir, write_private
from node.auth.roles import DEFAULT_PREFIX, Role, inbox_prefix
from node.auth.server_config import ServerSpec, render

SERVER_NAME = "local"


@dataclass(frozen=True)
class LocalAuth:
    """What ``ensure_local`` made, by path."""

    dir: Path
    created: bool
    server_config: Path
    server_url: str
    ca: Path
    creds: dict[Role, Path]
    contexts: dict[Role, Path]

    @property
    def context(self) -> Path:
        """The client role's context, the one commands use by default."""
        return self.contexts[Role.CLIENT]


def context_name(role: Role) -> str:
    return FILE_NAME if role is Role.CLIENT else f"context-{role}.json"


def ensure_local(data_dir: Path, *, hosts: Sequence[str] = (), port: int = 4222,
                 http_port: int | None = None, listen: str = "127.0.0.1",
                 prefix: str = DEFAULT_PREFIX, store_dir: Path | None = None) -> LocalAuth:
    """Create what is missing under ``<data_dir>/auth`` and (re)write the server config."""
    directory = private_dir(data_dir.resolve() / "auth")
    authority, created = Authority.ensure(directory)
    creds = {role: authority.ensure_user(role, role.value, prefix=prefix) for role in Role}
    host = hosts[0] if hosts else "127.0.0.1"
    tls = authority.ensure_server_cert(SERVER_NAME, list(hosts))
    server = ServerSpec(SERVER_NAME, host, port=port, http_port=http_port, listen=listen)
    config = write_private(directory / "nats-server.conf", render(
        server, authority, tls, store_dir or data_dir.resolve() / "nats"))
    contexts = {
        role: ClientContext(servers=(server.client_url,), creds=path, ca=tls.ca,
                            inbox_prefix=inbox_prefix(role.value), subject_prefix=prefix,
                            description=f"broker-agents {role} on this machine"
                            ).write(directory / context_name(role))
        for role, path in creds.items()}
    return LocalAuth(directory, created, config, server.client_url, tls.ca, creds, contexts)
