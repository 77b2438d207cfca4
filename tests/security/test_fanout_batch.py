"""Attacks on batched fan-out answers (``broker_agents.answerframe``, ``gather``).

A batch on a gatherer's ``<inbox>.<batch>`` lets a node do no more than its single answers
on ``<inbox>.<batch>-<index>`` could: only nodes may publish there, a malformed frame is
refused whole (counted, the gatherer keeps serving), and a signed entry is authenticated
against its own per-participant subject, so a signature made for another participant's
subject does not count, and a kept one stays verifiable evidence.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import msgpack
import pytest
from nats.aio.client import Client as NATS

from broker_agents import answerframe, codec, identity
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.gather import Call, Gatherer, gatherer
from broker_agents.messages import envelope
from broker_agents.metrics import MALFORMED
from broker_agents.samples import Echo
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from tests.security.violations import Violations

S = Subjects()
IDS = ["p-0", "p-1", "p-2"]
Connect = Callable[..., Coroutine[Any, Any, NATS]]
ASK = codec.encode(envelope(Echo(text="x")))
LATE = BrokerError(ErrorCode.TIMEOUT, "late")


@pytest.fixture
async def asker(connect: Connect) -> AsyncIterator[tuple[Gatherer, NATS]]:
    """A node's gatherer, and a node that hosts the participants but never answers (so
    the call stays open for what an attacker sends)."""
    silent = await connect(Role.NODE)
    for agent_id in IDS:
        await silent.subscribe(S.agent(agent_id))
    await silent.flush()
    nc = await connect(Role.NODE)
    yield await gatherer(nc), nc


def refused() -> float:
    return float(MALFORMED.labels("gather", "malformed")._value.get())


def reply_of(g: Gatherer, call: Call) -> str:
    (batch_id,) = [b for b, c in g.batches.items() if c is call]
    return f"{g.prefix}.{batch_id}"


async def send(nc: NATS, subject: str, body: bytes) -> None:
    await nc.publish(subject, body, headers={answerframe.HEADER: "1"})
    await nc.flush()


async def handled(g: Gatherer, nc: NATS) -> None:
    """Everything ``nc`` sent ``g`` so far was handled: a later answer from ``nc`` to another
    call, on the same subscription, has arrived."""
    async with g.call(S, ["p-0"], ASK) as probe:
        await nc.publish(f"{reply_of(g, probe)}-0", answer("probe"))
        assert await probe.wait(5)


def answer(text: str) -> bytes:
    return codec.encode({"echo": text})


@pytest.mark.parametrize("body", [
    b"garbage",
    msgpack.packb([[0, answer("a"), None], [0, answer("b"), None]]),   # index twice
    msgpack.packb([[0, answer("a"), None], [7, answer("b"), None]]),   # out of range
    msgpack.packb([[i % 3, answer("a"), None] for i in range(4)]),     # too many
    msgpack.packb([[0, answer("a"), None]]) + b"\x00",
])
async def test_a_malformed_batch_is_refused_whole_and_counted(
        asker: tuple[Gatherer, NATS], connect: Connect, body: bytes) -> None:
    g, _ = asker
    mallory = await connect(Role.NODE)
    before = refused()
    async with g.call(S, IDS, ASK) as call:
        reply = reply_of(g, call)
        await send(mallory, reply, body)
        # the gatherer keeps serving: a good batch after the bad one counts
        await send(mallory, reply, answerframe.encode([(1, answer("ok"), None),
                                                      (2, answer("ok2"), None)]))
        await handled(g, mallory)
    assert refused() == before + 1
    assert call.results == {1: {"echo": "ok"}, 2: {"echo": "ok2"}}  # nothing of the bad one


async def test_a_client_may_not_publish_a_batch_into_a_nodes_inbox(
        asker: tuple[Gatherer, NATS], connect: Connect) -> None:
    g, _ = asker
    violations = Violations()
    mallory = await connect(Role.CLIENT, user="mallory", error_cb=violations.on_error)
    async with g.call(S, IDS, ASK) as call:
        reply = reply_of(g, call)
        await mallory.publish(reply, answerframe.encode([(0, answer("x"), None)]),
                              headers={answerframe.HEADER: "1"})
        await violations.expect(reply)  # the server never delivered it
    assert call.results == {}


async def test_a_signed_entry_counts_only_for_the_subject_it_was_signed_for(
        asker: tuple[Gatherer, NATS], connect: Connect) -> None:
    """Entry 0 carries a signature made for ``<reply>-1`` (and acting for p-0): refused as
    p-0's act; entry 1 is signed for its own subject: accepted, kept as evidence that a
    third party can verify against that per-participant subject."""
    g, nc = asker
    node = await connect(Role.NODE)
    async with g.call(S, IDS, ASK, signed=True) as call:
        reply = reply_of(g, call)
        data = answer("signed")
        wrong = identity.act_headers(node, f"{reply}-1", data, "p-0")
        right = identity.act_headers(node, f"{reply}-1", data, "p-1")
        await send(node, reply, answerframe.encode([(0, data, wrong), (1, data, right)]))
        await handled(g, node)
    assert call.results == {1: {"echo": "signed"}}
    outcome = call.outcome(0, LATE)
    assert isinstance(outcome, BrokerError) and outcome.code is ErrorCode.UNAUTHORIZED
    evidence = call.evidence["p-1"]
    assert evidence.subject == f"{reply}-1"
    assert identity.verify_stored(nc, evidence, component="test").identity == "p-1"
    assert "p-0" not in call.evidence


async def test_an_unsigned_entry_in_a_signed_call_is_refused(
        asker: tuple[Gatherer, NATS], connect: Connect) -> None:
    g, _ = asker
    node = await connect(Role.NODE)
    async with g.call(S, IDS, ASK, signed=True) as call:
        await send(node, reply_of(g, call), answerframe.encode([(2, answer("u"), None)]))
        await handled(g, node)
    assert call.results == {}
    outcome = call.outcome(2, LATE)
    assert isinstance(outcome, BrokerError) and outcome.code is ErrorCode.UNAUTHORIZED
