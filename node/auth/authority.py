"""An auth directory: the operator, the account and its users, the CA, route secrets.

Layout (directories 0700, every file 0600)::

    operator.nk  operator.jwt      the operator's seed and self-signed JWT
    account.nk   account.jwt       the application account (JetStream enabled)
    system.nk    system.jwt        the system account the server requires
    creds/<user>.creds             users' JWTs and seeds (signed by the account)
    tls/ca.pem   tls/ca-key.pem    the local CA
    tls/<server>.pem, <server>-key.pem   server certificates signed by it
    route-password                 the secret servers use to authenticate routes

Every ``ensure_*`` call keeps what is already there and valid, so calling it on every
start is idempotent: keys are never replaced behind a running cluster's back.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from structlog.typing import FilteringBoundLogger

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.logging import get_logger
from broker_agents.subjects import check_token
from node.auth import jwt
from node.auth.creds import Creds
from node.auth.jwt import JetStreamLimits, KeyKind, NKey
from node.auth.private import private_dir, write_private
from node.auth.roles import BUCKET_CONCERNS, DEFAULT_PREFIX, Role, user_claims
from node.auth.tls import CertKey, covers, issue_server_cert, new_ca, server_hosts

OPERATOR_NAME = "broker-agents"
ACCOUNT_NAME = "ba"
SYSTEM_NAME = "SYS"


def _log() -> FilteringBoundLogger:
    """Bound when used: the CLI configures logging after this module is imported."""
    return get_logger(component="auth")


@dataclass(frozen=True)
class TlsFiles:
    """Where a server's certificate, its key and the CA that signed it are."""

    cert: Path
    key: Path
    ca: Path


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise BrokerError(ErrorCode.NOT_FOUND, f"{path} is missing: run `broker-agents auth "
                          "init` for this directory first", {"path": str(path)}) from exc


@dataclass(frozen=True)
class Authority:
    """The keys of one auth directory, loaded."""

    dir: Path
    operator: NKey
    account: NKey
    system: NKey

    # -- create / load --------------------------------------------------------------

    @classmethod
    def exists(cls, directory: Path) -> bool:
        return (directory / "operator.nk").exists()

    @classmethod
    def create(cls, directory: Path, *, account_name: str = ACCOUNT_NAME,
               jetstream: JetStreamLimits = JetStreamLimits()) -> Authority:  # noqa: B008
        """A new operator, account and system account; refuses to replace existing ones."""
        if cls.exists(directory):
            raise BrokerError(ErrorCode.ALREADY_EXISTS, f"{directory} already holds an "
                              "operator; use another --dir, or keep using it",
                              {"dir": str(directory)})
        private_dir(directory)
        auth = cls(directory, NKey.generate(KeyKind.OPERATOR), NKey.generate(KeyKind.ACCOUNT),
                   NKey.generate(KeyKind.ACCOUNT))
        write_private(directory / "system.nk", auth.system.seed + "\n")
        write_private(directory / "system.jwt",
                      jwt.account_jwt(auth.system, SYSTEM_NAME, auth.operator, jetstream=None))
        write_private(directory / "account.nk", auth.account.seed + "\n")
        write_private(directory / "account.jwt",
                      jwt.account_jwt(auth.account, account_name, auth.operator, jetstream))
        write_private(directory / "operator.jwt", jwt.operator_jwt(
            auth.operator, OPERATOR_NAME, auth.system.public_key))
        write_private(directory / "operator.nk", auth.operator.seed + "\n")  # last: exists()
        _log().info("auth.operator_created", dir=str(directory),
                 operator=auth.operator.public_key, account=auth.account.public_key)
        return auth

    @classmethod
    def load(cls, directory: Path) -> Authority:
        return cls(directory,
                   NKey.from_seed(_read_text(directory / "operator.nk"), KeyKind.OPERATOR),
                   NKey.from_seed(_read_text(directory / "account.nk"), KeyKind.ACCOUNT),
                   NKey.from_seed(_read_text(directory / "system.nk"), KeyKind.ACCOUNT))

    @classmethod
    def ensure(cls, directory: Path) -> tuple[Authority, bool]:
        """The directory's authority, created when missing; and whether it was created."""
        if cls.exists(directory):
            return cls.load(directory), False
        return cls.create(directory), True

    # -- what a server needs ----------------------------------------------------------

    @property
    def operator_jwt_path(self) -> Path:
        return self.dir / "operator.jwt"

    def preload(self) -> dict[str, str]:
        """Account public key -> account JWT, for the server's memory resolver."""
        return {self.account.public_key: _read_text(self.dir / "account.jwt"),
                self.system.public_key: _read_text(self.dir / "system.jwt")}

    # -- users ------------------------------------------------------------------------

    def creds_path(self, user: str) -> Path:
        return self.dir / "creds" / f"{check_token(user, 'user name')}.creds"

    def issue(self, role: Role, user: str, *, prefix: str = DEFAULT_PREFIX,
              buckets: Sequence[str] = BUCKET_CONCERNS, out: Path | None = None) -> Path:
        """A new nkey and user JWT for ``user`` in ``role``, written as a creds file."""
        key = NKey.generate(KeyKind.USER)
        token = jwt.user_jwt(key.public_key, user, self.account,
                             user_claims(Role(role), user, prefix, buckets))
        return Creds(token, key.seed).write(out or self.creds_path(user))

    def ensure_user(self, role: Role, user: str, *, prefix: str = DEFAULT_PREFIX) -> Path:
        """``user``'s creds, reissued only when missing, signed by another account, or
        granting other permissions than ``role`` does now."""
        path = self.creds_path(user)
        if path.exists() and self._current(path, role, user, prefix):
            return path
        if path.exists():
            _log().warning("auth.creds_reissued", user=user, role=str(role), path=str(path),
                        reason="another issuer or other permissions than the role's")
        return self.issue(role, user, prefix=prefix)

    def _current(self, path: Path, role: Role, user: str, prefix: str) -> bool:
        try:
            claims = Creds.read(path).claims()
        except BrokerError:
            return False
        nats = claims.get("nats")
        wanted = user_claims(role, user, prefix)
        return (claims.get("iss") == self.account.public_key and isinstance(nats, dict)
                and all(nats.get(k) == v for k, v in wanted.items())
                and set(wanted) == {k for k in ("pub", "sub", "resp", "tags") if k in nats})

    # -- TLS and routes ---------------------------------------------------------------

    @property
    def ca_path(self) -> Path:
        return self.dir / "tls" / "ca.pem"

    def ensure_ca(self) -> CertKey:
        key_path = self.dir / "tls" / "ca-key.pem"
        if self.ca_path.exists() and key_path.exists():
            return CertKey.read(self.ca_path, key_path)
        ca = new_ca()
        ca.write(self.ca_path, key_path)
        return ca

    def ensure_server_cert(self, server: str, hosts: Sequence[str]) -> TlsFiles:
        """``server``'s certificate for ``hosts`` and loopback, kept while it covers them."""
        ca = self.ensure_ca()
        files = TlsFiles(self.dir / "tls" / f"{check_token(server, 'server name')}.pem",
                         self.dir / "tls" / f"{server}-key.pem", self.ca_path)
        names = server_hosts(hosts)
        if files.cert.exists() and files.key.exists():
            if covers(CertKey.read(files.cert, files.key), ca, names):
                return files
            _log().info("auth.server_cert_reissued", server=server, hosts=names,
                     reason="not the CA's, a host missing, or about to expire")
        issue_server_cert(ca, server, names).write(files.cert, files.key)
        return files

    def ensure_route_password(self) -> str:
        path = self.dir / "route-password"
        if path.exists():
            return _read_text(path)
        password = secrets.token_urlsafe(24)
        write_private(path, password + "\n")
        return password
