"""Batch frames on an agent's inbox (``broker_agents.batching``), sent by a plain client
("mallory": ``agent.*`` is a client's to publish): a frame lets nobody do what its
entries sent singly could not. A malformed frame is refused whole, counted, answered
with a structured error when it has a reply, and the agent keeps serving; a frame cannot
carry a signature onto its entries; each entry costs the agent's quota."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY
from pydantic import BaseModel

from broker_agents import codec, identity
from broker_agents.agent import Agent, handler
from broker_agents.batching import HEADER, MAX_ENTRIES, encode_frame
from broker_agents.context import Incoming
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.messages import envelope
from broker_agents.metrics import MALFORMED
from broker_agents.quota import AgentQuota
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from tests.conftest import Connect
from tests.integration.test_runtime import Hosted

S = Subjects()


class Note(BaseModel):
    message_type: ClassVar[str] = "note"
    seq: int = 0


class Ask(BaseModel):
    message_type: ClassVar[str] = "ask"


class Recorder(Agent):
    """Records each note with who signed it; answers how many it has."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(agent_id)
        self.notes: list[tuple[int, str | None]] = []

    @handler(Note)
    async def note(self, msg: Note, incoming: Incoming) -> None:
        p = incoming.principal
        self.notes.append((msg.seq, None if p is None else p.identity))

    @handler(Ask)
    async def ask(self, msg: Ask) -> int:
        return len(self.notes)


def note(seq: int) -> bytes:
    return codec.encode(envelope(Note(seq=seq)))


def refused_frames(agent: str) -> float:
    return MALFORMED.labels(agent, "batch")._value.get()


async def count(nc: NATS, agent: str) -> int:
    """The agent's answer to a request, which also proves it still serves."""
    reply = await nats_request(nc, S.agent(agent), codec.encode(envelope(Ask())), timeout=5)
    return int(codec.decode(reply.data, reply.headers))


GOOD = encode_frame([note(1), note(2)])
BAD_FRAMES: list[tuple[str, bytes, dict[str, str]]] = [
    ("no count", GOOD, {HEADER: ""}),
    ("count not a number", GOOD, {HEADER: "two"}),
    ("count zero", GOOD, {HEADER: "0"}),
    ("count over the bound", encode_frame([note(0)] * (MAX_ENTRIES + 1)),
     {HEADER: str(MAX_ENTRIES + 1)}),
    ("fewer entries than counted", GOOD, {HEADER: "3"}),
    ("more bytes than counted", GOOD + b"\x00", {HEADER: "2"}),
    ("entries not byte strings", codec.encode([1, 2]), {HEADER: "2"}),
    ("an envelope, not a frame", note(1), {HEADER: "1"}),
    ("nested arrays", codec.encode([[b"x"] * 2] * 2), {HEADER: "2"}),
    ("another header", GOOD, {HEADER: "2", "Content-Type": "application/json"}),
]


@pytest.mark.parametrize(("what", "data", "headers"), BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES])
async def test_a_malformed_frame_is_refused_whole_and_counted(
        host: Hosted, connect: Connect, what: str, data: bytes,
        headers: dict[str, str]) -> None:
    recorder = Recorder("rec")
    await host.add(recorder)
    mallory = await connect(Role.CLIENT, user="mallory")
    before = refused_frames("rec")
    await mallory.publish(S.agent("rec"), data, headers=headers)
    assert await count(mallory, "rec") == 0  # nothing of the frame ran; still serving
    assert refused_frames("rec") == before + 1
    await mallory.publish(S.agent("rec"), GOOD, headers={HEADER: "2"})
    assert await count(mallory, "rec") == 2  # a good frame after it is handled


async def test_a_frame_with_a_reply_gets_a_structured_error(host: Hosted,
                                                            connect: Connect) -> None:
    await host.add(Recorder("rec"))
    mallory = await connect(Role.CLIENT, user="mallory")
    reply = await nats_request(mallory, S.agent("rec"), GOOD, timeout=5,
                               headers={HEADER: "2"})
    err = BrokerError.from_payload(codec.decode(reply.data, reply.headers))
    assert err is not None and err.code is ErrorCode.MALFORMED
    assert await count(mallory, "rec") == 0


async def test_a_frame_cannot_carry_a_signature_onto_its_entries(
        host: Hosted, connect: Connect) -> None:
    """Alice signs one note; mallory frames it with alice's headers, and alone."""
    recorder = Recorder("rec")
    await host.add(recorder)
    alice = await connect(Role.CLIENT, user="alice")
    mallory = await connect(Role.CLIENT, user="mallory")
    subject, signed_note = S.agent("rec"), note(7)
    alice_headers = identity.act_headers(alice, subject, signed_note)
    before = refused_frames("rec")
    await mallory.publish(subject, encode_frame([signed_note, note(8)]),
                          headers={**alice_headers, HEADER: "2"})
    await mallory.publish(subject, encode_frame([signed_note, note(9)]), headers={HEADER: "2"})
    assert await count(mallory, "rec") == 2
    assert refused_frames("rec") == before + 1
    assert recorder.notes == [(7, None), (9, None)]  # unsigned, as sent


def rate_limited(agent: str, reason: str) -> float:
    return REGISTRY.get_sample_value("ba_agent_rate_limited_total",
                                     {"agent": agent, "reason": reason}) or 0.0


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (a counter or a backlog has no event)
            await asyncio.sleep(0.01)


async def test_each_entry_of_a_frame_costs_the_quota(host: Hosted, connect: Connect) -> None:
    recorder = Recorder("rec")
    await host.add(recorder, quota=AgentQuota(rate=0.01, burst=20, max_pending_msgs=0,
                                              max_pending_bytes=0))
    mallory = await connect(Role.CLIENT, user="mallory")
    before = rate_limited("rec", "rate")
    frame = encode_frame([note(i) for i in range(MAX_ENTRIES)])
    for _ in range(3):
        await mallory.publish(S.agent("rec"), frame, headers={HEADER: str(MAX_ENTRIES)})
    await until(lambda: len(recorder.notes) + rate_limited("rec", "rate") - before
                == 3 * MAX_ENTRIES)
    assert recorder.notes == [(i, None) for i in range(20)]  # the burst, not 3 x 256


async def test_the_backlog_quota_counts_entries(host: Hosted, connect: Connect) -> None:
    """A slow agent behind on frames refuses entries as it would have refused them sent
    singly: 4 frames of 256 behind a blocked handler, a backlog quota of 100."""
    gate = asyncio.Event()

    class Slow(Recorder):
        @handler(Note)
        async def note(self, msg: Note, incoming: Incoming) -> Any:
            await gate.wait()
            self.notes.append((msg.seq, None))

    slow = Slow("slow")
    runner = await host.add(slow, quota=AgentQuota(rate=0, max_pending_msgs=100,
                                                   max_pending_bytes=0))
    mallory = await connect(Role.CLIENT, user="mallory")
    before = rate_limited("slow", "queue")
    await mallory.publish(S.agent("slow"), note(-1))  # blocks the handler
    frame = encode_frame([note(i) for i in range(MAX_ENTRIES)])
    for _ in range(4):
        await mallory.publish(S.agent("slow"), frame, headers={HEADER: str(MAX_ENTRIES)})
    await until(lambda: runner._subs[0].pending_msgs == 4)
    gate.set()
    await until(lambda: len(slow.notes) + rate_limited("slow", "queue") - before
                == 1 + 4 * MAX_ENTRIES)
    # the last frame's entries with at most 100 left behind them, as singles would be
    assert slow.notes == [(-1, None)] + [(i, None) for i in range(MAX_ENTRIES - 101,
                                                                  MAX_ENTRIES)]
