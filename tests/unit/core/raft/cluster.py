"""A deterministic harness: RaftCores on a SimNetwork, with Raft's safety invariants checked
after every step (used by the scenario tests and by tests/sim/test_raft_sim.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from broker_agents.core.raft import (
    Answer,
    ChangeMembers,
    EntryKind,
    Forget,
    NotLeader,
    Persisted,
    PersistOp,
    ProposalResult,
    Propose,
    RaftConfig,
    RaftCore,
    Read,
    ReadResult,
    Ready,
    Redirect,
    Reply,
    Role,
    Tick,
    TransferLeadership,
)
from broker_agents.core.raft.kvstore import KVStateMachine
from broker_agents.core.raft.messages import Message
from broker_agents.core.raft.statemachine import Applier
from broker_agents.raft.memstore import MemoryStorage
from tests.sim.simnet import SimNetwork


class InvariantViolation(AssertionError):
    pass


@dataclass
class Checker:
    """Global knowledge gathered from every member, and the invariants over it."""

    leaders: dict[int, str] = field(default_factory=dict)
    committed: dict[int, tuple[int, str | None]] = field(default_factory=dict)
    entry_ids: dict[tuple[int, int], tuple[str | None, int]] = field(default_factory=dict)
    applied: dict[int, tuple[int, str | None, Any, bool]] = field(default_factory=dict)
    acked: dict[str, int] = field(default_factory=dict)
    max_acked: int = 0
    ref: Applier = field(default_factory=lambda: Applier(KVStateMachine()))
    ref_upto: int = 0
    ref_history: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    first_application: dict[str, int] = field(default_factory=dict)
    # every index a request was applied at, and how many requests were applied before it
    applications: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    applied_requests: int = 0
    reads_checked: int = 0
    commands: dict[str, Any] = field(default_factory=dict)
    commit_seen: dict[str, int] = field(default_factory=dict)
    commit_term: dict[int, int] = field(default_factory=dict)
    member_terms: dict[str, int] = field(default_factory=dict)
    # membership: the committed CONFIG entries (index -> membership command), and the
    # changes a leader acknowledged (index -> the membership it answered)
    committed_configs: dict[int, Any] = field(default_factory=dict)
    acked_changes: dict[int, Any] = field(default_factory=dict)

    def fail(self, what: str) -> None:
        raise InvariantViolation(what)

    def check_member(self, core: RaftCore, ready: Ready, was_leader: bool) -> None:
        if core.role == Role.LEADER:
            other = self.leaders.setdefault(core.term, core.id)
            if other != core.id:
                self.fail(f"two leaders in term {core.term}: {other} and {core.id}")
            if not was_leader:
                self.check_leader_complete(core)
            self.check_one_pending_config(core)
        self.check_log(core)
        self.member_terms[core.id] = core.term
        for a in ready.applied:
            self.record_applied(core.id, a.index, a.term, a.request_id, a.result, a.duplicate)
        self.record_commits(core)

    def note_commit_term(self, index: int, term: int) -> None:
        """The earliest term in which anyone knew ``index`` was committed."""
        known = self.commit_term.get(index)
        if known is None or term < known:
            self.commit_term[index] = term

    def check_leader_complete(self, core: RaftCore) -> None:
        log = core.log
        for index, (term, _rid) in self.committed.items():
            # Only entries committed in an earlier term bind this leader: a stale
            # candidate may count old votes after a newer leader committed something.
            if index < log.base_index or self.commit_term[index] >= core.term:
                continue
            mine = log.term_at(index)
            if mine != term:
                self.fail(
                    f"leader {core.id} (term {core.term}) lacks committed entry {index}"
                    f" (term {term}, has {mine})"
                )

    def check_one_pending_config(self, core: RaftCore) -> None:
        """Single-server changes: a leader's log never holds two uncommitted CONFIGs."""
        pending = [i for i, _m in core.log.configs.entries if i > core.commit]
        if len(pending) > 1:
            self.fail(f"leader {core.id} (term {core.term}) has uncommitted configs {pending}")

    def on_change_acked(self, index: int, membership: Any) -> None:
        seen = self.committed_configs.get(index)
        if seen is not None and seen != membership:
            self.fail(f"change acked at {index} as {membership}, committed there: {seen}")
        self.acked_changes[index] = membership

    def check_log(self, core: RaftCore) -> None:
        """Log matching: (index, term) names one entry, with one predecessor term."""
        log = core.log
        prev = log.base_term
        for e in log.entries:
            key = (e.index, e.term)
            ident = (e.request_id, prev)
            seen = self.entry_ids.setdefault(key, ident)
            if seen != ident:
                self.fail(f"log matching broken at {key} on {core.id}: {seen} vs {ident}")
            prev = e.term

    def record_commits(self, core: RaftCore) -> None:
        log = core.log
        start = max(log.base_index, self.commit_seen.get(core.id, 0)) + 1
        self.commit_seen[core.id] = core.commit
        for index in range(start, core.commit + 1):
            e = log.entry(index)
            self.note_commit_term(index, core.term)
            ident = (e.term, e.request_id)
            seen = self.committed.setdefault(index, ident)
            if seen != ident:
                self.fail(f"{core.id} committed {ident} at {index} but {seen} was committed")
            if (e.kind == EntryKind.CONFIG
                    and self.committed_configs.setdefault(index, e.command) != e.command):
                self.fail(f"{core.id} committed config {e.command} at {index}")

    def record_applied(
        self, member: str, index: int, term: int, rid: str | None, result: Any, dup: bool
    ) -> None:
        self.note_commit_term(index, self.member_terms[member])
        committed = self.committed.setdefault(index, (term, rid))
        if committed != (term, rid):
            self.fail(f"{member} applied {(term, rid)} at {index}, {committed} was committed")
        if (rid is None and result is not None  # a CONFIG entry: its result is the config
                and self.committed_configs.setdefault(index, result) != result):
            self.fail(f"{member} applied config {result} at {index}")
        ident = (term, rid, result, dup)
        seen = self.applied.setdefault(index, ident)
        if seen != ident:
            self.fail(f"{member} applied {ident} at {index}, another member applied {seen}")
        self.advance_reference()

    def advance_reference(self) -> None:
        """Replay the agreed sequence on a reference KV: results and dedup must agree."""
        while self.ref_upto + 1 in self.applied:
            index = self.ref_upto + 1
            _term, rid, result, dup = self.applied[index]
            self.ref_upto = index
            if rid is None:
                continue
            command = self.commands.get(rid)
            ref_result, ref_dup = self.ref.apply(index, command, rid)
            if (ref_result, ref_dup) != (result, dup):
                self.fail(f"apply at {index}: {(result, dup)}, reference {(ref_result, ref_dup)}")
            if not dup:
                self.check_once(rid, index)
                self.first_application.setdefault(rid, index)
                self.applications.setdefault(rid, []).append((index, self.applied_requests))
                self.applied_requests += 1
                key = command["key"]
                self.ref_history.setdefault(key, []).append((index, self.ref.sm.get(key)))

    def check_once(self, rid: str, index: int) -> None:
        """Exactly once within the dedup window: a request may apply again only once its
        row expired -- ``dedup_window`` entries later, or ``dedup_capacity`` requests
        later (computed here from the applied sequence, not by the Applier)."""
        earlier = self.applications.get(rid)
        if not earlier:
            return
        last, seq = earlier[-1]
        window, capacity = self.ref.window, self.ref.capacity
        expired = (window and index - last >= window) or (
            self.applied_requests - seq > capacity)
        if not expired:
            self.fail(f"request {rid} applied twice ({last}, {index}) inside its dedup window")

    def on_ack(self, rid: str, index: int) -> None:
        ident = self.committed.get(index)
        if ident is None or ident[1] != rid:
            self.fail(f"ack of {rid} at {index} but the committed entry there is {ident}")
        applied_at = [i for i, _seq in self.applications.get(rid, [])]
        if applied_at and index not in applied_at:
            self.fail(f"ack of {rid} names index {index}, applied at {applied_at}")
        self.acked[rid] = index
        self.max_acked = max(self.max_acked, index)

    def on_read(self, key: str, required: int, index: int, result: Any) -> None:
        if index < required:
            self.fail(f"stale read of {key}: served at {index}, a write acked at {required}")
        if self.ref_upto < index:
            self.fail(f"read served at {index} beyond the agreed applied prefix {self.ref_upto}")
        value = None
        for at, v in self.ref_history.get(key, []):
            if at > index:
                break
            value = v
        if result.get("value") != value:
            self.fail(f"read of {key} at {index} returned {result}, expected {value!r}")
        self.reads_checked += 1


@dataclass
class PendingOp:
    rid: str
    kind: str  # "write" or "read"
    payload: Any
    member: str
    sent_at: int
    required: int = 0


class Cluster:
    """N members, their MemoryStorage, a SimNetwork and a checking client population."""

    def __init__(
        self, n: int, seed: int, *, net: SimNetwork[Message] | None = None, **cfg: Any
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.ids = tuple(f"m{i}" for i in range(n))
        self.bootstrap = self.ids  # RaftConfig.members of every member, joiners included
        self.admin: dict[str, Answer | None] = {}  # membership/transfer requests: answer
        self.cfg_kw = {"election_ticks": 6, "heartbeat_ticks": 1, **cfg}
        self.net: SimNetwork[Message] = net or SimNetwork(random.Random(seed * 7919 + 1))
        self.storage = {m: MemoryStorage() for m in self.ids}
        self.nodes: dict[str, RaftCore | None] = {}
        self.incarnation = dict.fromkeys(self.ids, 0)
        self.check = Checker(ref=Applier(
            KVStateMachine(), self.cfg_kw.get("dedup_capacity", 100_000),
            self.cfg_kw.get("dedup_window", 0)))
        self.pending: dict[str, PendingOp] = {}
        self.replies: list[tuple[str, Reply]] = []
        self.next_rid = 0
        self.retry_later: list[tuple[PendingOp, str | None]] = []
        self.frozen: dict[str, int] = {}
        self.tick_rate = 1.0  # < 1: members' clocks run at different speeds
        # A leader's early writes (Ready.early): sent already, not yet durable, in order.
        self.writing: dict[str, list[tuple[list[PersistOp], Persisted]]] = {
            m: [] for m in self.ids
        }
        self.write_rate = 0.3  # chance that the next step finishes a write, not a delivery
        for m in self.ids:
            self.start(m)

    # -- members ---------------------------------------------------------------------------

    def config(self, member: str) -> RaftConfig:
        return RaftConfig(member_id=member, members=self.bootstrap, **self.cfg_kw)

    def add_node(self, member: str) -> None:
        """Start a fresh member outside the bootstrap configuration (a joiner)."""
        self.ids = (*self.ids, member)
        self.storage[member] = MemoryStorage()
        self.incarnation[member] = 0
        self.writing[member] = []
        self.start(member)

    def request(self, member: str, event: ChangeMembers | TransferLeadership) -> str:
        """Step a membership change or transfer into ``member``; its answer lands in
        ``admin[request_id]``."""
        self.admin[event.request_id] = None
        core = self.node(member)
        was = core.role == Role.LEADER
        core.step(event)
        self.process(member, was)
        return event.request_id

    def start(self, member: str) -> None:
        self.incarnation[member] += 1
        self.check.commit_seen.pop(member, None)
        rng = random.Random(f"{self.seed}/{member}/{self.incarnation[member]}")
        core = RaftCore(self.config(member), rng, KVStateMachine(), self.storage[member].load())
        self.nodes[member] = core
        self.process(member, was_leader=False)

    def crash(self, member: str) -> None:
        self.nodes[member] = None
        self.writing[member] = []  # a write that was not durable is lost
        self.net.crash(member)
        for op in list(self.pending.values()):
            if op.member == member:
                del self.pending[op.rid]  # the client lost its connection; it will retry

    def restart(self, member: str) -> None:
        self.net.restart(member)
        self.start(member)

    def node(self, member: str) -> RaftCore:
        core = self.nodes[member]
        assert core is not None, f"{member} is down"
        return core

    def live(self) -> list[str]:
        return [m for m in self.ids if self.nodes[m] is not None]

    def leader(self) -> str | None:
        best: RaftCore | None = None
        for m in self.live():
            core = self.node(m)
            if core.role == Role.LEADER and (best is None or core.term > best.term):
                best = core
        return best.id if best else None

    # -- stepping ------------------------------------------------------------------------

    def process(self, member: str, was_leader: bool) -> None:
        """Take the member's Ready: persist, check, send, answer -- in that order."""
        core = self.node(member)
        ready = core.ready()
        if ready.early:
            if ready.mark is not None:
                self.writing[member].append((ready.persist, ready.mark))
        else:
            self.finish_writes(member)  # writes stay in order: earlier ones land first
            self.storage[member].save(ready.persist)
        self.check.check_member(core, ready, was_leader)
        for msg in ready.messages:
            self.net.send(member, msg.dst, msg)
        for reply in ready.replies:
            self.on_reply(member, reply)

    def finish_writes(self, member: str) -> None:
        """Make every early write of ``member`` durable, telling its core (no Ready taken:
        the caller is about to take one)."""
        core = self.node(member)
        while self.writing[member]:
            ops, mark = self.writing[member].pop(0)
            self.storage[member].save(ops)
            core.step(mark)

    def finish_one_write(self) -> bool:
        """A disk finishes the oldest write of some member; False if none is in flight."""
        busy = [m for m in self.ids if self.writing[m] and self.nodes[m] is not None]
        if not busy:
            return False
        member = self.rng.choice(busy)
        core = self.node(member)
        ops, mark = self.writing[member].pop(0)
        self.storage[member].save(ops)
        was = core.role == Role.LEADER
        core.step(mark)
        self.process(member, was)
        return True

    def step_one(self) -> bool:
        """Finish a write or deliver a message (in random order); False when idle."""
        if self.rng.random() < self.write_rate and self.finish_one_write():
            return True
        return self.deliver_one() or self.finish_one_write()

    def tick(self, member: str) -> None:
        core = self.node(member)
        was = core.role == Role.LEADER
        core.step(Tick())
        self.process(member, was)

    def tick_all(self) -> None:
        for m in self.active():
            if self.tick_rate >= 1.0 or self.rng.random() < self.tick_rate:
                self.tick(m)

    def freeze(self, member: str, ticks: int) -> None:
        """Stall a member (GC pause, stopped VM): no ticks, messages wait for it."""
        self.frozen[member] = self.net.now + ticks

    def active(self) -> list[str]:
        """Live members that are not stalled: the ones that tick and take requests."""
        now = self.net.now
        return [m for m in self.live() if self.frozen.get(m, 0) <= now]

    def deliver_one(self) -> bool:
        env = self.net.next_delivery()
        if env is None:
            return False
        core = self.nodes.get(env.dst)
        if core is None:
            return True
        if self.frozen.get(env.dst, 0) > self.net.now:
            # a stalled process reads it later, in no particular order
            env.deliver_at = self.frozen[env.dst] + self.rng.randrange(3)
            self.net.in_flight.append(env)
            return True
        was = core.role == Role.LEADER
        core.step(env.msg)
        self.process(env.dst, was)
        return True

    def deliver_all(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.step_one():
                return

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.net.advance(1)
            self.tick_all()
            self.deliver_all()

    def settle(self, max_ticks: int = 400) -> None:
        """Run until there is a leader and every live member applied its commit index."""
        for _ in range(max_ticks):
            self.run(1)
            lead = self.leader()
            if lead is None:
                continue
            core = self.node(lead)
            target = core.commit
            if core.log.term_at(target) != core.term:
                continue  # commit indexes are re-learned; wait for one in this term
            if all(self.node(m).applied == target for m in self.live()
                   if m in core.membership.members):
                return
        raise AssertionError(f"cluster did not settle (seed {self.seed})")

    # -- clients -------------------------------------------------------------------------

    def new_rid(self) -> str:
        self.next_rid += 1
        return f"r{self.next_rid}"

    def write(self, member: str, command: dict[str, Any], rid: str | None = None) -> str:
        rid = rid or self.new_rid()
        self.check.commands[rid] = command
        self.pending[rid] = PendingOp(rid, "write", command, member, self.net.now)
        core = self.node(member)
        was = core.role == Role.LEADER
        core.step(Propose(command, rid))
        self.process(member, was)
        return rid

    def read(self, member: str, key: str) -> str:
        rid = self.new_rid()
        query = {"op": "get", "key": key}
        op = PendingOp(rid, "read", query, member, self.net.now, self.check.max_acked)
        self.pending[rid] = op
        core = self.node(member)
        was = core.role == Role.LEADER
        core.step(Read(query, rid))
        self.process(member, was)
        return rid

    def on_reply(self, member: str, reply: Reply) -> None:
        self.replies.append((member, reply))
        if reply.request_id in self.admin and not isinstance(reply, Redirect):
            self.admin[reply.request_id] = reply
            if isinstance(reply, ProposalResult) and reply.index:
                self.check.on_change_acked(reply.index, reply.result)
            return
        op = self.pending.get(reply.request_id)
        if op is None or op.member != member:
            return
        del self.pending[reply.request_id]
        if isinstance(reply, ProposalResult):
            self.check.on_ack(reply.request_id, reply.index)
        elif isinstance(reply, ReadResult):
            self.check.on_read(op.payload["key"], op.required, reply.index, reply.result)
        elif isinstance(reply, NotLeader):
            self.retry_later.append((op, reply.leader))

    def expired(self, max_age: int) -> list[PendingOp]:
        """Requests with no answer for ``max_age`` ticks (the client gives up on them)."""
        old = [op for op in self.pending.values() if self.net.now - op.sent_at > max_age]
        for op in old:
            del self.pending[op.rid]
            core = self.nodes.get(op.member)
            if core is not None:
                core.step(Forget(op.rid))
        return old
