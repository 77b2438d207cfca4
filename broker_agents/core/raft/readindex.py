"""Linearizable reads by read-index, without trusting clocks.

A read is served once (1) the leader has recorded its commit index as the read index,
(2) a majority has answered a heartbeat sent *after* that (so no newer leader can have
committed anything the read would miss), and (3) the state machine has applied up to the
read index. A leader lease would skip step (2), but it is only safe if every member's
clock and tick rate are bounded relative to the others; a stalled event loop, a GC pause
or a paused VM breaks that silently, so we pay one heartbeat round trip instead. Reads
arriving together share one round (``seq`` numbers make acks cumulative).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ReadRequest:
    request_id: str
    query: Any
    origin: str | None  # None: asked locally; otherwise the follower that forwarded it


@dataclass(slots=True)
class PendingRead:
    seq: int
    index: int
    requests: list[ReadRequest] = field(default_factory=list)


class ReadIndexQueue:
    """Reads waiting for a quorum to confirm the leader is still the leader."""

    __slots__ = ("pending", "seq")

    def __init__(self) -> None:
        self.seq = 0
        self.pending: deque[PendingRead] = deque()

    def add(self, index: int, request: ReadRequest) -> int:
        """Queue a read at ``index``; reads queued before the next heartbeat share a seq."""
        if self.pending and self.pending[-1].seq == self.seq and self.pending[-1].index == index:
            self.pending[-1].requests.append(request)
            return self.seq
        self.seq += 1
        self.pending.append(PendingRead(self.seq, index, [request]))
        return self.seq

    def seal(self) -> int:
        """The seq a heartbeat carries; later reads need a later heartbeat."""
        if self.pending and self.pending[-1].seq == self.seq:
            self.seq += 1
        return self.seq

    def confirm(self, acked_seq: int) -> list[PendingRead]:
        """Pop every read whose seq a quorum has acknowledged."""
        done: list[PendingRead] = []
        while self.pending and self.pending[0].seq < acked_seq:
            done.append(self.pending.popleft())
        return done

    def drain(self) -> list[PendingRead]:
        out = list(self.pending)
        self.pending.clear()
        return out


@dataclass(slots=True)
class ReadyRead:
    """A confirmed read waiting for the state machine to reach ``index``."""

    index: int
    request_id: str
    query: Any
