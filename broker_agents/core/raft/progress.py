"""The leader's view of one follower: how far it matches and how to feed it.

PROBE sends one append per round trip until the follower's log is found to match;
REPLICATE streams optimistically with up to ``max_inflight`` appends outstanding;
SNAPSHOT waits for an InstallSnapshot to land (the entries it needs are compacted away).
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Progress:
    __slots__ = (
        "commit_sent", "inflight", "last_progress", "match", "next", "paused", "pending_snapshot",
        "read_ack", "recent_active", "snapshot_sent", "state",
    )

    def __init__(self, next_index: int, now: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.paused = False
        self.inflight: deque[int] = deque()
        self.pending_snapshot = 0
        self.snapshot_sent = 0
        self.recent_active = False
        self.last_progress = now
        self.read_ack = 0
        self.commit_sent = 0  # the highest commit index we told this follower

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.paused = False
        self.inflight.clear()
        self.pending_snapshot = 0

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.paused = False
        self.inflight.clear()

    def become_snapshot(self, index: int, now: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = index
        self.snapshot_sent = now
        self.paused = False
        self.inflight.clear()

    def is_paused(self, max_inflight: int) -> bool:
        if self.state == ProgressState.PROBE:
            return self.paused
        if self.state == ProgressState.REPLICATE:
            return len(self.inflight) >= max_inflight
        return True

    def sent(self, last_index: int) -> None:
        """Record an append carrying entries up to ``last_index``."""
        if self.state == ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflight.append(last_index)
        elif self.state == ProgressState.PROBE:
            self.paused = True

    def maybe_update(self, index: int, now: int) -> bool:
        """A success acknowledging ``index``; False when it says nothing new."""
        updated = index > self.match
        if updated:
            self.match = index
            self.last_progress = now
        self.next = max(self.next, index + 1)
        self.paused = False
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
        return updated

    def maybe_decrease(self, rejected: int, hint: int) -> bool:
        """A rejection of the append after ``rejected``; False when it is stale."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint + 1), self.match + 1)
        self.paused = False
        return True
