"""Signer/Verifier interfaces and their nkeys (Ed25519) implementation: one home for
signatures (PBFT messages, agents' acts, JWTs).

Cores only see the interfaces, so tests can inject cheaper keyed signers.
The nkeys-backed classes are pure computation: a seed is made from entropy the caller
passes in (``os.urandom(32)`` in the driver, a seeded ``random.Random`` in tests), and
a public key string (``U...``, as the registry stores it) is enough to verify.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import nacl.exceptions
import nacl.signing
import nkeys

if TYPE_CHECKING:
    from random import Random


class Signer(Protocol):
    """Signs bytes as ``identity``; returns a base64 signature."""

    @property
    def identity(self) -> str: ...

    def sign(self, data: bytes) -> str: ...


class Verifier(Protocol):
    """True when ``signature`` over ``data`` was made by ``identity``'s key."""

    def verify(self, identity: str, data: bytes, signature: str) -> bool: ...


def new_user_seed(entropy: bytes) -> bytes:
    """An nkeys user seed (``SU...``) from 32 bytes of entropy."""
    if len(entropy) != 32:
        raise ValueError("entropy must be 32 bytes")
    return bytes(nkeys.encode_seed(entropy, nkeys.PREFIX_BYTE_USER))


def seed_from_rng(rng: Random) -> bytes:
    """A deterministic user seed for tests and simulations."""
    return new_user_seed(rng.randbytes(32))


def public_key_of(seed: bytes) -> str:
    return bytes(nkeys.from_seed(seed).public_key).decode()


@functools.lru_cache(maxsize=4096)
def _verify_key(public_key: str) -> nacl.signing.VerifyKey:
    """Decode an nkeys public key (prefix byte, 32 key bytes, crc16) into a verify key."""
    raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
    if len(raw) != 35 or not nkeys.valid_public_prefix_byte(raw[0]):
        raise ValueError("not an nkeys public key")
    if nkeys.crc16(bytearray(raw[:-2])) != int.from_bytes(raw[-2:], "little"):
        raise ValueError("public key checksum mismatch")
    return nacl.signing.VerifyKey(raw[1:33])


class NkeysSigner:
    """Signs with an nkeys seed; ``identity`` is the replica/agent id it signs as."""

    def __init__(self, identity: str, seed: bytes) -> None:
        self._identity = identity
        self._kp = nkeys.from_seed(seed)
        self.public_key = bytes(self._kp.public_key).decode()

    @property
    def identity(self) -> str:
        return self._identity

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self._kp.sign(data)).decode()


class NkeysVerifier:
    """Verifies against known identities' nkeys public keys; unknown ids never verify."""

    def __init__(self, public_keys: Mapping[str, str]) -> None:
        self._keys = {ident: _verify_key(pk) for ident, pk in public_keys.items()}

    def verify(self, identity: str, data: bytes, signature: str) -> bool:
        key = self._keys.get(identity)
        if key is None:
            return False
        try:
            key.verify(data, base64.b64decode(signature, validate=True))
        except (nacl.exceptions.BadSignatureError, binascii.Error, ValueError):
            return False
        return True


def verify_bytes(public_key: str, data: bytes, signature: bytes) -> bool:
    """True when ``signature`` over ``data`` was made by the nkey ``public_key``."""
    try:
        _verify_key(public_key).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, binascii.Error,
            nacl.exceptions.CryptoError):
        return False
    return True
