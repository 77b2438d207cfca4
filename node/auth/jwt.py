"""nkeys and NATS JWTs (v2): the operator signs accounts, an account signs its users.

A NATS JWT is ``base64url(header).base64url(claims).base64url(signature)`` with the header
``{"typ": "JWT", "alg": "ed25519-nkey"}`` and an Ed25519 signature by the issuer's nkey
over the first two parts. The claims follow the NATS JWT v2 schema (nats-io/jwt): the
standard ``jti``, ``iat``, ``iss``, ``sub``, ``name`` (and ``exp``), and a ``nats``
object whose ``type`` is ``operator``, ``account`` or ``user`` and ``version`` 2.

We write the claims ourselves rather than depend on the ``nats-jwt`` package: that one
calls itself untested and in development, pins old ``pytz``, and adds four dependencies
for what is a few dozen lines over ``nkeys``. What the server accepts is proven by the
integration tests against a real nats-server.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import nkeys

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.natsjwt import HEADER, decode  # noqa: F401  (node.auth reads JWTs here)
from broker_agents.core.natsjwt import b64 as _b64
from broker_agents.core.natsjwt import canonical_json as _json

NO_LIMIT = -1


class KeyKind(StrEnum):
    """What an nkey identifies; its public key starts with the kind's letter."""

    OPERATOR = "operator"
    ACCOUNT = "account"
    USER = "user"


_PREFIX = {
    KeyKind.OPERATOR: nkeys.PREFIX_BYTE_OPERATOR,
    KeyKind.ACCOUNT: nkeys.PREFIX_BYTE_ACCOUNT,
    KeyKind.USER: nkeys.PREFIX_BYTE_USER,
}
_LETTER = {KeyKind.OPERATOR: "O", KeyKind.ACCOUNT: "A", KeyKind.USER: "U"}


@dataclass(frozen=True)
class NKey:
    """One nkey seed (``SO..``, ``SA..``, ``SU..``) and what it identifies."""

    kind: KeyKind
    seed: str

    @classmethod
    def generate(cls, kind: KeyKind) -> NKey:
        seed = bytes(nkeys.encode_seed(secrets.token_bytes(32), _PREFIX[kind])).decode()
        return cls(kind, seed)

    @classmethod
    def from_seed(cls, seed: str, kind: KeyKind) -> NKey:
        """The key of ``seed``, which must be of ``kind`` (an account seed is no user)."""
        try:
            public = _keypair(seed).public_key.decode()
        except (nkeys.NkeysError, ValueError, TypeError) as exc:
            raise BrokerError(ErrorCode.CONFIG, f"not a valid {kind} nkey seed") from exc
        if not public.startswith(_LETTER[kind]):
            raise BrokerError(ErrorCode.CONFIG, f"the seed is not a {kind} nkey",
                              {"public_key": public})
        return cls(kind, seed)

    @property
    def public_key(self) -> str:
        return str(_keypair(self.seed).public_key.decode())

    def sign(self, data: bytes) -> bytes:
        return bytes(_keypair(self.seed).sign(data))


def _keypair(seed: str) -> Any:
    return nkeys.from_seed(bytearray(seed.encode()))


def encode(claims: dict[str, Any], issuer: NKey, *, now: int | None = None) -> str:
    """Sign ``claims`` (with ``sub``, ``name`` and ``nats``) as ``issuer``; sets ``iss``,
    ``iat`` and a ``jti`` that is the hash of the rest (as nats-io/jwt does)."""
    body = {k: v for k, v in claims.items() if k != "jti"}
    body["iss"] = issuer.public_key
    body["iat"] = int(time.time()) if now is None else now
    digest = hashlib.sha256(_json(body)).digest()
    body["jti"] = base64.b32encode(digest).decode().rstrip("=")
    signed = f"{_b64(_json(HEADER))}.{_b64(_json(body))}"
    return f"{signed}.{_b64(issuer.sign(signed.encode()))}"


def _nats(kind: str, **fields: Any) -> dict[str, Any]:
    return {**fields, "type": kind, "version": 2}


def operator_jwt(operator: NKey, name: str, system_account: str) -> str:
    """The operator's self-signed JWT naming the system account."""
    return encode({"sub": operator.public_key, "name": name,
                   "nats": _nats("operator", system_account=system_account)}, operator)


@dataclass(frozen=True)
class JetStreamLimits:
    """An account's JetStream limits (-1: unlimited). ``None`` for the account disables
    JetStream in it (the system account must not have it)."""

    memory: int = NO_LIMIT
    disk: int = NO_LIMIT
    streams: int = NO_LIMIT
    consumers: int = NO_LIMIT

    def claims(self) -> dict[str, int]:
        return {"mem_storage": self.memory, "disk_storage": self.disk,
                "streams": self.streams, "consumer": self.consumers}


def account_jwt(account: NKey, name: str, operator: NKey,
                jetstream: JetStreamLimits | None = JetStreamLimits()) -> str:
    """An account JWT signed by the operator; JetStream enabled by its limits."""
    limits: dict[str, Any] = {"subs": NO_LIMIT, "data": NO_LIMIT, "payload": NO_LIMIT,
                              "imports": NO_LIMIT, "exports": NO_LIMIT, "wildcards": True,
                              "conn": NO_LIMIT, "leaf": NO_LIMIT}
    if jetstream is not None:
        limits.update(jetstream.claims())
    return encode({"sub": account.public_key, "name": name,
                   "nats": _nats("account", limits=limits,
                                 default_permissions={"pub": {}, "sub": {}})}, operator)


def user_jwt(user_public_key: str, name: str, account: NKey, permissions: dict[str, Any],
             *, expires: int | None = None) -> str:
    """A user JWT signed by the account, with ``permissions`` (``pub``, ``sub``, ``resp``
    in the JWT's form: see ``roles.Permissions.claims``)."""
    claims: dict[str, Any] = {
        "sub": user_public_key, "name": name,
        "nats": _nats("user", subs=NO_LIMIT, data=NO_LIMIT, payload=NO_LIMIT, **permissions),
    }
    if expires is not None:
        claims["exp"] = expires
    return encode(claims, account)
