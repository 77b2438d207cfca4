"""``AgentContext.send`` on the fast path: the envelope decodes as the receiver expects,
an unsigned send carries no headers, and a signed one stays a signed act of the agent
(verified for the very bytes sent; a changed payload or subject is refused)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from broker_agents import codec, identity
from broker_agents.context import INBOX_CACHE, AgentContext
from broker_agents.core.identity import Role, Unauthorized
from broker_agents.identity import Authenticator, Identity, Signer
from broker_agents.messages import open_envelope
from broker_agents.subjects import Subjects
from node.auth import jwt
from node.auth.jwt import KeyKind, NKey
from node.auth.roles import user_claims

ACCOUNT = NKey.generate(KeyKind.ACCOUNT)


class Tick(BaseModel):
    message_type: ClassVar[str] = "tick"
    seq: int = 0


class RecordingNC:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, str] | None]] = []

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "",
                      headers: dict[str, str] | None = None) -> None:
        self.sent.append((subject, payload, headers))


def context(nc: Any) -> AgentContext:
    return AgentContext(agent_id="a1", node_id="n1", nc=nc, subjects=Subjects("ba"))


def test_unsigned_send_is_an_envelope_without_headers() -> None:
    nc = RecordingNC()
    asyncio.run(context(nc).send("b2", Tick(seq=7)))
    [(subject, data, headers)] = nc.sent
    assert subject == "ba.agent.b2" and headers is None
    type_name, body, msg_id = open_envelope(codec.decode(data))
    assert (type_name, body) == ("tick", {"seq": 7}) and msg_id


def test_signed_send_is_verified_for_the_bytes_sent() -> None:
    key = NKey.generate(KeyKind.USER)
    token = jwt.user_jwt(key.public_key, "node-1", ACCOUNT, user_claims(Role.NODE, "node-1"))
    nc = identity.attach(RecordingNC(), Identity(Signer(token, key.seed),
                                                 Authenticator(frozenset())))
    asyncio.run(context(nc).send("b2", Tick(seq=1), signed=True))
    [(subject, data, headers)] = nc.sent
    assert headers is not None
    verifier = Authenticator(frozenset({ACCOUNT.public_key}))
    principal = verifier.authenticate(subject, data, headers, component="test")
    assert principal is not None and principal.acting_for == "a1"
    with pytest.raises(Unauthorized):
        verifier.authenticate(subject, data + b"\x00", headers, component="test")
    with pytest.raises(Unauthorized):
        verifier.authenticate("ba.agent.other", data, headers, component="test")


def test_inbox_cache_is_bounded() -> None:
    nc = RecordingNC()
    ctx = context(nc)

    async def flood() -> None:
        for i in range(INBOX_CACHE + 5):
            await ctx.send(f"agent{i}", Tick(seq=i))

    asyncio.run(flood())
    assert len(ctx._inboxes) <= INBOX_CACHE
    assert [s for s, _, _ in nc.sent][-1] == f"ba.agent.agent{INBOX_CACHE + 4}"
