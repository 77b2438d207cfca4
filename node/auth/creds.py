"""The standard NATS ``.creds`` file: a user's JWT and its nkey seed, in one file.

The same format ``nsc`` writes and nats-py's ``user_credentials``, the ``nats`` CLI and
every NATS client read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.natsjwt import decode, parse_creds
from broker_agents.subjects import check_token
from node.auth.jwt import KeyKind, NKey
from node.auth.private import write_private
from node.auth.roles import inbox_prefix

_TEMPLATE = """-----BEGIN NATS USER JWT-----
{jwt}
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
{seed}
------END USER NKEY SEED------

*************************************************************
"""


@dataclass(frozen=True)
class Creds:
    jwt: str
    seed: str

    @property
    def public_key(self) -> str:
        return NKey.from_seed(self.seed, KeyKind.USER).public_key

    def claims(self) -> dict[str, object]:
        """The user JWT's claims (signature checked against its issuer)."""
        return decode(self.jwt)

    def render(self) -> str:
        return _TEMPLATE.format(jwt=self.jwt, seed=self.seed)

    def write(self, path: Path) -> Path:
        return write_private(path, self.render())

    @classmethod
    def parse(cls, text: str) -> Creds:
        jwt, seed = parse_creds(text)
        return cls(jwt=jwt, seed=seed)

    @classmethod
    def read(cls, path: Path) -> Creds:
        try:
            return cls.parse(path.read_text())
        except OSError as exc:
            raise BrokerError(ErrorCode.CONFIG, f"cannot read creds file {path}: {exc}",
                              {"path": str(path)}) from exc


def creds_inbox_prefix(path: Path | None) -> str | None:
    """``_INBOX.<user>`` of a creds file's user (its JWT's ``name``), the prefix its
    connections must use; None when there is no file or it names no valid user."""
    if path is None:
        return None
    try:
        name = Creds.read(path).claims().get("name")
        return inbox_prefix(check_token(str(name), "user name"))
    except (BrokerError, ValueError):
        return None
