"""Log replication: the leader feeding followers, and a follower accepting entries.

Consistency check: an append names the entry before its batch (``prev_index``,
``prev_term``); a follower only accepts it if its own log has that entry, so by induction
logs that share an (index, term) share everything before it (Log Matching). On rejection
the follower sends a hint that lets the leader skip a whole conflicting term at once.
"""

from __future__ import annotations

from broker_agents.core.raft.effects import SnapshotOp, TruncateOp
from broker_agents.core.raft.messages import (
    AppendRequest,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
)
from broker_agents.core.raft.progress import ProgressState
from broker_agents.core.raft.state import RaftState, Role


class Replication(RaftState):
    # -- leader ----------------------------------------------------------------------------

    def send_append(self, peer: str, allow_empty: bool = True) -> bool:
        """Send the next append to ``peer``; False when nothing was (or could be) sent."""
        pr = self.progress[peer]
        if pr.is_paused(self.cfg.max_inflight):
            return False
        prev = pr.next - 1
        prev_term = self.log.term_at(prev)
        if prev_term is None or pr.next <= self.log.base_index:
            return self.send_snapshot(peer)
        entries = self.log.slice(pr.next, self.log.last_index, self.cfg.max_append_entries)
        if not entries and not allow_empty:
            return False
        self.send(AppendRequest(self.term, self.id, peer, prev, prev_term, entries, self.commit))
        pr.commit_sent = self.commit
        if entries:
            pr.sent(entries[-1].index)
        elif pr.state == ProgressState.PROBE:
            pr.paused = True
        return True

    def send_snapshot(self, peer: str) -> bool:
        snap = self.snapshot
        if snap is None:  # cannot happen: a compacted log always has a snapshot
            return False
        self.progress[peer].become_snapshot(snap.index, self.ticks)
        self.send(InstallSnapshot(self.term, self.id, peer, snap))
        return True

    def stream_to(self, peer: str) -> None:
        """Keep sending while the window allows and there is something new."""
        while self.progress[peer].next <= self.log.last_index and self.send_append(
            peer, allow_empty=False
        ):
            pass

    def maybe_commit(self) -> bool:
        """Advance commit to the highest index a majority holds -- only if it is from this
        term (Raft paper 5.4.2: older-term entries commit indirectly)."""
        matches = sorted([pr.match for pr in self.progress.values()] + [self.self_match])
        candidate = matches[len(matches) - self.quorum]
        if candidate <= self.commit or self.log.term_at(candidate) != self.term:
            return False
        self.commit_to(candidate)
        self.on_commit_in_term()
        return True

    def on_commit_in_term(self) -> None:
        """Hook for reads waiting for the leader's first commit in its term."""

    def handle_append_response(self, m: AppendResponse) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        if not m.success:
            hint = m.hint_index
            if m.hint_term > 0:
                hint = self.log.find_conflict_by_term(m.hint_index, m.hint_term)
            if pr.maybe_decrease(m.index, hint):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self.send_append(m.src)
            return
        was = pr.state
        if not pr.maybe_update(m.index, self.ticks):
            return
        if was == ProgressState.PROBE or (
            was == ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot
        ):
            pr.become_replicate()
        self.maybe_commit()
        self.stream_to(m.src)

    def handle_heartbeat_response(self, m: HeartbeatResponse) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        if m.ctx > pr.read_ack:
            pr.read_ack = m.ctx
            self.confirm_reads()
        if pr.match >= self.log.last_index:
            return
        stalled = self.ticks - pr.last_progress >= self.cfg.election_ticks // 2 + 1
        if pr.state == ProgressState.PROBE:
            pr.paused = False
        elif pr.state == ProgressState.REPLICATE and pr.inflight and stalled:
            pr.become_probe()  # appends were lost; find the follower's end again
        elif pr.state == ProgressState.SNAPSHOT:
            if self.ticks - pr.snapshot_sent < self.cfg.election_ticks:
                return
            pr.become_probe()  # the snapshot (or its answer) was probably lost
        self.send_append(m.src)

    def confirm_reads(self) -> None:
        """Hook: recompute which reads a quorum has confirmed."""

    # -- follower --------------------------------------------------------------------------

    def handle_append(self, m: AppendRequest) -> None:
        if m.prev_index < self.commit:
            self.send(AppendResponse(self.term, self.id, m.src, True, self.commit))
            return
        if not self.log.matches(m.prev_index, m.prev_term):
            hint = self.log.find_conflict_by_term(
                min(m.prev_index, self.log.last_index), m.prev_term
            )
            self.send(AppendResponse(
                self.term, self.id, m.src, False, m.prev_index, hint,
                self.log.term_at(hint) or 0,
            ))
            return
        truncated, added = self.log.merge(m.entries, self.commit)
        if truncated is not None:
            self.persist(TruncateOp(truncated))
        self.unstable.extend(added)
        last_new = m.prev_index + len(m.entries)
        self.commit_to(min(m.commit, last_new))
        self.send(AppendResponse(self.term, self.id, m.src, True, last_new))

    def handle_heartbeat(self, m: Heartbeat) -> None:
        self.commit_to(min(m.commit, self.log.last_index))
        self.send(HeartbeatResponse(self.term, self.id, m.src, m.ctx))

    def handle_snapshot(self, m: InstallSnapshot) -> None:
        snap = m.snapshot
        if snap.index <= self.commit:
            self.send(AppendResponse(self.term, self.id, m.src, True, self.commit))
            return
        if self.log.matches(snap.index, snap.term):
            self.commit_to(snap.index)
            self.send(AppendResponse(self.term, self.id, m.src, True, snap.index))
            return
        self.unstable = []  # superseded: the snapshot replaces the whole log
        self.persist(SnapshotOp(snap, reset_log=True))
        self.log.reset(snap.index, snap.term)
        self.applier.restore(snap.data)
        self.snapshot = snap
        self.applied = self.commit = snap.index
        self.answer_from_dedup()
        self.serve_reads()
        self.send(AppendResponse(self.term, self.id, m.src, True, snap.index))

    def is_leader(self) -> bool:
        return self.role == Role.LEADER
