"""One-way sends coalesced per destination inbox: several envelopes in one NATS message.

Why: under a one-way flood the receiver is the bottleneck, and most of its time is
nats-py's own per-message parsing and dispatch, which raw NATS pays too. Only fewer NATS
messages amortise it, so a burst of sends to one agent travels as one *batch frame*.

Sender (``Outbox``, one per ``AgentContext``): a send is published at once, as today,
unless a send to the same inbox was already published in this loop turn; then it joins a
*run* for that inbox, published as one frame when full (``MAX_ENTRIES``, or the server's
max payload), when the context sends anything else (another inbox, a request, a publish:
the context's output order is kept exactly), or at the end of the loop turn (a
``loop.call_soon`` callback starts the flush; no timer). So a lone send is byte-identical
to today, is published in its own turn, and its errors are raised to its caller; a run
of one entry goes out as the plain message.
A deferred flush that fails (the connection closed within the turn) cannot raise to
callers that have returned: it is counted in ``ba_agent_sends_failed_total`` and logged
once per window (one-way sends are at most once, like core NATS). Signed sends travel
singly: a signature covers one (subject, data) and its JWT headers, and verifying it
costs far more than the per-message parsing a frame would save.

Wire: header ``Ba-Batch: <n>`` (1..``MAX_ENTRIES``, ASCII digits) and data a msgpack array
of ``n`` binary strings, each one envelope as it would travel alone (decoded in one C
call). A frame has no reply and no other header. Receiver (``deliver``): a frame is split
and each entry goes through the agent's exact per-message path as an unsigned one-way
message on the same inbox (quota per entry, decode, dedup, metrics, handler), so a frame
lets nobody do what its entries sent singly could not. A malformed frame is refused whole
before any entry runs, counted in ``ba_agent_malformed_messages_total{reason="batch"}``,
logged once per window, and answered with a structured error if it has a reply subject.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
from nats.aio.msg import Msg
from prometheus_client import Counter

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.logging import get_logger
from broker_agents.ratelog import RateLimitedLog
from broker_agents.reply import max_payload_of

HEADER = "Ba-Batch"
REASON = "batch"  # the malformed-message reason of a refused frame
MAX_ENTRIES = 256
# Room left in the server's max payload for the header block (``NATS/1.0``, ``Ba-Batch``).
HEADER_ROOM = 64
_LEN = 5  # msgpack's header of one entry, at most (bin 32); the array's is in HEADER_ROOM

SENDS_FAILED = Counter(
    "ba_agent_sends_failed_total",
    "One-way sends lost because their deferred batch publish failed (the connection "
    "closed or its outbound buffer was full within the loop turn)", ["agent"])
_log = RateLimitedLog(get_logger(component="batching"))


def encode_frame(entries: list[bytes]) -> bytes:
    """The data of a frame holding ``entries`` (see the module docstring)."""
    return msgpack.packb(entries, use_bin_type=True)  # type: ignore[no-any-return]


def decode_frame(data: bytes, count: str | None) -> list[bytes]:
    """The entries of a frame whose header says ``count``; ``BrokerError(malformed)`` for
    anything but exactly that many byte strings (one C call: no per-entry parsing here)."""
    if (count is None or not 0 < len(count) <= 3 or not count.isascii()
            or not count.isdigit()):
        raise BrokerError(ErrorCode.MALFORMED, f"bad {HEADER} header",
                          {"reason": REASON, "header": (count or "")[:16]})
    n = int(count)
    if not 0 < n <= MAX_ENTRIES:
        raise BrokerError(ErrorCode.MALFORMED, f"a batch frame holds 1 to {MAX_ENTRIES} "
                          f"messages", {"reason": REASON, "count": n})
    try:  # strings, maps and extensions refused by the decoder itself (limit 0)
        entries = msgpack.unpackb(data, max_array_len=MAX_ENTRIES, max_str_len=0,
                                  max_map_len=0, max_ext_len=0)
    except Exception:  # whatever the decoder makes of garbage: one refusal
        entries = None
    if (type(entries) is not list or len(entries) != n
            or not all(type(e) is bytes for e in entries)):
        raise BrokerError(ErrorCode.MALFORMED, f"batch frame is not the array of {n} "
                          f"messages its {HEADER} header says", {"reason": REASON, "count": n})
    return entries


def open_frame(msg: Msg) -> list[bytes]:
    """The entries of a delivered frame; refused if it has a reply or another header."""
    headers = msg.headers or {}
    if msg.reply:
        raise BrokerError(ErrorCode.MALFORMED, "a batch frame is one-way: no reply subject",
                          {"reason": REASON})
    if len(headers) != 1:
        raise BrokerError(ErrorCode.MALFORMED, f"a batch frame carries only its {HEADER} "
                          f"header (signed messages travel singly)", {"reason": REASON})
    return decode_frame(msg.data, headers.get(HEADER))


class FrameBacklog:
    """The backlog an entry's quota check sees: the subscription's, in entries.

    A frame is one pending NATS message but ``n`` agent messages: the frames behind this
    one count as ``n`` entries each (exact when a burst's frames are full, as a flood's
    are), plus the entries left in this frame; bytes are the subscription's own."""

    __slots__ = ("left", "n", "sub")

    def __init__(self, sub: Any, n: int) -> None:
        self.sub = sub
        self.n = n
        self.left = n

    @property
    def pending_msgs(self) -> int:
        return (self.sub.pending_msgs * self.n if self.sub is not None else 0) + self.left

    @property
    def pending_bytes(self) -> int:
        return self.sub.pending_bytes if self.sub is not None else 0


Deliver = Callable[[list[Any], Msg], Awaitable[None]]
Refuse = Callable[[Msg, BrokerError], Awaitable[None]]


async def deliver(msg: Msg, holder: list[Any], each: Deliver, refuse: Refuse) -> None:
    """Split a delivered frame and hand each entry to ``each`` (the agent's per-message
    path) as an unsigned one-way message on the frame's subject; ``refuse`` a bad frame."""
    try:
        entries = open_frame(msg)
    except BrokerError as exc:
        await refuse(msg, exc)
        return
    backlog = FrameBacklog(holder[0] if holder else None, len(entries))
    view: list[Any] = [backlog]
    nc, subject = msg._client, msg.subject
    for data in entries:
        backlog.left -= 1
        await each(view, Msg(nc, subject, "", data, None))


class Outbox:
    """One context's one-way sends: published at once, or coalesced within a loop turn."""

    def __init__(self, nc: Any, agent_id: str) -> None:
        self.nc = nc
        self.agent_id = agent_id
        self._subject: str | None = None  # the run's inbox, or the last one sent to
        self._run: list[bytes] = []
        self._size = 0
        self._turn = False  # a send was published this loop turn (its end is scheduled)
        self._limit = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Sends queued and not yet handed to the connection."""
        return len(self._run)

    async def send(self, subject: str, data: bytes) -> None:
        run = self._run
        if run:
            if (subject == self._subject and len(run) < MAX_ENTRIES
                    and self._size + len(data) + _LEN <= self._limit):
                run.append(data)
                self._size += len(data) + _LEN
                return
            await self.flush()  # full, or another inbox: what was queued goes first
            if subject == self._subject and self._start(data):
                return
        elif self._turn and subject == self._subject and self._start(data):
            return
        await self.nc.publish(subject, data)
        self._subject = subject
        if not self._turn:
            self._schedule()

    def _schedule(self) -> None:
        self._turn = True
        asyncio.get_running_loop().call_soon(self._end_turn)

    def _start(self, data: bytes) -> bool:
        """Begin a run with ``data`` (False: it cannot share a frame, send it singly)."""
        if not self._limit:
            self._limit = max_payload_of(self.nc) - HEADER_ROOM
        if len(data) + _LEN > self._limit:
            return False
        self._run.append(data)
        self._size = len(data) + _LEN
        if not self._turn:  # a run that outlives its turn (a send suspended) is flushed too
            self._schedule()
        return True

    async def flush(self) -> None:
        """Hand the queued run to the connection now (one frame, or the plain message)."""
        run = self._run
        if not run:
            return
        self._run, self._size = [], 0
        subject = self._subject
        assert subject is not None
        if len(run) == 1:
            await self.nc.publish(subject, run[0])
        else:
            await self.nc.publish(subject, encode_frame(run), headers={HEADER: str(len(run))})

    def _end_turn(self) -> None:
        self._turn = False
        if self._run and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._flush_deferred())

    async def _flush_deferred(self) -> None:
        lost = len(self._run)
        try:
            while self._run:  # sends may queue a new run while this one is published
                lost = len(self._run)
                await self.flush()
        except Exception as exc:  # nobody left to raise to: count and log it
            SENDS_FAILED.labels(self.agent_id).inc(lost)
            _log.warning(("send failed", self.agent_id), "batched one-way sends lost",
                         agent_id=self.agent_id, messages=lost, error=repr(exc))
