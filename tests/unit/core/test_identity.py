"""Signed acts: a signature is good for one signer, subject, payload, time and acting-for.

Keys and JWTs are made in memory the way ``auth init`` makes them (an account signs its
users), so the rules are tested without a server.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core.identity import (
    FRESH_MS,
    HEADER_ACTING_FOR,
    HEADER_SIGNATURE,
    Principal,
    Role,
    SignedAct,
    Unauthorized,
    bind,
)
from broker_agents.identity import Authenticator, Signer
from node.auth import jwt
from node.auth.jwt import KeyKind, NKey
from node.auth.roles import user_claims

NOW_MS = 1_800_000_000_000
ACCOUNT = NKey.generate(KeyKind.ACCOUNT)
OTHER_ACCOUNT = NKey.generate(KeyKind.ACCOUNT)


def signer(name: str, role: Role = Role.CLIENT, account: NKey = ACCOUNT,
           expires: int | None = None) -> Signer:
    key = NKey.generate(KeyKind.USER)
    token = jwt.user_jwt(key.public_key, name, account, user_claims(role, name),
                         expires=expires)
    return Signer(token, key.seed)


def authenticator() -> Authenticator:
    return Authenticator(frozenset({ACCOUNT.public_key}))


ALICE = signer("alice")
MALLORY = signer("mallory")
ADMIN = signer("admin", Role.ADMIN)
NODE = signer("node", Role.NODE)


def verify(headers: dict[str, str] | None, subject: str = "ba.coord.lock",
           data: bytes = b"payload", now_ms: int = NOW_MS) -> Principal | None:
    return authenticator()._authenticate(subject, data, headers, now_ms)


def test_a_signed_act_names_its_signer_and_role() -> None:
    principal = verify(ALICE.headers("ba.coord.lock", b"payload", now_ms=NOW_MS))
    assert principal is not None
    assert (principal.name, principal.role, principal.identity) == ("alice", Role.CLIENT,
                                                                     "alice")


def test_unsigned_is_no_principal_and_bind_refuses_it_when_required() -> None:
    assert verify(None) is None
    with pytest.raises(Unauthorized) as err:
        bind(None, "alice", "holder", required=True)
    assert err.value.reason == "unsigned"
    assert bind(None, "alice", "holder", required=False) == "alice"  # --insecure


@pytest.mark.parametrize(("subject", "data", "now_ms", "reason"), [
    ("ba.coord.leader", b"payload", NOW_MS, "bad_signature"),       # replayed elsewhere
    ("ba.coord.lock", b"payl0ad", NOW_MS, "bad_signature"),         # payload changed
    ("ba.coord.lock", b"payload", NOW_MS + FRESH_MS + 1, "stale"),  # replayed later
])
def test_a_signature_covers_subject_payload_and_time(subject: str, data: bytes, now_ms: int,
                                                     reason: str) -> None:
    headers = ALICE.headers("ba.coord.lock", b"payload", now_ms=NOW_MS)
    with pytest.raises(Unauthorized) as err:
        verify(headers, subject, data, now_ms)
    assert err.value.reason == reason


def test_borrowed_jwt_with_own_key_is_refused() -> None:
    """Mallory presents alice's JWT but can only sign with her own key."""
    headers = MALLORY.headers("ba.coord.lock", b"payload", now_ms=NOW_MS)
    headers["Ba-Jwt"] = ALICE.jwt
    with pytest.raises(Unauthorized) as err:
        verify(headers)
    assert err.value.reason == "bad_signature"


def test_a_jwt_from_another_account_is_refused() -> None:
    stranger = signer("alice", account=OTHER_ACCOUNT)
    with pytest.raises(Unauthorized) as err:
        verify(stranger.headers("ba.coord.lock", b"payload", now_ms=NOW_MS))
    assert err.value.reason == "untrusted_issuer"


def test_an_expired_jwt_is_refused() -> None:
    old = signer("alice", expires=NOW_MS // 1000 - 1)
    with pytest.raises(Unauthorized) as err:
        verify(old.headers("ba.coord.lock", b"payload", now_ms=NOW_MS))
    assert err.value.reason == "expired"


def test_only_nodes_and_admins_act_for_others() -> None:
    with pytest.raises(Unauthorized) as err:
        verify(MALLORY.headers("ba.coord.lock", b"payload", "alice", now_ms=NOW_MS))
    assert err.value.reason == "acting_for_denied"
    for privileged in (NODE, ADMIN):
        principal = verify(privileged.headers("ba.coord.lock", b"payload", "alice",
                                              now_ms=NOW_MS))
        assert principal is not None and principal.identity == "alice"


def test_acting_for_cannot_be_swapped_after_signing() -> None:
    headers = NODE.headers("ba.coord.lock", b"payload", "bidder-1", now_ms=NOW_MS)
    headers[HEADER_ACTING_FOR] = "victim"
    with pytest.raises(Unauthorized):
        verify(headers)


def test_bind_refuses_a_claimed_name_other_than_the_signers() -> None:
    principal = verify(MALLORY.headers("ba.coord.lock", b"payload", now_ms=NOW_MS))
    with pytest.raises(Unauthorized) as err:
        bind(principal, "alice", "holder", required=True)
    assert err.value.reason == "identity_mismatch"
    assert bind(principal, None, "holder", required=True) == "mallory"


def test_stored_evidence_verifies_long_after_without_a_clock() -> None:
    act = SignedAct.of("_INBOX.node.x.1-0", b"ack", NODE.headers(
        "_INBOX.node.x.1-0", b"ack", "bidder-1", now_ms=NOW_MS))
    assert authenticator().verify_stored(act).identity == "bidder-1"
    forged = act.model_copy(update={"data": b"ack, twice the price"})
    with pytest.raises(Unauthorized):
        authenticator().verify_stored(forged)


def test_a_key_certificate_binds_an_agent_to_its_key() -> None:
    key = NKey.generate(KeyKind.USER).public_key
    cert = NODE.certify("replica-1", key)
    assert authenticator().verify_certificate("replica-1", key, cert, NODE.jwt) == "node"
    with pytest.raises(Unauthorized):
        authenticator().verify_certificate("replica-2", key, cert, NODE.jwt)
    with pytest.raises(Unauthorized) as err:  # a client cannot certify keys
        authenticator().verify_certificate("replica-1", key, ALICE.certify("replica-1", key),
                                           ALICE.jwt)
    assert err.value.reason == "not_a_node"


@settings(max_examples=60, deadline=None)
@given(subject=st.sampled_from(["ba.coord.lock", "ba.auction.a1.bid"]),
       data=st.binary(max_size=64), flip=st.integers(min_value=0, max_value=63))
def test_any_flipped_signature_bit_is_refused(subject: str, data: bytes, flip: int) -> None:
    headers = ALICE.headers(subject, data, now_ms=NOW_MS)
    assert verify(headers, subject, data) is not None
    raw = bytearray(base64.b64decode(headers[HEADER_SIGNATURE]))
    raw[flip // 8] ^= 1 << (flip % 8)
    headers[HEADER_SIGNATURE] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(Unauthorized):
        verify(headers, subject, data)


@settings(max_examples=40, deadline=None)
@given(junk=st.dictionaries(st.sampled_from(["Ba-Jwt", "Ba-Sig", "Ba-Signed-At", "Ba-For"]),
                            st.text(max_size=40), min_size=1))
def test_junk_headers_are_refused_or_unsigned_never_an_exception(junk: dict[str, str]) -> None:
    try:
        principal = verify(junk)
    except Unauthorized:
        return
    assert principal is None and "Ba-Jwt" not in junk
