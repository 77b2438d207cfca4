"""Who did it: principals, signed acts, and the rules that bind an act to its principal.

An *act* is a message that carries an identity: a bid, an award answer, a vote, a
reputation report, a lock's holder, a variable's actor, an auction's seller, a deposit.
NATS's permissions prove which role a connection has, not which principal sent a given
message on a public subject, so an act is signed:

- the sender's **user JWT** (from its ``.creds``), which the account signed: the account
  (certified by the operator) is the trusted party, so a key read from a writable record
  or from a first ``hello`` proves nothing;
- an Ed25519 **signature** by the user's nkey over ``act_bytes``: the subject, the time of
  signing, whom it acts for, and the SHA-256 of the payload. A signature is good for one
  subject, one payload, and ``FRESH_MS`` around the time it claims;
- optionally **acting for** someone: a node speaks for the agents it hosts, an admin for
  any account; a client or an observer speaks only for itself.

The principal's ``identity`` is then the only name the act may carry (``bind``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.tokens import TOKEN

# Headers of a signed act (NATS headers: any language's client can set them).
HEADER_JWT = "Ba-Jwt"
HEADER_SIGNATURE = "Ba-Sig"
HEADER_SIGNED_AT = "Ba-Signed-At"
HEADER_ACTING_FOR = "Ba-For"
ACT_HEADERS = (HEADER_JWT, HEADER_SIGNATURE, HEADER_SIGNED_AT, HEADER_ACTING_FOR)

# How far the signing time may be from the verifier's clock (skew plus transit).
FRESH_MS = 120_000
# The JWT tag that names a user's role (``auth issue`` writes it).
ROLE_TAG = "ba-role:"


class Role(StrEnum):
    NODE = "node"
    CLIENT = "client"
    ADMIN = "admin"
    OBSERVER = "observer"


# Who may act for someone else: a node for the agents it hosts, an admin for any account.
ACTS_FOR_OTHERS = frozenset({Role.NODE, Role.ADMIN})


class Unauthorized(BrokerError):
    """An act without a valid signature, or naming someone its signer may not speak for.
    ``reason`` is a bounded label for metrics."""

    def __init__(self, reason: str, message: str, details: dict[str, Any] | None = None
                 ) -> None:
        super().__init__(ErrorCode.UNAUTHORIZED, message, {"reason": reason, **(details or {})})
        self.reason = reason


@dataclass(frozen=True)
class Principal:
    """A verified signer: its user name, role and key, and whom it acts for."""

    name: str
    role: Role
    public_key: str
    acting_for: str | None = None

    @property
    def identity(self) -> str:
        """The one name this act may carry."""
        return self.acting_for or self.name

    @property
    def privileged(self) -> bool:
        """Nodes and admins: trusted infrastructure and the treasury."""
        return self.role in ACTS_FOR_OTHERS


def act_bytes(subject: str, signed_at_ms: int, acting_for: str | None, data: bytes) -> bytes:
    """What an act's signature covers."""
    digest = hashlib.sha256(data).hexdigest()
    return f"ba-act-v1\n{subject}\n{signed_at_ms}\n{acting_for or ''}\n{digest}".encode()


def key_certificate_bytes(agent_id: str, public_key: str) -> bytes:
    """What a hosting node signs to certify one of its agents' own keys (PBFT replicas)."""
    return f"ba-agent-key-v1\n{agent_id}\n{public_key}".encode()


def role_of(claims: dict[str, Any]) -> Role:
    """The role a user JWT's tags name; refused when it names none or an unknown one."""
    nats = claims.get("nats")
    tags = nats.get("tags") if isinstance(nats, dict) else None
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, str) and tag.startswith(ROLE_TAG):
            try:
                return Role(tag[len(ROLE_TAG):])
            except ValueError:
                break
    raise Unauthorized("no_role", "the signer's JWT names no broker-agents role")


def principal_of(claims: dict[str, Any], trusted_issuers: frozenset[str], now_s: float,
                 acting_for: str | None) -> Principal:
    """The principal of a user JWT whose signature already holds: issued by a trusted
    account, current, a user with a role, allowed to act for ``acting_for``."""
    issuer = claims.get("iss")
    if issuer not in trusted_issuers:
        raise Unauthorized("untrusted_issuer", "the signer's JWT was not issued by the "
                           "account this node trusts", {"iss": issuer})
    nats = claims.get("nats")
    if not isinstance(nats, dict) or nats.get("type") != "user":
        raise Unauthorized("not_a_user", "the signer's JWT is not a user JWT")
    expires = claims.get("exp")
    if isinstance(expires, int | float) and expires <= now_s:
        raise Unauthorized("expired", "the signer's JWT has expired", {"exp": expires})
    name, key = claims.get("name"), claims.get("sub")
    if not (isinstance(name, str) and TOKEN.match(name) and isinstance(key, str)):
        raise Unauthorized("bad_claims", "the signer's JWT has no valid name or key")
    role = role_of(claims)
    if acting_for is not None:
        if not TOKEN.match(acting_for):
            raise Unauthorized("bad_acting_for", f"{HEADER_ACTING_FOR} is not a valid id")
        if role not in ACTS_FOR_OTHERS and acting_for != name:
            raise Unauthorized("acting_for_denied", f"a {role} may act only for itself",
                               {"principal": name, "acting_for": acting_for})
    return Principal(name, role, key, acting_for if acting_for != name else None)


def check_fresh(signed_at_ms: int, now_ms: int, window_ms: int = FRESH_MS) -> None:
    if abs(now_ms - signed_at_ms) > window_ms:
        raise Unauthorized("stale", "the act's signature is too old or from the future",
                           {"signed_at_ms": signed_at_ms, "now_ms": now_ms,
                            "window_ms": window_ms})


def bind(principal: Principal | None, claimed: str | None, what: str, *,
         required: bool) -> str | None:
    """The identity an act carries: the principal's. A claimed name that differs is
    refused; without a principal the act is refused when ``required`` (secured
    deployments), and keeps its claimed name otherwise (``--insecure``)."""
    if principal is None:
        if required:
            raise Unauthorized("unsigned", f"the {what} must be a signed act",
                               {"field": what})
        return claimed
    if claimed is not None and claimed != principal.identity:
        raise Unauthorized("identity_mismatch",
                           f"the {what} {claimed!r} is not the signer "
                           f"{principal.identity!r}",
                           {"field": what, "claimed": claimed, "signer": principal.identity})
    return principal.identity


class SignedAct(BaseModel):
    """A signed act kept as evidence (say, a winner's award acknowledgement in its
    auction record), so that whoever acts on it later (a sweeper after a takeover) can
    verify who signed what without trusting the record's writer."""

    model_config = ConfigDict(frozen=True)

    subject: str = Field(max_length=1024)
    data: bytes = Field(max_length=1 << 20)
    headers: dict[str, str] = Field(max_length=8)

    @field_serializer("data", when_used="json")
    def _data_out(self, data: bytes) -> str:
        """Base64 on the wire and in records (``codec`` dumps models in JSON mode, and a
        signed payload is rarely UTF-8)."""
        return base64.b64encode(data).decode()

    @field_validator("data", mode="before")
    @classmethod
    def _data_in(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (ValueError, binascii.Error) as exc:
                raise ValueError("data: not base64") from exc
        return value

    @classmethod
    def of(cls, subject: str, data: bytes, headers: dict[str, str] | None) -> SignedAct:
        """The act's evidence: its subject, payload and signature headers (no others)."""
        kept = {k: v for k, v in (headers or {}).items() if k in ACT_HEADERS}
        return cls(subject=subject, data=data, headers=kept)
