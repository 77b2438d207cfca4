"""nkeys, NATS JWTs and creds files, without a server (the integration tests show that a
real nats-server accepts them)."""

from __future__ import annotations

import base64
import json

import pytest

from broker_agents.core.errors import BrokerError, ErrorCode
from node.auth import jwt
from node.auth.creds import Creds
from node.auth.jwt import JetStreamLimits, KeyKind, NKey
from node.auth.roles import Role, permissions


@pytest.fixture(scope="module")
def keys() -> tuple[NKey, NKey, NKey]:
    return (NKey.generate(KeyKind.OPERATOR), NKey.generate(KeyKind.ACCOUNT),
            NKey.generate(KeyKind.USER))


def test_keys_say_what_they_are(keys: tuple[NKey, NKey, NKey]) -> None:
    operator, account, user = keys
    assert (operator.public_key[0], account.public_key[0], user.public_key[0]) == \
        ("O", "A", "U")
    assert NKey.from_seed(account.seed, KeyKind.ACCOUNT) == account
    with pytest.raises(BrokerError) as err:
        NKey.from_seed(account.seed, KeyKind.USER)
    assert err.value.code is ErrorCode.CONFIG
    with pytest.raises(BrokerError):
        NKey.from_seed("SUnotaseed", KeyKind.USER)


def test_the_chain_operator_account_user(keys: tuple[NKey, NKey, NKey]) -> None:
    operator, account, user = keys
    op = jwt.decode(jwt.operator_jwt(operator, "op", system_account="ASYS"))
    assert op["iss"] == op["sub"] == operator.public_key
    assert op["nats"] == {"system_account": "ASYS", "type": "operator", "version": 2}
    acc = jwt.decode(jwt.account_jwt(account, "ba", operator, JetStreamLimits(disk=1 << 30)))
    assert (acc["iss"], acc["sub"], acc["name"]) == (operator.public_key, account.public_key,
                                                     "ba")
    assert acc["nats"]["type"] == "account"
    assert acc["nats"]["limits"]["disk_storage"] == 1 << 30
    assert acc["nats"]["limits"]["mem_storage"] == -1
    system = jwt.decode(jwt.account_jwt(account, "SYS", operator, jetstream=None))
    assert "disk_storage" not in system["nats"]["limits"]  # no JetStream in the system account
    grants = permissions(Role.CLIENT, "alice").claims()
    usr = jwt.decode(jwt.user_jwt(user.public_key, "alice", account, grants, expires=2 ** 40))
    assert (usr["iss"], usr["sub"], usr["exp"]) == (account.public_key, user.public_key, 2 ** 40)
    assert usr["nats"]["type"] == "user" and usr["nats"]["version"] == 2
    assert usr["nats"]["pub"] == grants["pub"] and usr["nats"]["resp"] == grants["resp"]
    assert len(usr["jti"]) == 52


def _swap_claims(token: str, change: dict[str, object]) -> str:
    header, claims, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    body.update(change)
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_a_changed_claim_breaks_the_signature(keys: tuple[NKey, NKey, NKey]) -> None:
    _, account, user = keys
    token = jwt.user_jwt(user.public_key, "alice", account, {"pub": {"allow": ["ba.coord.*"]}})
    forged = _swap_claims(token, {"nats": {"pub": {"allow": [">"]}}})
    with pytest.raises(BrokerError) as err:
        jwt.decode(forged)
    assert err.value.code is ErrorCode.REJECTED
    assert jwt.decode(forged, verify=False)["nats"] == {"pub": {"allow": [">"]}}
    other = NKey.generate(KeyKind.ACCOUNT)
    with pytest.raises(BrokerError):  # signed by someone else than the issuer it names
        jwt.decode(_swap_claims(token, {"iss": other.public_key}))


@pytest.mark.parametrize("garbage", ["", "a.b", "a.b.c", "x" * 40, "MQ.MQ.MQ", "e30.MQ.MQ"])
def test_garbage_is_malformed(garbage: str) -> None:
    with pytest.raises(BrokerError) as err:
        jwt.decode(garbage)
    assert err.value.code is ErrorCode.MALFORMED


def test_creds_round_trip_in_the_standard_format(keys: tuple[NKey, NKey, NKey]) -> None:
    _, account, user = keys
    creds = Creds(jwt.user_jwt(user.public_key, "alice", account, {}), user.seed)
    text = creds.render()
    assert text.startswith("-----BEGIN NATS USER JWT-----\n")
    assert "-----BEGIN USER NKEY SEED-----\n" + user.seed + "\n------END USER NKEY SEED------" \
        in text
    again = Creds.parse(text)
    assert again == creds and again.public_key == user.public_key
    assert again.claims()["sub"] == user.public_key
    with pytest.raises(BrokerError) as err:
        Creds.parse("-----BEGIN NATS USER JWT-----\nabc\n------END NATS USER JWT------\n")
    assert err.value.code is ErrorCode.CONFIG
