"""Signing and verifying acts on a NATS connection (the rules are ``core.identity``'s).

A connection made with a ``.creds`` file carries an ``Identity``: a ``Signer`` (its user
JWT and nkey) and an ``Authenticator`` that trusts the account which issued that JWT.
Code that sends an act asks ``act_headers(nc, subject, data)``; code that receives one
asks ``authenticate(nc, msg)``. A connection without creds (``--insecure``) signs nothing
and requires nothing: acts keep their claimed names, as before trust part 2.

Every refusal is counted in ``ba_unauthorized_total{component,reason}`` and logged at most
once per ``RateLimitedLog`` window and reason.
"""

from __future__ import annotations

import base64
import binascii
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nkeys
from prometheus_client import Counter

from broker_agents.core import natsjwt
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.identity import (
    HEADER_ACTING_FOR,
    HEADER_JWT,
    HEADER_SIGNATURE,
    HEADER_SIGNED_AT,
    Principal,
    SignedAct,
    Unauthorized,
    act_bytes,
    bind,
    check_fresh,
    key_certificate_bytes,
    principal_of,
)
from broker_agents.core.signing import verify_bytes
from broker_agents.logging import get_logger
from broker_agents.ratelog import RateLimitedLog

UNAUTHORIZED = Counter("ba_unauthorized_total",
                       "Acts refused as unsigned, mis-signed or naming someone else",
                       ["component", "reason"])

# Verified JWTs kept (their claims); a verified JWT needs no second issuer check.
JWT_CACHE = 4096

_log = RateLimitedLog(get_logger(component="identity"))


class Signer:
    """Signs acts as the user of a ``.creds`` file."""

    def __init__(self, jwt: str, seed: str) -> None:
        self.jwt = jwt
        self._kp = nkeys.from_seed(bytearray(seed.encode()))
        self.public_key: str = bytes(self._kp.public_key).decode()
        claims = natsjwt.decode(jwt, verify=False)
        self.name = str(claims.get("name", ""))
        self.issuer = str(claims.get("iss", ""))

    @classmethod
    def from_creds(cls, path: Path) -> Signer:
        try:
            text = path.read_text()
        except OSError as exc:
            raise BrokerError(ErrorCode.CONFIG, f"cannot read creds file {path}: {exc}",
                              {"path": str(path)}) from exc
        return cls(*natsjwt.parse_creds(text))

    def headers(self, subject: str, data: bytes, acting_for: str | None = None,
                now_ms: int | None = None) -> dict[str, str]:
        """The headers that make ``data`` on ``subject`` a signed act."""
        signed_at = int(time.time() * 1000) if now_ms is None else now_ms
        signature = self._kp.sign(act_bytes(subject, signed_at, acting_for, data))
        out = {HEADER_JWT: self.jwt, HEADER_SIGNED_AT: str(signed_at),
               HEADER_SIGNATURE: base64.b64encode(signature).decode()}
        if acting_for is not None:
            out[HEADER_ACTING_FOR] = acting_for
        return out

    def certify(self, agent_id: str, public_key: str) -> str:
        """A certificate that ``public_key`` is ``agent_id``'s (a node for its agents)."""
        return base64.b64encode(self._kp.sign(key_certificate_bytes(agent_id, public_key))
                                ).decode()


class Authenticator:
    """Verifies acts against the accounts it trusts; ``required``: unsigned acts refused."""

    def __init__(self, trusted_issuers: frozenset[str], *, required: bool = True) -> None:
        self.trusted_issuers = trusted_issuers
        self.required = required
        self._claims: OrderedDict[str, dict[str, Any]] = OrderedDict()

    @classmethod
    def open(cls) -> Authenticator:
        """For ``--insecure``: verifies what is signed, but nothing is required."""
        return cls(frozenset(), required=False)

    def authenticate(self, subject: str, data: bytes, headers: dict[str, str] | None,
                     *, component: str, now_ms: int | None = None) -> Principal | None:
        """The act's principal; None when unsigned and that is allowed. Raises
        ``Unauthorized`` (counted, logged) for a mis-signed act or an unsigned one when
        signatures are required."""
        try:
            return self._authenticate(subject, data, headers, now_ms)
        except Unauthorized as exc:
            refused(component, exc, subject=subject)
            raise

    def _authenticate(self, subject: str, data: bytes, headers: dict[str, str] | None,
                      now_ms: int | None) -> Principal | None:
        token = headers.get(HEADER_JWT) if headers else None
        if token is None or headers is None:
            return None
        now = int(time.time() * 1000) if now_ms is None else now_ms
        try:
            signed_at = int(headers.get(HEADER_SIGNED_AT, ""))
            signature = base64.b64decode(headers.get(HEADER_SIGNATURE, ""), validate=True)
        except (ValueError, binascii.Error) as exc:
            raise Unauthorized("malformed", "the act's signature headers are malformed"
                               ) from exc
        check_fresh(signed_at, now)
        claims = self._verified_claims(token)
        acting_for = headers.get(HEADER_ACTING_FOR)
        principal = principal_of(claims, self.trusted_issuers, now / 1000, acting_for)
        if not verify_bytes(principal.public_key,
                            act_bytes(subject, signed_at, acting_for, data), signature):
            raise Unauthorized("bad_signature", "the act's signature does not match its "
                               "signer, subject and payload", {"signer": principal.name})
        return principal

    def _verified_claims(self, token: str) -> dict[str, Any]:
        claims = self._claims.get(token)
        if claims is not None:
            self._claims.move_to_end(token)
            return claims
        try:
            claims = natsjwt.decode(token)
        except BrokerError as exc:
            raise Unauthorized("bad_jwt", f"the signer's JWT does not verify: {exc.message}"
                               ) from exc
        self._claims[token] = claims
        if len(self._claims) > JWT_CACHE:
            self._claims.popitem(last=False)
        return claims

    def verify_stored(self, act: SignedAct) -> Principal:
        """The signer of a stored act: signature, issuer and role checked as for a live
        act, but not its age (evidence is read long after it was made)."""
        headers = act.headers
        if HEADER_JWT not in headers:
            raise Unauthorized("unsigned", "the stored act is not signed")
        signed_at = headers.get(HEADER_SIGNED_AT, "")
        now_ms = int(signed_at) if signed_at.isdigit() else 0
        principal = self._authenticate(act.subject, act.data, headers, now_ms)
        assert principal is not None
        return principal

    def verify_certificate(self, agent_id: str, public_key: str, certificate: str,
                           node_jwt: str) -> str:
        """The certifying node's name, when ``node_jwt`` is a trusted node's and its key
        signed ``agent_id``'s ``public_key``."""
        claims = self._verified_claims(node_jwt)
        principal = principal_of(claims, self.trusted_issuers, time.time(), None)
        if not principal.privileged:
            raise Unauthorized("not_a_node", "an agent key must be certified by a node")
        try:
            signature = base64.b64decode(certificate, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise Unauthorized("malformed", "the key certificate is malformed") from exc
        if not verify_bytes(principal.public_key, key_certificate_bytes(agent_id, public_key),
                            signature):
            raise Unauthorized("bad_certificate", f"the key of {agent_id} is not certified "
                               f"by {principal.name}")
        return principal.name


@dataclass(frozen=True)
class Identity:
    """What a connection signs with and verifies against."""

    signer: Signer | None
    authenticator: Authenticator

    @classmethod
    def from_creds(cls, path: Path | None) -> Identity:
        if path is None:
            return cls(None, Authenticator.open())
        signer = Signer.from_creds(path)
        return cls(signer, Authenticator(frozenset({signer.issuer})))


_INSECURE = Identity(None, Authenticator.open())
_identities: weakref.WeakKeyDictionary[Any, Identity] = weakref.WeakKeyDictionary()


C = TypeVar("C")


def attach(nc: C, identity: Identity) -> C:
    """Give a connection its identity (done where connections are made); returns ``nc``."""
    _identities[nc] = identity
    return nc


def identity_of(nc: Any) -> Identity:
    """The connection's identity; an unattached one signs nothing and requires nothing."""
    return _identities.get(nc, _INSECURE)


def act_headers(nc: Any, subject: str, data: bytes, acting_for: str | None = None,
                headers: dict[str, str] | None = None) -> dict[str, str] | None:
    """``headers`` plus the signature of an act sent on ``nc`` (unchanged when unsigned)."""
    signer = identity_of(nc).signer
    if signer is None:
        return headers
    return {**(headers or {}), **signer.headers(subject, data, acting_for)}


def authenticate(nc: Any, subject: str, data: bytes, headers: dict[str, str] | None, *,
                 component: str) -> Principal | None:
    """The principal of an act received on ``nc`` (see ``Authenticator.authenticate``)."""
    return identity_of(nc).authenticator.authenticate(subject, data, headers,
                                                      component=component)


def verify_stored(nc: Any, act: SignedAct, *, component: str) -> Principal:
    """The signer of stored evidence (see ``Authenticator.verify_stored``); counted."""
    try:
        return identity_of(nc).authenticator.verify_stored(act)
    except Unauthorized as exc:
        refused(component, exc, subject=act.subject)
        raise


def bind_act(nc: Any, principal: Principal | None, claimed: str | None, what: str, *,
             component: str) -> str | None:
    """``core.identity.bind`` with the connection's requirement; refusals counted."""
    try:
        return bind(principal, claimed, what, required=identity_of(nc).authenticator.required)
    except Unauthorized as exc:
        refused(component, exc, field=what)
        raise


def require_privileged(nc: Any, principal: Principal | None, what: str, *, component: str,
                       reason: str = "not_privileged", own_name: bool = False) -> None:
    """Only a node or an admin may do ``what`` (``own_name``: in its own name, not acting
    for anyone). Refused (counted, logged) when unsigned on a secured connection or signed
    by anyone else; an unsigned act on an ``--insecure`` one passes."""
    if principal is None:
        if not identity_of(nc).authenticator.required:
            return
        exc = Unauthorized("unsigned", f"{what} must be a signed act")
    elif not principal.privileged or (own_name and principal.acting_for is not None):
        exc = Unauthorized(reason, f"{what} is for nodes and admins, not "
                           f"{principal.identity!r} ({principal.role})",
                           {"signer": principal.identity})
    else:
        return
    refused(component, exc, what=what)
    raise exc


def refused(component: str, exc: Unauthorized, **fields: Any) -> None:
    """Count a refused act and log it (at most once per window and reason)."""
    UNAUTHORIZED.labels(component, exc.reason).inc()
    _log.warning((component, exc.reason), "act refused: unauthorized", component=component,
                 reason=exc.reason, error=exc.message[:200], **fields)
