"""Batch frames (``broker_agents.batching``): the codec round-trips and refuses garbage
with a structured error only; the sender's outbox keeps a lone send byte-identical,
coalesces a burst, keeps the context's output order, and counts a lost deferred flush."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.msg import Msg
from prometheus_client import REGISTRY
from pydantic import BaseModel

from broker_agents import batching, codec
from broker_agents.batching import HEADER, MAX_ENTRIES, Outbox, decode_frame, encode_frame
from broker_agents.context import AgentContext
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.messages import envelope_bytes, open_envelope
from broker_agents.subjects import Subjects

Sent = tuple[str, bytes, dict[str, str] | None]


class Tick(BaseModel):
    message_type: ClassVar[str] = "tick"
    seq: int = 0


class RecordingNC:
    max_payload = 4096

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[Sent] = []
        self.fail = fail

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "",
                      headers: dict[str, str] | None = None) -> None:
        if self.fail:
            raise ConnectionError("closed")
        self.sent.append((subject, payload, headers))


def entries_of(sent: list[Sent]) -> list[tuple[str, bytes]]:
    """What the receiver would hand its per-message path, in order."""
    out = []
    for subject, data, headers in sent:
        if headers and HEADER in headers:
            out += [(subject, e) for e in decode_frame(data, headers[HEADER])]
        else:
            out.append((subject, data))
    return out


# -- the codec ------------------------------------------------------------------------

entries_st = st.lists(st.binary(max_size=300), min_size=1, max_size=MAX_ENTRIES)


@given(entries_st)
@settings(max_examples=200)
def test_frames_round_trip(entries: list[bytes]) -> None:
    assert decode_frame(encode_frame(entries), str(len(entries))) == entries


@given(st.binary(max_size=2000), st.text(max_size=6))
@settings(max_examples=500)
def test_garbage_is_refused_with_a_structured_error_only(data: bytes, count: str) -> None:
    try:
        entries = decode_frame(data, count)
    except BrokerError as exc:
        assert exc.code == ErrorCode.MALFORMED and exc.details["reason"] == "batch"
        return
    assert len(entries) == int(count) and all(type(e) is bytes for e in entries)
    assert decode_frame(encode_frame(entries), count) == entries


@given(entries_st, st.integers(min_value=1, max_value=50))
@settings(max_examples=200)
def test_a_truncated_or_padded_frame_is_refused(entries: list[bytes], cut: int) -> None:
    data = encode_frame(entries)
    with pytest.raises(BrokerError):
        decode_frame(data[:-cut] if cut <= len(data) else b"", str(len(entries)))
    with pytest.raises(BrokerError):
        decode_frame(data + b"\x00" * cut, str(len(entries)))


@pytest.mark.parametrize("count", [None, "", "0", "-1", "+2", " 2", "2 ", "٢", "257",
                                   "1000", "0x2"])
def test_bad_counts_are_refused(count: str | None) -> None:
    with pytest.raises(BrokerError):
        decode_frame(encode_frame([b"a", b"b"]), count)


@pytest.mark.parametrize(("reply", "headers"), [
    ("_INBOX.x.1", {HEADER: "2"}),                          # frames are one-way
    ("", {HEADER: "2", "Ba-Jwt": "x"}),                     # signed sends travel singly
    ("", {HEADER: "2", "Content-Type": "application/json"}),
])
def test_a_frame_with_a_reply_or_another_header_is_refused(
        reply: str, headers: dict[str, str]) -> None:
    msg = Msg(None, "ba.agent.x", reply, encode_frame([b"a", b"b"]), headers)  # type: ignore[arg-type]
    with pytest.raises(BrokerError):
        batching.open_frame(msg)


def test_an_entry_sees_the_backlog_in_entries() -> None:
    class Sub:
        pending_msgs, pending_bytes = 3, 1000

    backlog = batching.FrameBacklog(Sub(), 10)
    backlog.left = 4
    assert backlog.pending_msgs == 3 * 10 + 4 and backlog.pending_bytes == 1000


# -- the sender -----------------------------------------------------------------------

def context(nc: Any) -> AgentContext:
    return AgentContext(agent_id="a1", node_id="n1", nc=nc, subjects=Subjects("ba"))


def test_a_lone_send_is_published_at_once_and_plain() -> None:
    nc = RecordingNC()

    async def one() -> None:
        await context(nc).send("b2", Tick(seq=1))
        assert len(nc.sent) == 1  # before any loop turn passes

    asyncio.run(one())
    [(subject, data, headers)] = nc.sent
    assert subject == "ba.agent.b2" and headers is None
    assert open_envelope(codec.decode(data))[:2] == ("tick", {"seq": 1})


def test_a_burst_is_one_frame_by_the_next_turn_in_order() -> None:
    nc = RecordingNC()

    async def burst() -> None:
        ctx = context(nc)
        for i in range(10):
            await ctx.send("b2", Tick(seq=i))
        assert len(nc.sent) == 1
        await asyncio.sleep(0)  # the turn ends
        await asyncio.sleep(0)  # the deferred flush runs

    asyncio.run(burst())
    assert [len(nc.sent), nc.sent[1][2]] == [2, {HEADER: "9"}]
    seqs = [open_envelope(codec.decode(d))[1]["seq"] for _, d in entries_of(nc.sent)]
    assert seqs == list(range(10))


def test_frames_are_bounded_by_count_and_payload() -> None:
    nc = RecordingNC()
    big = {"pad": "x" * 1000}

    async def flood() -> None:
        ctx = context(nc)
        for i in range(MAX_ENTRIES * 2 + 5):
            await ctx.send("b2", Tick(seq=i))
        for _ in range(10):
            await ctx.send("b3", big, type_name="big")
        await ctx.flush()

    asyncio.run(flood())
    for _, data, headers in nc.sent:
        assert len(data) <= nc.max_payload - batching.HEADER_ROOM
        assert headers is None or 1 < int(headers[HEADER]) <= MAX_ENTRIES
    got = entries_of(nc.sent)
    assert [s for s, _ in got] == ["ba.agent.b2"] * (MAX_ENTRIES * 2 + 5) + ["ba.agent.b3"] * 10


def test_anything_else_the_context_sends_waits_for_the_queued_sends() -> None:
    nc = RecordingNC()

    async def mixed() -> None:
        ctx = context(nc)
        await ctx.send("b2", Tick(seq=0))
        await ctx.send("b2", Tick(seq=1))
        await ctx.send("b3", Tick(seq=2))       # another inbox
        await ctx.send("b3", Tick(seq=3))
        await ctx.publish("ba.events.x", {})    # a raw publish
        await ctx.send("b3", Tick(seq=4))
        await ctx.send("b3", Tick(seq=5), signed=False)
        await ctx.send_capability("c", Tick(seq=6))

    asyncio.run(mixed())
    order = [(s, open_envelope(codec.decode(d))[1].get("seq") if "agent" in s or "cap" in s
              else None) for s, d in entries_of(nc.sent)]
    assert order == [("ba.agent.b2", 0), ("ba.agent.b2", 1), ("ba.agent.b3", 2),
                     ("ba.agent.b3", 3), ("ba.events.x", None), ("ba.agent.b3", 4),
                     ("ba.agent.b3", 5), ("ba.cap.c", 6)]


def test_a_lone_send_that_fails_raises_to_its_caller() -> None:
    with pytest.raises(ConnectionError):
        asyncio.run(context(RecordingNC(fail=True)).send("b2", Tick()))


def test_a_deferred_flush_that_fails_is_counted_and_logged() -> None:
    nc = RecordingNC()
    before = REGISTRY.get_sample_value("ba_agent_sends_failed_total", {"agent": "a1"}) or 0

    async def lost() -> None:
        ctx = context(nc)
        for i in range(5):
            await ctx.send("b2", Tick(seq=i))
        nc.fail = True  # the connection closes within the turn
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(lost())
    after = REGISTRY.get_sample_value("ba_agent_sends_failed_total", {"agent": "a1"})
    assert len(nc.sent) == 1 and after == before + 4


def test_outbox_envelope_bytes_are_the_senders() -> None:
    nc = RecordingNC()
    data = envelope_bytes(Tick(seq=3), msg_id="m")
    asyncio.run(Outbox(nc, "a1").send("ba.agent.b2", data))
    assert nc.sent == [("ba.agent.b2", data, None)]
