"""Signed acts end to end, on a secured server: who an agent hears from, whose cached
answer a requester gets, and whose answer a signed scatter-gather takes.

Each attack runs as the least-privileged principal that could try it: a client
("mallory") for requests, a node for answers (only nodes may publish into inboxes).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from pydantic import BaseModel

from broker_agents import codec, identity
from broker_agents.agent import Agent, handler
from broker_agents.context import Incoming
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.gather import gatherer
from broker_agents.messages import envelope
from broker_agents.metrics import MALFORMED
from broker_agents.samples import Calculate, CalculatorAgent
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from tests.integration.test_runtime import Hosted

S = Subjects()
Connect = Callable[..., Coroutine[Any, Any, NATS]]


class WhoAmI(BaseModel):
    pass


class Question(BaseModel):
    text: str = "?"


class WitnessAgent(Agent):
    """Tells a requester who it heard; answers questions as a signed act."""

    @handler(WhoAmI)
    async def who(self, msg: WhoAmI, incoming: Incoming) -> dict[str, Any]:
        p = incoming.principal
        return {"principal": None if p is None else
                {"name": p.name, "role": str(p.role), "identity": p.identity}}

    @handler(Question, signed=True)
    async def answer(self, msg: Question) -> dict[str, Any]:
        return {"answer": 42, "agent": self.agent_id}


class UnsignedAgent(Agent):
    @handler(Question)
    async def answer(self, msg: Question) -> dict[str, Any]:
        return {"answer": 41, "agent": self.agent_id}


async def call(nc: NATS, agent: str, msg: BaseModel, *, signed: bool = True,
               msg_id: str | None = None, acting_for: str | None = None) -> Any:
    data = codec.encode(envelope(msg, msg_id=msg_id))
    reply = await nats_request(nc, S.agent(agent), data, timeout=5, signed=signed,
                               acting_for=acting_for)
    payload = codec.decode(reply.data, reply.headers)
    err = BrokerError.from_payload(payload)
    if err is not None:
        raise err
    return payload


async def test_an_agent_hears_the_authenticated_principal(host: Hosted,
                                                          connect: Connect) -> None:
    await host.add(WitnessAgent("witness"))
    mallory = await connect(Role.CLIENT, user="mallory")
    got = await call(mallory, "witness", WhoAmI())
    assert got["principal"] == {"name": "mallory", "role": "client", "identity": "mallory"}
    assert (await call(mallory, "witness", WhoAmI(), signed=False))["principal"] is None


async def test_a_client_cannot_act_for_someone_else(host: Hosted, connect: Connect) -> None:
    await host.add(WitnessAgent("witness"))
    mallory = await connect(Role.CLIENT, user="mallory")
    refused = MALFORMED.labels("witness", ErrorCode.UNAUTHORIZED.value)
    before = refused._value.get()
    with pytest.raises(BrokerError) as err:
        await call(mallory, "witness", WhoAmI(), acting_for="alice")
    assert err.value.code is ErrorCode.UNAUTHORIZED
    assert err.value.details["reason"] == "acting_for_denied"
    assert refused._value.get() == before + 1


async def test_a_copied_signature_does_not_cover_another_payload(host: Hosted,
                                                                 connect: Connect) -> None:
    """Mallory replays alice's signature headers on her own payload."""
    await host.add(WitnessAgent("witness"))
    alice = await connect(Role.CLIENT, user="alice")
    mallory = await connect(Role.CLIENT, user="mallory")
    subject = S.agent("witness")
    alice_headers = identity.act_headers(alice, subject, codec.encode(envelope(WhoAmI())))
    reply = await nats_request(mallory, subject, codec.encode(envelope(WhoAmI())), timeout=5,
                               headers=alice_headers)
    err = BrokerError.from_payload(codec.decode(reply.data, reply.headers))
    assert err is not None and err.code is ErrorCode.UNAUTHORIZED


async def test_reply_cache_cannot_be_primed_for_another_requester(host: Hosted,
                                                                   connect: Connect) -> None:
    """Mallory asks 1+1 under the victim's next message id; the victim still gets 6x7."""
    await host.add(CalculatorAgent("calc"))
    mallory = await connect(Role.CLIENT, user="mallory")
    victim = await connect(Role.CLIENT, user="victim")
    primed = await call(mallory, "calc", Calculate(op="add", a=1, b=1), msg_id="victim-42")
    assert primed["value"] == 2
    for signed in (True, False):
        got = await call(victim, "calc", Calculate(op="mul", a=6, b=7), msg_id="victim-42",
                         signed=signed)
        assert got["value"] == 42
    # The victim's own retry (same id, same signer) is answered from its own cache entry.
    again = await call(victim, "calc", Calculate(op="mul", a=6, b=7), msg_id="victim-42")
    assert again["value"] == 42


async def test_gather_refuses_answers_signed_for_someone_else(
        host: Hosted, connect: Connect) -> None:
    """An answer in a node's inbox is its node's word for the agent asked (only nodes may
    publish there); a signed one must be signed for that agent. ``signed=True`` also
    requires the signature, and keeps it as evidence."""
    await host.add(WitnessAgent("honest"))
    await host.add(UnsignedAgent("unsigned"))
    node = await connect(Role.NODE)

    # An impostor (a node) answers for "voter-x" while signing as someone else.
    async def impostor(msg: Any) -> None:
        data = codec.encode({"answer": 0})
        await node.publish(msg.reply, data,
                           headers=identity.act_headers(node, msg.reply, data, "mallory"))
    await node.subscribe(S.agent("voter-x"), cb=impostor)
    await node.flush()

    asker = await connect(Role.NODE)
    g = await gatherer(asker)
    data = codec.encode(envelope(Question()))
    ids = ["honest", "unsigned", "voter-x"]
    # The impostor's answer does not take voter-x's place: it is voter-x's outcome only
    # once the call's deadline passed without voter-x's own answer.
    outcomes = await g.ask(S, ids, data, 1.0)
    assert outcomes["unsigned"] == {"answer": 41, "agent": "unsigned"}
    assert outcomes["honest"] == {"answer": 42, "agent": "honest"}
    forged = outcomes["voter-x"]
    assert isinstance(forged, BrokerError) and forged.code is ErrorCode.UNAUTHORIZED

    async with g.call(S, ids, data, signed=True) as answers:
        await answers.wait(1.0)
    assert dict(answers.answers) == {"honest": {"answer": 42, "agent": "honest"}}
    for refused in (1, 2):
        outcome = answers.outcome(refused, BrokerError(ErrorCode.TIMEOUT, "late"))
        assert isinstance(outcome, BrokerError) and outcome.code is ErrorCode.UNAUTHORIZED
    assert set(answers.evidence) == {"honest"}
    evidence = answers.evidence["honest"]
    assert identity.verify_stored(asker, evidence, component="test").identity == "honest"
