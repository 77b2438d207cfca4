"""The member's state and the output buffers every part of the core writes into.

Split out so that the role logic (``node.py``), replication (``replication.py``) and reads
(``reads.py``) can live in small modules that share one state object.
"""

from __future__ import annotations

import random
from enum import IntEnum
from typing import Any

from broker_agents.core.raft.config import InitialState, RaftConfig
from broker_agents.core.raft.effects import (
    AppendOp,
    Applied,
    HardStateOp,
    PersistOp,
    ProposalResult,
    ReadResult,
    Ready,
    Reply,
    SnapshotOp,
)
from broker_agents.core.raft.log import RaftLog
from broker_agents.core.raft.messages import (
    Entry,
    EntryKind,
    HardState,
    Message,
    Snapshot,
)
from broker_agents.core.raft.progress import Progress
from broker_agents.core.raft.readindex import ReadIndexQueue, ReadRequest, ReadyRead
from broker_agents.core.raft.statemachine import Applier, StateMachine, error_result


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


class RaftState:
    """Fields and helpers shared by the mixins that make up ``RaftCore``."""

    def __init__(
        self,
        config: RaftConfig,
        rng: random.Random,
        state_machine: StateMachine,
        initial: InitialState | None = None,
    ) -> None:
        initial = initial or InitialState()
        self.cfg = config
        self.id = config.member_id
        self.peers = tuple(m for m in config.members if m != config.member_id)
        self.quorum = config.quorum
        self.rng = rng
        self.ticks = 0
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.term = initial.hard_state.term
        self.vote = initial.hard_state.vote
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.timeout = 0
        self.votes: dict[str, bool] = {}
        self.progress: dict[str, Progress] = {}
        self.applier = Applier(state_machine, config.dedup_capacity)
        self.snapshot: Snapshot | None = initial.snapshot
        snap = initial.snapshot
        self.log = RaftLog(snap.index if snap else 0, snap.term if snap else 0, initial.entries)
        self.applied = snap.index if snap else 0
        if snap is not None:
            self.applier.restore(snap.data)
        self.commit = max(self.applied, min(initial.hard_state.commit, self.log.last_index))
        self.pending: set[str] = set()
        self.forward_buf: list[tuple[Any, str]] = []
        self.reads = ReadIndexQueue()
        self.reads_before_commit: list[ReadRequest] = []
        self.forwarded_reads: dict[str, Any] = {}
        self.read_index_buf: list[str] = []
        self.ready_reads: list[ReadyRead] = []
        self.heartbeat_due = False
        self.broadcast_due = False
        # output buffers, handed out by ready()
        self.out_persist: list[PersistOp] = []
        self.unstable: list[Entry] = []
        self.out_messages: list[Message] = []
        self.out_replies: list[Reply] = []
        self.out_applied: list[Applied] = []
        self.persisted_hs = initial.hard_state
        # The leader's own match index: how far its log is known to be durable. It counts
        # toward the commit majority only up to here (writes may trail replication).
        self.self_match = self.log.last_index

    # -- output helpers ------------------------------------------------------------------

    def send(self, msg: Message) -> None:
        self.out_messages.append(msg)

    def reply(self, reply: Reply) -> None:
        self.out_replies.append(reply)

    def persist(self, op: PersistOp) -> None:
        self.flush_unstable()
        self.out_persist.append(op)

    def flush_unstable(self) -> None:
        if self.unstable:
            self.out_persist.append(AppendOp(tuple(self.unstable)))
            self.unstable = []

    def can_send_early(self) -> bool:
        """A leader that has been leader in this term since the last Ready: whatever it
        persists now is its own appends, which may trail the messages (see ``Ready``)."""
        old = self.persisted_hs
        return self.role == Role.LEADER and (self.term, self.vote) == (old.term, old.vote)

    def take_ready(self, early: bool) -> Ready:
        self.flush_unstable()
        if not early:  # durable before anything of this Ready leaves the member
            self.self_match = self.log.last_index
        hs = HardState(self.term, self.vote, self.commit)
        old = self.persisted_hs
        # Term and vote must be durable before we send anything. The commit index is only
        # a restart optimisation (it is re-learned from the leader), so it rides along
        # with other writes instead of costing an fsync of its own on the commit path.
        if (hs.term, hs.vote) != (old.term, old.vote) or (
            hs.commit != old.commit and self.out_persist
        ):
            self.out_persist.append(HardStateOp(hs))
            self.persisted_hs = hs
        ready = Ready(self.out_persist, self.out_messages, self.out_replies, self.out_applied)
        ready.early = early
        if early and ready.persist:
            ready.mark = (self.term, self.log.last_index)
        self.out_persist, self.out_messages = [], []
        self.out_replies, self.out_applied = [], []
        return ready

    # -- applying ------------------------------------------------------------------------

    def commit_to(self, index: int) -> None:
        if index > self.commit:
            self.commit = index
            self.apply_committed()

    def apply_committed(self) -> None:
        log, applier, pending = self.log, self.applier, self.pending
        while self.applied < self.commit:
            self.applied += 1
            entry = log.entry(self.applied)
            if entry.kind == EntryKind.NOOP:
                self.out_applied.append(Applied(entry.index, entry.term, None, None, False))
                continue
            result, dup = applier.apply(entry.index, entry.command, entry.request_id)
            rid = entry.request_id
            self.out_applied.append(Applied(entry.index, entry.term, rid, result, dup))
            if rid is not None and rid in pending:
                pending.discard(rid)
                seen = applier.lookup(rid)
                index = seen[0] if seen is not None else entry.index
                self.reply(ProposalResult(rid, index, result))
        self.serve_reads()
        self.maybe_compact()

    def serve_reads(self) -> None:
        if not self.ready_reads:
            return
        waiting: list[ReadyRead] = []
        for read in self.ready_reads:
            if read.index > self.applied:
                waiting.append(read)
                continue
            try:
                result = self.applier.sm.query(read.query)
            except Exception as exc:  # a bad query must not take the member down
                result = error_result("rejected", f"{type(exc).__name__}: {exc}")
            self.reply(ReadResult(read.request_id, self.applied, result))
        self.ready_reads = waiting

    def maybe_compact(self) -> None:
        if self.applied - self.log.base_index < self.cfg.snapshot_threshold:
            return
        term = self.log.term_at(self.applied)
        assert term is not None
        snap = Snapshot(self.applied, term, self.applier.snapshot())
        self.persist(SnapshotOp(snap, reset_log=False))
        self.log.compact(self.applied)
        self.snapshot = snap

    def answer_from_dedup(self) -> None:
        """After a snapshot install, answer waiting proposals the snapshot already covers."""
        for rid in list(self.pending):
            seen = self.applier.lookup(rid)
            if seen is not None:
                self.pending.discard(rid)
                self.reply(ProposalResult(rid, seen[0], seen[1]))
