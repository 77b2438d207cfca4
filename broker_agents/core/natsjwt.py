"""Reading NATS JWTs (v2) and ``.creds`` files: decode, and check the issuer's signature.

A NATS JWT is ``base64url(header).base64url(claims).base64url(signature)`` with the header
``{"typ": "JWT", "alg": "ed25519-nkey"}`` and an Ed25519 signature by the issuer's nkey
over the first two parts. Writing JWTs is the operator's business (``node.auth.jwt``);
reading them is everyone's: a node checks that an act's signer was certified by the
account it trusts.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.signing import verify_bytes

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}

_CREDS_BLOCK = re.compile(r"-{3,}BEGIN [A-Z ]+-{3,}\s*\n\s*(\S+)\s*\n\s*-{3,}END [A-Z ]+-{3,}")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def decode(token: str, *, verify: bool = True) -> dict[str, Any]:
    """The claims of ``token``; with ``verify``, only when the issuer's signature holds."""
    try:
        header_part, claims_part, signature_part = token.strip().split(".")
        header = json.loads(unb64(header_part))
        claims = json.loads(unb64(claims_part))
        signature = unb64(signature_part)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BrokerError(ErrorCode.MALFORMED, "not a NATS JWT") from exc
    if not isinstance(header, dict) or header.get("alg") != HEADER["alg"] \
            or not isinstance(claims, dict):
        raise BrokerError(ErrorCode.MALFORMED, "not an ed25519-nkey JWT", {"header": header})
    issuer = claims.get("iss")
    if verify and not (isinstance(issuer, str) and verify_bytes(
            issuer, f"{header_part}.{claims_part}".encode(), signature)):
        raise BrokerError(ErrorCode.REJECTED, "the JWT's signature does not match its issuer",
                          {"iss": issuer, "sub": claims.get("sub")})
    return claims


def parse_creds(text: str) -> tuple[str, str]:
    """(user JWT, nkey seed) of a ``.creds`` file's text."""
    blocks = _CREDS_BLOCK.findall(text)
    if len(blocks) < 2:
        raise BrokerError(ErrorCode.CONFIG, "not a NATS creds file (expected a user JWT "
                          "block and a user nkey seed block)")
    return blocks[0], blocks[1]
