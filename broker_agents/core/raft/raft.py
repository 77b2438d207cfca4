"""Raft: the protocol struct behind ``RaftCore`` (etcd-io/raft's ``raft``): terms, roles,
elections, and what each role does with each message and client request.

Role behaviour is one step and one tick function per role, swapped by ``_set_role``
(etcd's ``r.step``/``r.tick``): ``_step_leader`` and ``_step_candidate`` take what is
theirs and leave the rest to ``_step_follower``, which every role shares. The role decides
every client request, forwarding included: a leader appends a proposal; a follower that
knows the leader hands it on (a relayable request goes whole to the leader, which answers
the client, through a ``Redirect``; an in-process one rides in a ``ForwardProposals`` and
is answered here once applied); anyone else answers ``NotLeader``.

Elections use PRE-VOTE (a member first asks whether it *could* win without bumping its
term, so a member rejoining from a partition cannot depose a healthy leader) and
CHECK-QUORUM (a leader that has not heard from a majority within an election timeout
steps down, and a member that hears from a live leader ignores votes).

MEMBERSHIP: every quorum is over the voters of the log's active configuration
(membership.py), which ``sync_config`` follows after each step; only a voter campaigns or
is counted. A member outside the configuration may still ask for votes (thesis §4.2.3:
it may be a voter we have not heard of yet) and, while we are not a voter ourselves, act
as our leader (we may be a joiner whose log has not caught up). Membership changes and
leadership transfer are the leader's business in reconfig.py; ``TimeoutNow`` from our
leader makes a voter campaign at once, without pre-vote, with ``VoteRequest.transfer``.
Campaigns and votes are in election.py (a mixin: the state it writes is its own).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from broker_agents.core.raft.config import RaftConfig
from broker_agents.core.raft.effects import NotLeader, ProposalResult, Redirect, RefusalReason
from broker_agents.core.raft.election import Elections, Role
from broker_agents.core.raft.events import (
    ChangeMembers,
    Persisted,
    Propose,
    Read,
    TransferLeadership,
)
from broker_agents.core.raft.messages import (
    AppendRequest,
    AppendResponse,
    EntryKind,
    ForwardProposals,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from broker_agents.core.raft.outbox import Outbox
from broker_agents.core.raft.readindex import ReadIndex, ReadRequest
from broker_agents.core.raft.reconfig import Reconfig
from broker_agents.core.raft.replication import Replication

MAX_RELAYS = 2
"""A relayable proposal is relayed at most this often (a stale leader hint bounces it)."""

_FROM_LEADER = (AppendRequest, Heartbeat, InstallSnapshot)
_LEADER_ONLY = (AppendRequest, Heartbeat, InstallSnapshot, TimeoutNow)


RoleEvent = Message | Propose | Read | ChangeMembers | TransferLeadership


class Raft(Elections):
    """One member's protocol state. Package-internal: ``RaftCore`` is the public face."""

    __slots__ = (
        "_cfg", "_forward_buf", "_heartbeat_elapsed", "_members", "_out", "_reads", "_rep",
        "_rng", "_step_role", "_tick_role", "_ticks", "_timeout", "_voters", "id", "reconf",
        "role",
    )

    def __init__(self, config: RaftConfig, rng: random.Random, hard_state: HardState,
                 rep: Replication, reads: ReadIndex, out: Outbox) -> None:
        self._cfg = config
        self.id = config.member_id
        self._rng = rng
        self._rep, self._reads, self._out = rep, reads, out
        self.reconf = Reconfig(config, rep, out)
        self._members, self._voters = rep.membership.members, rep.membership.voters
        self._ticks = 0
        self.term = hard_state.term
        self.vote = hard_state.vote
        self.leader: str | None = None
        self.role = Role.FOLLOWER
        self._step_role: Callable[[RoleEvent], None] = self._step_follower
        self._tick_role: Callable[[], None] = self._tick_election
        self._election_elapsed = self._heartbeat_elapsed = self._timeout = self.elections = 0
        self._votes: dict[str, bool] = {}
        self._forward_buf: list[tuple[Any, str]] = []
        self._reset_timeout()

    # -- what RaftCore calls -----------------------------------------------------------

    def receive(self, m: Message) -> None:
        if self._admit(m):
            self._step_role(m)

    def propose(self, e: Propose) -> None:
        """A retry of a proposal still in flight may be appended again: harmless, since
        apply-time dedup skips it; one applied already is answered from the dedup table."""
        seen = self._rep.applier.lookup(e.request_id)
        if seen is None:
            self._step_role(e)
        else:
            self._out.reply(ProposalResult(e.request_id, seen[0], seen[1]))

    def read(self, e: Read) -> None:
        self._step_role(e)

    def request(self, e: ChangeMembers | TransferLeadership) -> None:
        if self.role != Role.LEADER:
            self._out.reply(NotLeader(e.request_id, self.leader))
        elif isinstance(e, ChangeMembers):
            if self.reconf.start_change(e, self.term, self._ticks):
                self.sync_config()
        else:
            self.reconf.start_transfer(e, self.term, self._ticks)

    def after_step(self) -> None:
        """Follow a configuration change; let a leader move its change or transfer on."""
        rep = self._rep
        if rep.config_version != rep.log.configs.version:
            self.sync_config()
        if self.role != Role.LEADER:
            return
        reconf = self.reconf
        if (reconf.change is not None or reconf.transfer is not None) and reconf.advance(
                self.term, self._ticks):
            self.sync_config()
        if not rep.self_voter and rep.commit >= rep.log.configs.last_index:
            # the configuration that removed us is committed: hand over and step down
            target = self.reconf.handover_target()
            if target is not None:
                self._out.send(TimeoutNow(self.term, self.id, target))
            self._become_follower(self.term, None)

    def sync_config(self) -> None:
        rep = self._rep
        rep.set_membership(self._ticks)
        self._members, self._voters = rep.membership.members, rep.membership.voters

    def tick(self) -> None:
        self._ticks += 1
        self._tick_role()

    def persisted(self, mark: Persisted) -> None:
        if self.role != Role.LEADER or mark.term != self.term:
            return  # a stale mark: a non-early Ready since then counted everything
        rep = self._rep
        index = min(mark.index, rep.log.last_index)
        if index > rep.self_match:
            rep.self_match = index
            rep.maybe_commit()

    def flush(self) -> None:
        """Ready time: what was batched until now goes out (appends, heartbeats, requests
        handed to the leader)."""
        if self.role == Role.LEADER:
            self._rep.flush(self._ticks)
        leader = self.leader
        if self._forward_buf:
            if leader is not None:
                items = tuple(self._forward_buf)
                self._out.send(ForwardProposals(self.term, self.id, leader, items))
            self._forward_buf = []
        if self._reads.asking:
            if leader is not None:
                rids = tuple(self._reads.asking)
                self._out.send(ReadIndexRequest(self.term, self.id, leader, rids))
            self._reads.asking = []

    # -- roles -------------------------------------------------------------------------

    def _set_role(self, role: Role) -> None:
        self.role = role
        if role == Role.LEADER:
            self._step_role, self._tick_role = self._step_leader, self._tick_leader
        elif role == Role.FOLLOWER:
            self._step_role, self._tick_role = self._step_follower, self._tick_election
        else:
            self._step_role, self._tick_role = self._step_candidate, self._tick_election

    def _reset_timeout(self) -> None:
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        e = self._cfg.election_ticks
        # [e, 1.5e) where two followers' tie cannot split the vote, else [e, 2e): RaftConfig
        narrow = self._cfg.pre_vote and len(self._voters) <= 3
        self._timeout = e + self._rng.randrange(max(2, e // 2) if narrow else e)

    def _become_follower(self, term: int, leader: str | None, cause: str | None = None) -> None:
        was_leader = self.role == Role.LEADER
        if term != self.term:
            self.term = term
            self.vote = None
        self._set_role(Role.FOLLOWER)
        self.leader = leader
        self._reset_timeout()
        if was_leader:
            self._rep.unlead()
            self.reconf.stepped_down(cause, leader)
            for rid in self._reads.drop_unconfirmed():
                self._out.reply(NotLeader(rid, leader))

    def _become_leader(self) -> None:
        self._set_role(Role.LEADER)
        self.leader = self.id
        self._reset_timeout()
        self._rep.lead(self.term, self._ticks)
        self._rep.append(None, None, EntryKind.NOOP)

    # -- ticks -------------------------------------------------------------------------

    def _tick_election(self) -> None:
        self._election_elapsed += 1
        if self._election_elapsed >= self._timeout:
            self._campaign()

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self._cfg.election_ticks:
            self._election_elapsed = 0
            if self._cfg.check_quorum and not self._rep.quorum_active():
                self._become_follower(self.term, None)
                return
        if self._heartbeat_elapsed >= self._cfg.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._rep.send_heartbeats()
        else:
            self._rep.notify_commit(self._ticks)

    # -- stepping ----------------------------------------------------------------------

    def _admit(self, m: Message) -> bool:
        """Reconcile terms; False when the message is not ours to act on. Only a member
        other than us may speak to us, and only within a plausible term (a forged term
        would be adopted, persisted and carried into every election after it)."""
        if m.dst != self.id:
            self._out.refuse(m, RefusalReason.WRONG_DESTINATION)
            return False
        if (m.src not in self._members and not self._admit_outsider(m)) or m.src == self.id:
            self._out.refuse(m, RefusalReason.NOT_MEMBER)
            return False
        if m.term > self.term:
            if m.term - self.term > self._cfg.max_term_jump:
                self._out.refuse(m, RefusalReason.TERM_JUMP)
                return False
            if isinstance(m, VoteRequest) and not m.transfer and self._in_lease():
                return False  # we hear a live leader: do not let a stray candidate disrupt it
            if isinstance(m, VoteRequest) and m.pre_vote:
                pass  # a pre-vote never changes our term
            elif isinstance(m, VoteResponse) and m.pre_vote and m.granted:
                pass  # granted pre-votes carry the term we would campaign in
            else:
                self._become_follower(m.term, m.src if isinstance(m, _FROM_LEADER) else None,
                                      m.src)
        elif m.term < self.term:
            if isinstance(m, (AppendRequest, Heartbeat)):
                # Tell a stale leader about the newer term so it steps down.
                self._out.send(AppendResponse(self.term, self.id, m.src, False, 0))
            elif isinstance(m, VoteRequest) and m.pre_vote:
                self._out.send(VoteResponse(self.term, self.id, m.src, False, True))
            return False
        return True

    def _admit_outsider(self, m: Message) -> bool:
        """A sender outside our configuration. Its vote requests are heard (thesis 4.2.3:
        it may be a voter we have not heard of yet). A leader we do not know is followed
        when we are not a voter (a joiner), or when our log is behind (it holds an older
        configuration) and we have no leader in this term: we learn the current term from
        members we know (their answers to our pre-votes), so an outsider can never push
        our term, nor speak while we follow a leader."""
        if isinstance(m, VoteRequest):
            return True
        return isinstance(m, _LEADER_ONLY) and (
            self.id not in self._voters
            or (m.term == self.term and self.leader in (None, m.src)))

    def _step_leader(self, e: RoleEvent) -> None:
        rep = self._rep
        if isinstance(e, AppendResponse):
            rep.on_append_response(e, self._ticks)
        elif isinstance(e, Propose):
            if self.reconf.transfer is not None:  # handing over: answered when it ends
                self.reconf.hold(e.request_id)
                return
            rep.pending.add(e.request_id)
            rep.append(e.command, e.request_id)
        elif isinstance(e, HeartbeatResponse):
            rep.on_heartbeat_response(e, self._ticks)
        elif isinstance(e, Read):
            rep.leader_read(ReadRequest(e.request_id, e.query, None))
        elif isinstance(e, ForwardProposals):
            if self.reconf.transfer is not None:
                return  # handing over: the follower's callers time out and retry
            for command, rid in e.items:
                if rep.applier.lookup(rid) is None:
                    rep.append(command, rid)
        elif isinstance(e, ReadIndexRequest):
            for rid in e.request_ids:
                rep.leader_read(ReadRequest(rid, None, e.src))
        else:
            self._step_follower(e)

    def _step_candidate(self, e: RoleEvent) -> None:
        """Pre-candidates and candidates count the votes of the campaign they run."""
        if isinstance(e, VoteResponse):
            if e.pre_vote == (self.role == Role.PRE_CANDIDATE) and e.src in self._voters:
                self._votes.setdefault(e.src, e.granted)
                self._tally()
        else:
            self._step_follower(e)

    def _step_follower(self, e: RoleEvent) -> None:
        """What every role does with the events its own step function leaves."""
        if isinstance(e, _FROM_LEADER):
            if self.role != Role.FOLLOWER or self.leader != e.src:
                self._become_follower(e.term, e.src)
            self._election_elapsed = 0
            if isinstance(e, AppendRequest):
                self._rep.on_append(e, self.term)
            elif isinstance(e, Heartbeat):
                self._rep.on_heartbeat(e, self.term)
            else:
                self._rep.on_snapshot(e, self.term)
        elif isinstance(e, VoteRequest):
            self._on_vote_request(e)
        elif isinstance(e, TimeoutNow):
            if e.src != self.leader or e.term != self.term:
                self._out.refuse(e, RefusalReason.NOT_LEADER)
            elif self.id in self._voters:
                self._become_candidate(transfer=True)  # thesis 3.10: no pre-vote, no wait
        elif isinstance(e, Propose):
            self._hand_on(e)
        elif isinstance(e, Read):
            if self.leader is None:
                self._out.reply(NotLeader(e.request_id, None))
            else:
                self._reads.ask_leader(e.request_id, e.query)
        elif isinstance(e, ReadIndexRequest):  # not the leader: we cannot confirm
            self._out.send(ReadIndexResponse(self.term, self.id, e.src, e.request_ids, 0))
        elif isinstance(e, ReadIndexResponse):
            for rid in self._reads.answered(e.request_ids, e.index):
                self._out.reply(NotLeader(rid, self.leader))
            self._rep.serve_reads()

    def _hand_on(self, e: Propose) -> None:
        """A proposal to a member that is not the leader."""
        leader = self.leader
        if leader is None or not self._cfg.forward_proposals:
            self._out.reply(NotLeader(e.request_id, leader))
        elif not e.relayable:
            self._rep.pending.add(e.request_id)
            self._forward_buf.append((e.command, e.request_id))
        elif e.hops < MAX_RELAYS:
            self._out.reply(Redirect(e.request_id, leader, e.hops + 1))
        else:
            self._out.reply(NotLeader(e.request_id, leader))
