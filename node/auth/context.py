"""The client context: which servers, which creds, which CA, which inbox prefix.

Like ``nats context``, and in its field names (``url``, ``creds``, ``ca``,
``inbox_prefix``, ``description``), so a context file also works as a ``nats`` CLI
context; ``subject_prefix`` is ours. Paths are written absolute; relative ones read are taken
relative to the file.

Commands find a context by themselves (``find``): an explicit path, else ``$BA_CONTEXT``,
else ``$XDG_CONFIG_HOME/broker-agents/context.json`` (``~/.config/...``), else the data
dir's (``<data_dir>/auth/context.json``, what a node with the embedded server writes).
The two last places are per role: ``context.json`` is the client's, ``context-<role>.json``
another role's (``context_name``), so a command that needs more than a client's rights
(reading a bucket) finds the role it needs, and one that does not never takes more.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.transport import Security
from node.auth.private import write_private
from node.auth.roles import Role

ENV_VAR = "BA_CONTEXT"
DATA_DIR_ENV_VAR = "BA_NODE__DATA_DIR"  # the node's data dir setting, also read here
DEFAULT_DATA_DIR = Path("./data")
FILE_NAME = "context.json"


def context_name(role: Role = Role.CLIENT) -> str:
    """The file name of ``role``'s context in a config or auth directory."""
    return FILE_NAME if role is Role.CLIENT else f"context-{role}.json"


@dataclass(frozen=True)
class ClientContext:
    servers: tuple[str, ...]
    creds: Path | None = None
    ca: Path | None = None
    inbox_prefix: str | None = None
    subject_prefix: str = "ba"
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"description": self.description, "url": ",".join(self.servers),
                                "subject_prefix": self.subject_prefix}
        for name in ("creds", "ca"):
            value = getattr(self, name)
            if value is not None:
                data[name] = str(Path(value).resolve())  # absolute, as `nats` expects
        if self.inbox_prefix:
            data["inbox_prefix"] = self.inbox_prefix
        return data

    def security(self) -> Security:
        """The creds, CA and inbox prefix to connect with."""
        return Security(creds_file=self.creds, tls_ca_file=self.ca,
                        inbox_prefix=self.inbox_prefix)

    def write(self, path: Path) -> Path:
        """0600: it names where the secrets are (and a ``nats`` context may hold more)."""
        return write_private(path, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> ClientContext:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BrokerError(ErrorCode.CONFIG, f"cannot read context {path}: {exc}",
                              {"path": str(path)}) from exc
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            raise BrokerError(ErrorCode.CONFIG, f"context {path} has no servers (url)",
                              {"path": str(path)})
        base = path.parent

        def file(name: str) -> Path | None:
            value = data.get(name)
            return None if not value else (base / str(value)).resolve()

        return cls(servers=tuple(u.strip() for u in data["url"].split(",") if u.strip()),
                   creds=file("creds"), ca=file("ca"),
                   inbox_prefix=data.get("inbox_prefix") or None,
                   subject_prefix=str(data.get("subject_prefix") or "ba"),
                   description=str(data.get("description") or ""))


def candidates(explicit: Path | None = None, data_dir: Path | None = None,
               env: Mapping[str, str] | None = None, role: Role = Role.CLIENT) -> list[Path]:
    """Where a context is looked for, in order."""
    env = os.environ if env is None else env
    config_home = Path(env.get("XDG_CONFIG_HOME") or Path(env.get("HOME", "~")) / ".config")
    found = [explicit] if explicit else []
    if env.get(ENV_VAR):
        found.append(Path(env[ENV_VAR]))
    name = context_name(role)
    found.append(config_home.expanduser() / "broker-agents" / name)
    data = data_dir or Path(env.get(DATA_DIR_ENV_VAR) or DEFAULT_DATA_DIR)
    found.append(data / "auth" / name)
    return found


def find(explicit: Path | None = None, data_dir: Path | None = None,
         env: Mapping[str, str] | None = None, role: Role = Role.CLIENT) -> Path | None:
    """The first context file that exists; an explicit or ``$BA_CONTEXT`` path that does
    not exist is an error, not a reason to fall back to another identity."""
    paths = candidates(explicit, data_dir, env, role)
    named = len(paths) - 2  # the explicit and $BA_CONTEXT ones
    for index, path in enumerate(paths):
        if path.is_file():
            return path
        if index < named:
            raise BrokerError(ErrorCode.CONFIG, f"context {path} does not exist",
                              {"path": str(path)})
    return None


def tls_context(ca: Path) -> ssl.SSLContext:
    """Verifies the server's certificate against ``ca`` (and its host name)."""
    tls = Security(tls_ca_file=ca).tls_context()
    assert tls is not None
    return tls


def connect_kwargs(context: ClientContext) -> dict[str, Any]:
    """nats-py ``connect`` keyword arguments for ``context``."""
    return {"servers": list(context.servers), **context.security().kwargs()}
