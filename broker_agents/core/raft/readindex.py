"""Linearizable reads by read-index, without trusting clocks.

A read is served once (1) the leader has recorded its commit index as the read index,
(2) a majority has answered a heartbeat sent *after* that (so no newer leader can have
committed anything the read would miss), and (3) the state machine has applied up to the
read index. A leader lease would skip step (2), but it is only safe if every member's
clock and tick rate are bounded relative to the others; a stalled event loop, a GC pause
or a paused VM breaks that silently, so we pay one heartbeat round trip instead. Reads
arriving together share one round (``seq`` numbers make acks cumulative).

``ReadIndex`` keeps every read a member holds, whatever its role: the leader's queue of
reads awaiting a quorum, a follower's reads awaiting the leader's index, and confirmed
reads awaiting apply. It decides nothing about roles; ``RaftCore`` does.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from broker_agents.core.errors import ErrorCode
from broker_agents.core.raft.effects import ReadResult
from broker_agents.core.raft.statemachine import StateMachine, error_result


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


@dataclass(slots=True)
class ReadyRead:
    """A confirmed read waiting for the state machine to reach ``index``."""

    index: int
    request_id: str
    query: Any


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


class ReadIndex:
    """Every read a member holds, from asking to serving."""

    __slots__ = ("asking", "before_commit", "confirmed", "forwarded", "queue")

    def __init__(self) -> None:
        self.queue = ReadIndexQueue()
        # leader: reads that arrived before its first commit in its term
        self.before_commit: list[ReadRequest] = []
        # follower: request id -> query, waiting for the leader's read index
        self.forwarded: dict[str, Any] = {}
        # follower: request ids to ask the leader about in the next Ready
        self.asking: list[str] = []
        # confirmed at an index, waiting for the state machine to apply it
        self.confirmed: list[ReadyRead] = []

    # -- leader --------------------------------------------------------------------------

    def confirm(self, acked_seq: int) -> dict[str, tuple[int, list[str]]]:
        """Take the reads a quorum confirmed: local ones wait for apply here; the others
        are returned by the follower that asked, with the index to answer it."""
        remote: dict[str, tuple[int, list[str]]] = {}
        for group in self.queue.confirm(acked_seq):
            for request in group.requests:
                if request.origin is None:
                    self.confirmed.append(
                        ReadyRead(group.index, request.request_id, request.query)
                    )
                else:
                    index, rids = remote.setdefault(request.origin, (group.index, []))
                    rids.append(request.request_id)
                    remote[request.origin] = (max(index, group.index), rids)
        return remote

    def drop_unconfirmed(self) -> list[str]:
        """A deposed leader can confirm nothing: drop its queue; the ids asked locally."""
        local = [request.request_id for group in self.queue.drain()
                 for request in group.requests if request.origin is None]
        local += [r.request_id for r in self.before_commit if r.origin is None]
        self.before_commit = []
        return local

    # -- follower ------------------------------------------------------------------------

    def ask_leader(self, request_id: str, query: Any) -> None:
        self.forwarded[request_id] = query
        self.asking.append(request_id)

    def answered(self, request_ids: tuple[str, ...], index: int) -> list[str]:
        """The leader's read index for reads we asked about (0: it could not confirm);
        returns the ids that failed."""
        failed: list[str] = []
        for rid in request_ids:
            if rid not in self.forwarded:
                continue  # a duplicate, or a read we already gave up on
            query = self.forwarded.pop(rid)
            if index == 0:
                failed.append(rid)
            else:
                self.confirmed.append(ReadyRead(index, rid, query))
        return failed

    def forget(self, request_id: str) -> None:
        self.forwarded.pop(request_id, None)

    # -- serving -------------------------------------------------------------------------

    def serve(self, applied: int, sm: StateMachine) -> list[ReadResult]:
        """Answer the confirmed reads the state machine has caught up with."""
        waiting: list[ReadyRead] = []
        results: list[ReadResult] = []
        for read in self.confirmed:
            if read.index > applied:
                waiting.append(read)
                continue
            try:
                result = sm.query(read.query)
            except Exception as exc:  # a bad query must not take the member down
                result = error_result(ErrorCode.REJECTED, f"{type(exc).__name__}: {exc}")
            results.append(ReadResult(read.request_id, applied, result))
        self.confirmed = waiting
        return results
