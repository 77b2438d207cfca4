"""Log replication: the leader feeding its followers, a follower accepting entries, and
every member applying what is committed.

Consistency check: an append names the entry before its batch (``prev_index``,
``prev_term``); a follower only accepts it if its own log has that entry, so by induction
logs that share an (index, term) share everything before it (Log Matching). On rejection
the follower sends a hint that lets the leader skip a whole conflicting term at once.

``Replication`` owns the log, the commit and apply indexes, the state machine (behind its
dedup ``Applier``), the proposals waiting to be answered here and, while leading, one
``Progress`` per follower (voter or learner) and the read-index rounds those followers
confirm. Every quorum is over the VOTERS of the active configuration (``set_membership``
follows it; learners are fed but never counted). It never changes role or term: ``Raft``
decides those (the election half of the protocol) and
calls in here with the term to speak in.
"""

from __future__ import annotations

from typing import Any

from broker_agents.core.raft.config import InitialState, RaftConfig
from broker_agents.core.raft.effects import (
    Applied,
    ProposalResult,
    RefusalReason,
    SnapshotOp,
    TruncateOp,
)
from broker_agents.core.raft.log import RaftLog
from broker_agents.core.raft.messages import (
    AppendRequest,
    AppendResponse,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    ReadIndexResponse,
    Snapshot,
)
from broker_agents.core.raft.outbox import Outbox
from broker_agents.core.raft.progress import (
    Progress,
    ProgressState,
    acked_read_seq,
    committed_index,
    quorum_active,
)
from broker_agents.core.raft.readindex import ReadIndex, ReadRequest
from broker_agents.core.raft.statemachine import Applier, StateMachine


class Replication:
    __slots__ = (
        "_broadcast_due", "_cfg", "_heartbeat_due", "_held", "_id", "_out", "_peers",
        "_reads", "_snapshot_phase", "_term", "_voter_progress",
        "applied", "applier", "commit", "config_version", "leading", "log", "membership",
        "pending", "progress", "quorum", "self_match", "self_voter", "snapshots_installed",
        "snapshots_sent",
    )

    def __init__(self, cfg: RaftConfig, initial: InitialState, sm: StateMachine, out: Outbox,
                 reads: ReadIndex) -> None:
        self._cfg = cfg
        self._id = cfg.member_id
        self._out = out
        self._reads = reads  # confirmed reads are served as soon as apply catches up
        self._term = 0  # the term we lead in (leader side only)
        everyone = sorted({*cfg.members, cfg.member_id})
        position = everyone.index(cfg.member_id)
        self._snapshot_phase = position * cfg.snapshot_threshold // len(everyone)
        snap = initial.snapshot
        self.log = RaftLog(snap, initial.entries, cfg.bootstrap)
        # The latest snapshot while the log still holds the entries it covers (the
        # catch-up window, ``RaftConfig.snapshot_trail``); None once folded into the log.
        self._held: Snapshot | None = None
        self.snapshots_sent = 0  # InstallSnapshot messages sent to lagging followers
        self.snapshots_installed = 0  # snapshots from a leader that replaced our log
        self.applier = Applier(sm, cfg.dedup_capacity, cfg.dedup_window)
        if snap is not None:
            self.applier.restore(snap.data)
        self.applied = snap.index if snap else 0
        self.commit = max(self.applied, min(initial.hard_state.commit, self.log.last_index))
        self.pending: set[str] = set()  # proposals to answer here once applied
        self.progress: dict[str, Progress] = {}
        self.leading = False
        self._voter_progress: list[Progress] = []
        self.set_membership(0)
        # The leader's own match index: how far its log is known to be durable. It counts
        # toward the commit majority only up to here (writes may trail replication).
        self.self_match = self.log.last_index
        self._broadcast_due = False  # new entries to stream at the next Ready
        self._heartbeat_due = False  # reads wait for a heartbeat round at the next Ready

    # -- leader --------------------------------------------------------------------------

    def set_membership(self, now: int) -> None:
        """Follow the log's active configuration: peers, quorum, and (leading) one
        ``Progress`` per member -- a new one probes from the latest CONFIG entry."""
        m = self.log.configs.active
        self.config_version = self.log.configs.version
        self.membership = m
        self._peers = tuple(sorted(m.members - {self._id}))
        self.self_voter = self._id in m.voters
        self.quorum = m.quorum
        if self.leading:
            start = max(1, min(self.log.configs.last_index, self.log.last_index))
            old = self.progress
            self.progress = {p: old.get(p) or Progress(start, now) for p in self._peers}
        self._voter_progress = [self.progress[p] for p in self._peers
                                if p in m.voters and p in self.progress]

    def lead(self, term: int, now: int) -> None:
        """Start feeding every follower as the leader of ``term``."""
        self._term = term
        nxt = self.log.last_index + 1
        self.progress = {peer: Progress(nxt, now) for peer in self._peers}
        self.leading = True
        self.set_membership(now)

    def unlead(self) -> None:
        self.progress = {}
        self._voter_progress = []
        self.leading = False

    def append(self, command: Any, request_id: str | None,
               kind: EntryKind = EntryKind.NORMAL) -> None:
        entry = Entry(self._term, self.log.last_index + 1, command, request_id, kind)
        self.log.append(entry)
        self._out.unstable.append(entry)
        self._broadcast_due = True

    def flush(self, now: int) -> None:
        """Ready time: stream what was appended since, and run a heartbeat round if reads
        wait for one."""
        if self._broadcast_due:
            self._broadcast_due = False
            self.maybe_commit()  # only a single-member group commits on its own
            for peer in self._peers:
                self.stream_to(peer, now)
        if self._heartbeat_due:
            self._heartbeat_due = False
            self.send_heartbeats()

    def send_append(self, peer: str, now: int, allow_empty: bool = True) -> bool:
        """Send the next append to ``peer``; False when nothing was (or could be) sent."""
        pr = self.progress[peer]
        if pr.is_paused(self._cfg.max_inflight):
            return False
        log = self.log
        prev = pr.next - 1
        prev_term = log.term_at(prev)
        if prev_term is None or pr.next <= log.base_index:
            # the newest: the fewest entries to follow it
            snap = self._held if self._held is not None else log.snapshot
            if snap is None:  # cannot happen: a compacted log always has a snapshot
                return False
            pr.become_snapshot(snap.index, now)
            self.snapshots_sent += 1
            self._out.send(InstallSnapshot(self._term, self._id, peer, snap))
            return True
        entries = log.slice(pr.next, log.last_index, self._cfg.max_append_entries)
        if not entries and not allow_empty:
            return False
        commit = self.commit
        self._out.send(AppendRequest(self._term, self._id, peer, prev, prev_term, entries, commit))
        pr.commit_sent = commit
        if entries:
            pr.sent(entries[-1].index)
        elif pr.state == ProgressState.PROBE:
            pr.paused = True
        return True

    def stream_to(self, peer: str, now: int) -> None:
        """Keep sending while the window allows and there is something new."""
        pr = self.progress[peer]
        while pr.next <= self.log.last_index and self.send_append(peer, now, allow_empty=False):
            pass

    def maybe_commit(self) -> bool:
        """Advance commit to the highest index a majority holds -- only if it is from this
        term (Raft paper 5.4.2: older-term entries commit indirectly). True if it moved."""
        index = committed_index(self._voter_progress,
                                self.self_match if self.self_voter else None, self.quorum)
        if index <= self.commit or self.log.term_at(index) != self._term:
            return False
        self.commit_to(index)
        if self._reads.before_commit:  # reads that waited for our first commit in the term
            waiting, self._reads.before_commit = self._reads.before_commit, []
            for request in waiting:
                self.leader_read(request)
        return True

    def on_append_response(self, m: AppendResponse, now: int) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        if m.success and m.index > self.log.last_index:
            self._out.refuse(m, RefusalReason.BEYOND_LOG)  # counted toward commit: never
            return
        pr.recent_active = True
        if not m.success:
            hint = m.hint_index
            if m.hint_term > 0:
                hint = self.log.find_conflict_by_term(m.hint_index, m.hint_term)
            if pr.on_reject(m.index, hint):
                self.send_append(m.src, now)
        elif pr.on_accept(m.index, now):
            self.maybe_commit()
            self.stream_to(m.src, now)

    def on_heartbeat_response(self, m: HeartbeatResponse, now: int) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        if m.ctx > self._reads.queue.seq:
            self._out.refuse(m, RefusalReason.BEYOND_LOG)  # would confirm reads: never
            return
        pr.recent_active = True
        if m.ctx > pr.read_ack:
            pr.read_ack = m.ctx
            self.confirm_reads()
        if pr.on_heartbeat_ack(self.log.last_index, now, self._cfg.election_ticks):
            self.send_append(m.src, now)

    def notify_commit(self, now: int) -> None:
        """Tell followers that have not heard of the latest commit index (so they apply).

        Deliberately on the tick, not on every commit: the client's reply does not wait
        for it, the next append carries it anyway when proposals keep coming, and sending
        it at once cost every sequential commit two extra messages and two responses.
        """
        for peer in self._peers:
            pr = self.progress[peer]
            if min(pr.match, self.commit) > pr.commit_sent:
                self.send_append(peer, now)

    def send_heartbeats(self) -> None:
        ctx = self._reads.queue.seal()
        for peer in self._peers:
            pr = self.progress[peer]
            commit = min(pr.match, self.commit)
            pr.commit_sent = max(pr.commit_sent, commit)
            self._out.send(Heartbeat(self._term, self._id, peer, commit, ctx))

    def quorum_active(self) -> bool:
        return quorum_active(self._voter_progress, self.progress.values(), self.quorum,
                             self.self_voter)

    def leader_read(self, request: ReadRequest) -> None:
        if self.log.term_at(self.commit) != self._term:
            # Until its no-op commits, a new leader's commit index may be behind what an
            # older leader already acknowledged; wait for it.
            self._reads.before_commit.append(request)
            return
        self._reads.queue.add(self.commit, request)
        if self.quorum == int(self.self_voter):  # we are the only voter
            self.confirm_reads()
        else:
            self._heartbeat_due = True

    def confirm_reads(self) -> None:
        queue = self._reads.queue
        if not queue.pending:
            return
        acked = acked_read_seq(self._voter_progress, self.quorum, queue.seq + 1,
                               self.self_voter)
        for origin, (index, rids) in self._reads.confirm(acked).items():
            self._out.send(ReadIndexResponse(self._term, self._id, origin, tuple(rids), index))
        self.serve_reads()

    # -- follower ------------------------------------------------------------------------

    def on_append(self, m: AppendRequest, term: int) -> None:
        log, out = self.log, self._out
        if m.prev_index < self.commit:
            out.send(AppendResponse(term, self._id, m.src, True, self.commit))
            return
        if not log.matches(m.prev_index, m.prev_term):
            hint = log.find_conflict_by_term(min(m.prev_index, log.last_index), m.prev_term)
            out.send(AppendResponse(term, self._id, m.src, False, m.prev_index, hint,
                                    log.term_at(hint) or 0))
            return
        truncated, added = log.merge(m.entries, self.commit)
        if truncated is not None:
            out.write(TruncateOp(truncated))
        out.unstable.extend(added)
        last_new = m.prev_index + len(m.entries)
        self.commit_to(min(m.commit, last_new))
        response = AppendResponse(term, self._id, m.src, True, last_new)
        sent = out.messages
        if sent:
            # Appends that arrived together are answered by one response: acknowledging
            # the highest index acknowledges (and frees the leader's window for) every
            # one before it; the Ready persists all of them before it is sent.
            prev = sent[-1]
            if (type(prev) is AppendResponse and prev.success and prev.dst == m.src
                    and prev.term == term and prev.index <= last_new):
                sent[-1] = response
                return
        out.send(response)

    def on_heartbeat(self, m: Heartbeat, term: int) -> None:
        self.commit_to(min(m.commit, self.log.last_index))
        self._out.send(HeartbeatResponse(term, self._id, m.src, m.ctx))

    def on_snapshot(self, m: InstallSnapshot, term: int) -> None:
        snap, out = m.snapshot, self._out
        if snap.index <= self.commit:
            out.send(AppendResponse(term, self._id, m.src, True, self.commit))
            return
        if self.log.matches(snap.index, snap.term):
            self.commit_to(snap.index)
            out.send(AppendResponse(term, self._id, m.src, True, snap.index))
            return
        out.unstable = []  # superseded: the snapshot replaces the whole log
        out.write(SnapshotOp(snap, reset_log=True))
        self.log.reset(snap)
        self._held = None  # older than the one installed, and its entries are gone
        self.snapshots_installed += 1
        self.applier.restore(snap.data)
        self.applied = self.commit = snap.index
        for rid in list(self.pending):  # answer proposals the snapshot already covers
            seen = self.applier.lookup(rid)
            if seen is not None:
                self.pending.discard(rid)
                out.reply(ProposalResult(rid, seen[0], seen[1]))
        self.serve_reads()
        out.send(AppendResponse(term, self._id, m.src, True, snap.index))

    # -- applying ------------------------------------------------------------------------

    def commit_to(self, index: int) -> None:
        if index > self.commit:
            self.commit = index
            self.apply_committed()

    def apply_committed(self) -> None:
        log, applier, pending, out = self.log, self.applier, self.pending, self._out
        while self.applied < self.commit:
            self.applied += 1
            entry = log.entry(self.applied)
            if entry.kind != EntryKind.NORMAL:  # NOOP, or CONFIG (result: its membership)
                result = entry.command if entry.kind == EntryKind.CONFIG else None
                out.applied.append(Applied(entry.index, entry.term, None, result, False))
                continue
            result, dup = applier.apply(entry.index, entry.command, entry.request_id)
            rid = entry.request_id
            out.applied.append(Applied(entry.index, entry.term, rid, result, dup))
            if rid is not None and rid in pending:
                pending.discard(rid)
                # a repeat answers with the index of the entry that applied it
                seen = applier.lookup(rid) if dup else None
                index = seen[0] if seen is not None else entry.index
                out.reply(ProposalResult(rid, index, result))
        self.serve_reads()
        self._maybe_compact()

    def serve_reads(self) -> None:
        if self._reads.confirmed:
            self._out.replies.extend(self._reads.serve(self.applied, self.applier.sm))

    @property
    def snapshot_index(self) -> int:
        """The latest snapshot's index (held, or the log's base)."""
        return self._held.index if self._held is not None else self.log.base_index

    def _maybe_compact(self) -> None:
        """Snapshot each time ``applied`` crosses a multiple of the threshold, shifted by
        this member's phase: members of a group compact at different entries, so at most
        one of them pays for a snapshot at a time while the others keep the quorum.

        The log gives up the entries a snapshot covers only ``snapshot_trail`` entries
        later (or at the next snapshot): a leader that compacted right up to ``applied``
        sent a whole multi-MB snapshot to a follower only a few hundred entries behind."""
        held, cfg = self._held, self._cfg
        if held is not None and self.applied - held.index >= cfg.snapshot_trail:
            self._fold_held()
        every, phase = cfg.snapshot_threshold, self._snapshot_phase
        if (self.applied + phase) // every == (self.snapshot_index + phase) // every:
            return
        term = self.log.term_at(self.applied)
        assert term is not None
        snap = Snapshot(self.applied, term, self.applier.snapshot(),
                        self.log.configs.at(self.applied))
        self._out.write(SnapshotOp(snap, reset_log=False))
        self._fold_held()
        if cfg.snapshot_trail > 0:
            self._held = snap
        else:
            self.log.compact(snap)

    def _fold_held(self) -> None:
        """Compact the log to the held snapshot (if any)."""
        held, self._held = self._held, None
        if held is not None:
            self.log.compact(held)
