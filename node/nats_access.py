"""How a node reaches NATS, and who it is there: one decision, made at start.

- ``auth = "local"`` (no servers configured): the embedded nats-server runs secured by
  ``<data_dir>/auth`` (``ensure_local``: created on first start, 0600), and the node
  connects as the ``node`` user with the local CA and its inbox prefix.
- ``auth = "creds"`` (servers or a context configured): the node connects with what the
  config names (a context, or creds and a CA; user/password, token and ``[nats.tls]``
  as before).
- ``auth = "none"``: no authentication and no TLS, the embedded server open to anyone who
  reaches it. For experiments only: the node says what is turned off at WARNING and
  exports ``ba_nats_insecure 1``; so does a ``creds`` node that was given no identity.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from structlog.typing import FilteringBoundLogger

from broker_agents.metrics import NATS_INSECURE
from broker_agents.transport import Security
from node.auth.context import ClientContext
from node.auth.creds import creds_inbox_prefix
from node.auth.roles import Role
from node.config import NatsSection, NodeConfig
from node.embedded import NatsServer, reap_stale, secured_server

TURNED_OFF = (
    "authentication: anyone who reaches the server may connect",
    "permissions: every connection may read and write every subject and KV bucket, "
    "including balances, auctions and Raft peer traffic",
    "TLS: traffic, and any credentials in it, travel in plaintext",
)


@dataclass
class NatsAccess:
    """The servers to dial, the identity to dial them with, and the embedded server."""

    servers: list[str]
    security: Security
    embedded: NatsServer | None = None
    turned_off: list[str] = field(default_factory=list)


def configured_security(nats: NatsSection) -> tuple[list[str], Security]:
    """``auth = "creds"``: the servers and identity the config names (a context first,
    each field given explicitly overriding it)."""
    ctx = ClientContext.read(nats.context) if nats.context is not None else None
    base = ctx.security() if ctx is not None else Security()
    tls = nats.tls
    security = Security(
        creds_file=nats.creds or base.creds_file,
        tls_ca_file=nats.tls_ca or (tls.ca_file if tls else None) or base.tls_ca_file,
        tls_cert_file=tls.cert_file if tls else None,
        tls_key_file=tls.key_file if tls else None,
        tls_verify=tls.verify if tls else True,
        inbox_prefix=nats.inbox_prefix or (None if nats.creds else base.inbox_prefix),
        user=nats.user, password=nats.password, token=nats.token)
    if security.inbox_prefix is None:
        security = replace(security, inbox_prefix=creds_inbox_prefix(security.creds_file))
    servers = list(nats.servers) or list(ctx.servers if ctx is not None else ())
    return servers, security


def _gaps(servers: list[str], security: Security) -> list[str]:
    """What a ``creds`` connection goes without."""
    gaps = []
    if security.anonymous:
        gaps.append(TURNED_OFF[0] + " (no creds, user or token configured)")
    if security.tls_context() is None and not all(u.startswith("tls://") for u in servers):
        gaps.append(TURNED_OFF[2] + " (no tls_ca and nats:// URLs)")
    return gaps


async def open_access(config: NodeConfig, log: FilteringBoundLogger) -> NatsAccess:
    """Start the embedded server if there is one; say loudly what is not secured."""
    nats = config.nats
    mode = nats.mode
    if mode == "creds":
        servers, security = configured_security(nats)
        access = NatsAccess(servers, security, turned_off=_gaps(servers, security))
    elif nats.embedded_server:
        access = await _embedded(config, secure=mode == "local", log=log)
    else:  # "none" with servers: dial them without credentials or TLS
        access = NatsAccess(list(nats.servers), Security())
    if mode == "none":
        access.turned_off = list(TURNED_OFF)
    NATS_INSECURE.set(1 if access.turned_off else 0)
    if access.turned_off:
        log.warning("nats.insecure: NATS security is OFF for this node", auth=mode,
                    turned_off=access.turned_off,
                    how_to_fix="remove auth = 'none' (the embedded server then runs "
                               "secured), or configure creds and tls_ca / a context")
    return access


async def _embedded(config: NodeConfig, *, secure: bool, log: FilteringBoundLogger
                    ) -> NatsAccess:
    data_dir, embedded = config.node.data_dir, config.nats.embedded
    pid_file = data_dir / "nats" / "nats-server.pid"
    stale = await asyncio.to_thread(reap_stale, pid_file)
    if stale is not None:
        log.warning("stopped a nats-server left by a killed node", pid=stale)
    extra = ["-P", str(pid_file)]
    if secure:
        server = await asyncio.to_thread(secured_server, data_dir, host=embedded.host,
                                         port=embedded.port, extra_args=extra)
        assert server.auth is not None
        security = server.auth.security(Role.NODE)
    else:
        server = NatsServer(store_dir=data_dir / "nats", host=embedded.host,
                            port=embedded.port, extra_args=extra)
        security = Security()
    await asyncio.to_thread(server.start)
    if server.auth is not None:
        log.info("embedded nats-server started", url=server.url, auth="local",
                 auth_dir=str(server.auth.dir), client_context=str(server.auth.context))
    else:
        log.info("embedded nats-server started", url=server.url, auth="none")
    return NatsAccess([server.url], security, server)
