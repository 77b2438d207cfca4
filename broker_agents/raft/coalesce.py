"""Client side of proposal batches (``batch.py``): the proposals issued on one connection
to one subject in one event-loop turn go out as ONE request.

Why: per commit, the leader's CPU went to the request in and the reply out (TLS writes,
nats-py's per-message path), not to Raft. Many clients sharing a connection -- or one
client's concurrent proposals -- now cost the leader one message each way per batch.

Nothing waits to fill a batch: a proposal is sent at the end of the loop turn it was
issued in, with whatever else was issued in that turn; a lone one goes out as a plain
request, byte for byte what it was before. ``cut`` (pure) decides how a turn's proposals
are split: at most ``MAX_ITEMS`` per request and within the server's max payload. Each
proposal keeps its own request id, so retries (``client.py``) and the group's dedup table
work per proposal exactly as before; a batch-wide error reaches every proposal in it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from broker_agents.codec import decode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.raft.batch import split_reply
from broker_agents.reply import max_payload_of

MAX_ITEMS = 64
"""Proposals per batch request at most (the member takes up to ``MAX_BATCH_ITEMS``)."""

_HEAD = b"\x81\xa5batch"  # msgpack {"batch": ...}: a 1-entry map, then the 5-char key
_ROOM = 64  # bytes kept free of the max payload for the batch's own framing


def cut(sizes: Sequence[int], max_items: int, max_bytes: int) -> list[int]:
    """Where to end each request for items of ``sizes`` bytes, in order: at most
    ``max_items`` per request and, unless one item alone is larger, ``max_bytes``."""
    ends: list[int] = []
    count = total = 0
    for k, size in enumerate(sizes):
        if count and (count == max_items or total + size > max_bytes):
            ends.append(k)
            count = total = 0
        count += 1
        total += size
    if count:
        ends.append(len(sizes))
    return ends


def batch_payload(items: Sequence[bytes]) -> bytes:
    """``codec.encode({"batch": [...]})`` from items already msgpack-encoded (each was
    encoded once, to send it alone or to measure it)."""
    header: bytes = msgpack.Packer().pack_array_header(len(items))
    return _HEAD + header + b"".join(items)


_Item = tuple[bytes, float, "asyncio.Future[Any]"]


class Coalescer:
    """The batching of one connection; ``request`` is ``nc.request`` + ``decode`` for
    one proposal's msgpack payload."""

    __slots__ = ("_nc", "_queues", "_tasks", "max_items")

    def __init__(self, nc: Any, max_items: int = MAX_ITEMS) -> None:
        # weakly: ``coalescer_for`` keys its cache by the connection, which a strong
        # reference from here would keep alive for ever
        try:
            self._nc: Callable[[], Any] = weakref.ref(nc)
        except TypeError:
            self._nc = lambda: nc
        self.max_items = max_items
        self._queues: dict[str, list[_Item]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self, subject: str, payload: bytes, timeout: float) -> asyncio.Future[Any]:
        """The decoded reply to this proposal, as if it had been sent alone."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        queue = self._queues.get(subject)
        if queue is None:
            queue = self._queues[subject] = []
            loop.call_soon(self._flush, subject)
        queue.append((payload, timeout, fut))
        return fut

    def _flush(self, subject: str) -> None:
        items = self._queues.pop(subject, [])
        limit = max_payload_of(self._nc()) - _ROOM
        start = 0
        for end in cut([len(p) for p, _, _ in items], self.max_items, limit):
            task = asyncio.ensure_future(self._send(subject, items[start:end]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            start = end

    async def _send(self, subject: str, items: list[_Item]) -> None:
        futs = [f for _, _, f in items]
        timeout = min(t for _, t, _ in items)
        try:
            nc = self._nc()
            if nc is None:  # the callers hold it: only at interpreter teardown
                raise BrokerError(ErrorCode.UNAVAILABLE, "connection gone")
            if len(items) == 1:
                msg = await nc.request(subject, items[0][0], timeout=timeout)
                replies = [decode(msg.data, msg.headers)]
            else:
                msg = await nc.request(subject, batch_payload([p for p, _, _ in items]),
                                            timeout=timeout)
                reply = decode(msg.data, msg.headers)
                err = BrokerError.from_payload(reply)
                if err is not None and err.code == ErrorCode.TOO_LARGE:
                    # the answers together pass the max payload: ask for each alone (the
                    # same request ids: the dedup table answers what already committed)
                    await asyncio.gather(*(self._send(subject, [i]) for i in items))
                    return
                replies = split_reply(reply, len(items))
        except asyncio.CancelledError:
            for f in futs:
                f.cancel()
            raise
        except Exception as exc:  # no answer: every proposal in the request hears why
            for f in futs:
                if not f.done():
                    f.set_exception(exc)
            return
        for f, r in zip(futs, replies, strict=True):
            if not f.done():
                f.set_result(r)


_BY_CONNECTION: weakref.WeakKeyDictionary[Any, Coalescer] = weakref.WeakKeyDictionary()


def coalescer_for(nc: Any) -> Coalescer:
    """The one coalescer of connection ``nc`` (shared by every RaftClient on it)."""
    try:
        found = _BY_CONNECTION.get(nc)
    except TypeError:  # not weakly referenceable: batches of this caller's own only
        return Coalescer(nc)
    if found is None:
        found = _BY_CONNECTION[nc] = Coalescer(nc)
    return found
