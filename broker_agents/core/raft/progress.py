"""The leader's view of its followers: one ``Progress`` each (how far it matches and how
to feed it: flow control), and the quorum arithmetic over all of them (commit index,
read-index acks, check-quorum, vote tallies).

PROBE sends one append per round trip until the follower's log is found to match;
REPLICATE streams optimistically with up to ``max_inflight`` appends outstanding;
SNAPSHOT waits for an InstallSnapshot to land (the entries it needs are compacted away).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping
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

    def on_reject(self, rejected: int, hint: int) -> bool:
        """The follower refused the append after ``rejected`` (``hint``: where its log may
        match ours); True when the leader should send another append."""
        if not self.maybe_decrease(rejected, hint):
            return False
        if self.state == ProgressState.REPLICATE:
            self.become_probe()
        return True

    def on_accept(self, index: int, now: int) -> bool:
        """The follower holds everything up to ``index``; True when that is news."""
        was = self.state
        if not self.maybe_update(index, now):
            return False
        if was == ProgressState.PROBE or (
            was == ProgressState.SNAPSHOT and self.match >= self.pending_snapshot
        ):
            self.become_replicate()
        return True

    def on_heartbeat_ack(self, last_index: int, now: int, election_ticks: int) -> bool:
        """A heartbeat answer from a follower still behind ``last_index``: unstick a probe,
        and give up on appends or a snapshot that were probably lost. True when the leader
        should send an append."""
        if self.match >= last_index:
            return False
        stalled = now - self.last_progress >= election_ticks // 2 + 1
        if self.state == ProgressState.PROBE:
            self.paused = False
        elif self.state == ProgressState.REPLICATE and self.inflight and stalled:
            self.become_probe()  # appends were lost; find the follower's end again
        elif self.state == ProgressState.SNAPSHOT:
            if now - self.snapshot_sent < election_ticks:
                return False
            self.become_probe()  # the snapshot (or its answer) was probably lost
        return True


def committed_index(voters: Collection[Progress], self_match: int | None, quorum: int) -> int:
    """The highest index a quorum of voters holds, the leader counting up to ``self_match``
    (None: the leader is not a voter of the active configuration, thesis §4.2.2)."""
    matches = [pr.match for pr in voters]
    if self_match is not None:
        matches.append(self_match)
    matches.sort()
    return matches[len(matches) - quorum]


def acked_read_seq(voters: Collection[Progress], quorum: int, next_seq: int,
                   self_counts: bool = True) -> int:
    """The highest heartbeat ctx a quorum of voters (counting the leader if it votes) has
    answered; ``next_seq`` when the leader is a quorum on its own."""
    need = quorum - 1 if self_counts else quorum
    if need == 0:
        return next_seq
    acks = sorted((pr.read_ack for pr in voters), reverse=True)
    return acks[need - 1]


def quorum_active(voters: Collection[Progress], everyone: Collection[Progress], quorum: int,
                  self_counts: bool = True) -> bool:
    """Check-quorum: whether a quorum of voters (counting the leader if it votes) was heard
    from since the last check; starts the next period for ``everyone``."""
    active = int(self_counts) + sum(1 for pr in voters if pr.recent_active)
    for pr in everyone:
        pr.recent_active = False
    return active >= quorum


def vote_outcome(votes: Mapping[str, bool], quorum: int) -> bool | None:
    """True once a quorum granted, False once a quorum refused, None while undecided."""
    granted = sum(1 for v in votes.values() if v)
    if granted >= quorum:
        return True
    if len(votes) - granted >= quorum:
        return False
    return None
