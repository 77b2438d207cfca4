"""Connecting to the test suite's secured servers as a role.

Every server a test starts runs secured (``node.embedded``: operator auth, TLS, per-role
permissions) and carries the ``LocalAuth`` its creds and contexts are in. A test connects
with the least role that does what it tests: ``node`` for what a daemon does (KV buckets,
JetStream, agents' subjects), ``client`` for the public requests, ``observer`` for reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import nats
from nats.aio.client import Client as NATS

from broker_agents import identity
from broker_agents.transport import Security
from node.auth.local import LocalAuth
from node.auth.roles import Role


class Secured(Protocol):
    """A server, a cluster or a local cluster of nodes: its URLs and its auth."""

    @property
    def urls(self) -> list[str]: ...

    @property
    def auth(self) -> LocalAuth | None: ...


def security(target: Secured, role: Role = Role.NODE, user: str | None = None) -> Security:
    """``role``'s security on ``target``; ``user``: another principal in that role."""
    assert target.auth is not None, "an open server: connect without security"
    if user is not None:
        return target.auth.user_security(role, user)
    return target.auth.security(role)


def context(target: Secured, role: Role = Role.NODE) -> Path:
    """``role``'s context file (for ``--context`` / ``BA_CONTEXT`` of a command)."""
    assert target.auth is not None
    return target.auth.contexts[role]


def connect_kwargs(target: Secured, role: Role = Role.NODE, user: str | None = None,
                   **options: Any) -> dict[str, Any]:
    """nats-py ``connect`` arguments for ``role`` on ``target`` (``options`` win)."""
    return {"servers": target.urls, **security(target, role, user).kwargs(), **options}


async def connect_as(target: Secured, role: Role = Role.NODE, user: str | None = None,
                     **options: Any) -> NATS:
    """A connection as ``role`` (as principal ``user`` when given: its creds are issued
    on first use), flushed once (see ``broker_agents.transport``), signing its acts."""
    nc = await nats.connect(**connect_kwargs(target, role, user, **options))
    await nc.flush()
    creds = security(target, role, user).creds_file
    return identity.attach(nc, identity.Identity.from_creds(creds))


def cli_args(target: Secured, role: Role = Role.NODE) -> list[str]:
    """``--nats URL --context FILE`` for a ``broker-agents`` command."""
    return ["--nats", target.urls[0], "--context", str(context(target, role))]


def discovery_env(target: Secured) -> dict[str, str]:
    """Environment under which a ``broker-agents`` command finds ``target``'s context for
    the role it needs by itself (``<data_dir>/auth/context-<role>.json``), and no other."""
    assert target.auth is not None
    return {"BA_NODE__DATA_DIR": str(target.auth.dir.parent),
            "XDG_CONFIG_HOME": str(target.auth.dir / "no-config-here")}
