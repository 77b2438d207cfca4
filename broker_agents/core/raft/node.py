"""RaftCore: the sans-IO Raft member (roles, elections, message dispatch, client API).

Inputs: ``tick()``, ``step(message)``, ``propose(command, request_id)``,
``read(query, request_id)``. Output: ``ready()`` hands back a ``Ready`` (what to persist,
then send, then answer). Elections use PRE-VOTE (a member first asks whether it *could*
win without bumping its term, so a member rejoining from a partition cannot depose a
healthy leader) and CHECK-QUORUM (a leader that has not heard from a majority within an
election timeout steps down, and a member that hears from a live leader ignores votes).
"""

from __future__ import annotations

import random
from typing import Any

from broker_agents.core.raft.config import InitialState, RaftConfig
from broker_agents.core.raft.effects import NotLeader, ProposalResult, Ready
from broker_agents.core.raft.messages import (
    AppendRequest,
    AppendResponse,
    Entry,
    EntryKind,
    ForwardProposals,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    VoteRequest,
    VoteResponse,
)
from broker_agents.core.raft.progress import Progress
from broker_agents.core.raft.readindex import ReadRequest
from broker_agents.core.raft.reads import Reads
from broker_agents.core.raft.state import Role
from broker_agents.core.raft.statemachine import StateMachine

_FROM_LEADER = (AppendRequest, Heartbeat, InstallSnapshot)


class RaftCore(Reads):
    def __init__(
        self,
        config: RaftConfig,
        rng: random.Random,
        state_machine: StateMachine,
        initial: InitialState | None = None,
    ) -> None:
        super().__init__(config, rng, state_machine, initial)
        self.elections = 0
        self.reset_timeout()
        self.apply_committed()

    # -- inputs ----------------------------------------------------------------------------

    def tick(self) -> None:
        self.ticks += 1
        if self.role == Role.LEADER:
            self.tick_leader()
            return
        self.election_elapsed += 1
        if self.election_elapsed >= self.timeout:
            self.campaign()

    def propose(self, command: Any, request_id: str) -> None:
        """Replicate ``command``; a ``ProposalResult`` (or ``NotLeader``) follows in a Ready.

        A request id already applied is answered from the dedup table. A retry of one
        still in flight may be appended again: harmless, apply-time dedup skips it.
        """
        seen = self.applier.lookup(request_id)
        if seen is not None:
            self.reply(ProposalResult(request_id, seen[0], seen[1]))
            return
        if self.role == Role.LEADER:
            self.pending.add(request_id)
            self.append_local(command, request_id)
        elif self.leader is not None and self.cfg.forward_proposals:
            self.pending.add(request_id)
            self.forward_buf.append((command, request_id))
        else:
            self.reply(NotLeader(request_id, self.leader))

    def read(self, query: Any, request_id: str) -> None:
        """A linearizable read; a ``ReadResult`` (or ``NotLeader``) follows in a Ready."""
        if self.role == Role.LEADER:
            self.leader_read(ReadRequest(request_id, query, None))
        elif self.leader is not None:
            self.follower_read(request_id, query)
        else:
            self.reply(NotLeader(request_id, self.leader))

    def forget(self, request_id: str) -> None:
        """The driver gave up waiting (timeout): stop tracking the request."""
        self.pending.discard(request_id)
        self.forwarded_reads.pop(request_id, None)

    def step(self, m: Message) -> None:
        if m.dst != self.id or m.src not in self.progress_members:
            return
        if m.term > self.term:
            if isinstance(m, VoteRequest) and self.in_lease():
                return  # we hear a live leader: do not let a stray candidate disrupt it
            if isinstance(m, VoteRequest) and m.pre_vote:
                pass  # a pre-vote never changes our term
            elif isinstance(m, VoteResponse) and m.pre_vote and m.granted:
                pass  # granted pre-votes carry the term we would campaign in
            else:
                self.become_follower(m.term, m.src if isinstance(m, _FROM_LEADER) else None)
        elif m.term < self.term:
            if isinstance(m, (AppendRequest, Heartbeat)):
                # Tell a stale leader about the newer term so it steps down.
                self.send(AppendResponse(self.term, self.id, m.src, False, 0))
            elif isinstance(m, VoteRequest) and m.pre_vote:
                self.send(VoteResponse(self.term, self.id, m.src, False, True))
            return
        self.dispatch(m)

    def persisted(self, term: int, index: int) -> None:
        """The driver made an ``early`` Ready durable (its ``mark``): the leader may now
        count itself for entries up to ``index``."""
        if self.role != Role.LEADER or term != self.term:
            return  # a stale mark: a non-early Ready since then counted everything
        index = min(index, self.log.last_index)
        if index > self.self_match:
            self.self_match = index
            self.maybe_commit()

    def ready(self) -> Ready:
        """Everything produced since the last call: persist, then send, then reply (a
        leader's own appends may trail its messages: see ``Ready.early``)."""
        early = self.can_send_early()
        if not early:
            self.self_match = self.log.last_index  # durable before anything leaves
        if self.role == Role.LEADER:
            if self.broadcast_due:
                self.broadcast_due = False
                self.maybe_commit()  # only a single-member group commits on its own
                for peer in self.peers:
                    self.stream_to(peer)
            if self.heartbeat_due:
                self.heartbeat_due = False
                self.send_heartbeats()
        if self.forward_buf and self.leader is not None:
            items = tuple(self.forward_buf)
            self.send(ForwardProposals(self.term, self.id, self.leader, items))
        self.forward_buf = []
        if self.read_index_buf and self.leader is not None:
            rids = tuple(self.read_index_buf)
            self.send(ReadIndexRequest(self.term, self.id, self.leader, rids))
        self.read_index_buf = []
        return self.take_ready(early)

    # -- observers -------------------------------------------------------------------------

    @property
    def progress_members(self) -> tuple[str, ...]:
        return self.cfg.members

    def in_lease(self) -> bool:
        return (
            self.cfg.check_quorum
            and self.leader is not None
            and self.election_elapsed < self.cfg.election_ticks
        )

    # -- roles -----------------------------------------------------------------------------

    def reset_timeout(self) -> None:
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        e = self.cfg.election_ticks
        self.timeout = e + self.rng.randrange(e)

    def become_follower(self, term: int, leader: str | None) -> None:
        was_leader = self.role == Role.LEADER
        if term != self.term:
            self.term = term
            self.vote = None
        self.role = Role.FOLLOWER
        self.leader = leader
        self.reset_timeout()
        if was_leader:
            self.progress = {}
            self.fail_leader_reads()

    def campaign(self) -> None:
        if self.cfg.pre_vote:
            self.role = Role.PRE_CANDIDATE
            self.leader = None
            self.reset_timeout()
            self.request_votes(self.term + 1, pre_vote=True)
        else:
            self.become_candidate()

    def become_candidate(self) -> None:
        self.term += 1
        self.vote = self.id
        self.role = Role.CANDIDATE
        self.leader = None
        self.reset_timeout()
        self.elections += 1
        self.request_votes(self.term, pre_vote=False)

    def request_votes(self, term: int, pre_vote: bool) -> None:
        self.votes = {self.id: True}
        if self.tally():
            return
        last_index, last_term = self.log.last_index, self.log.last_term
        for peer in self.peers:
            self.send(VoteRequest(term, self.id, peer, last_index, last_term, pre_vote))

    def tally(self) -> bool:
        """Act on the votes so far; True when the campaign is decided."""
        granted = sum(1 for v in self.votes.values() if v)
        rejected = len(self.votes) - granted
        if granted >= self.quorum:
            if self.role == Role.PRE_CANDIDATE:
                self.become_candidate()
            else:
                self.become_leader()
            return True
        if rejected >= self.quorum:
            self.become_follower(self.term, None)
            return True
        return False

    def become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader = self.id
        self.reset_timeout()
        nxt = self.log.last_index + 1
        self.progress = {peer: Progress(nxt, self.ticks) for peer in self.peers}
        self.append_local(None, None, EntryKind.NOOP)

    def append_local(self, command: Any, request_id: str | None,
                     kind: EntryKind = EntryKind.NORMAL) -> None:
        entry = Entry(self.term, self.log.last_index + 1, command, request_id, kind)
        self.log.entries.append(entry)
        self.unstable.append(entry)
        self.broadcast_due = True

    def tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_ticks:
            self.election_elapsed = 0
            if self.cfg.check_quorum:
                active = 1 + sum(1 for pr in self.progress.values() if pr.recent_active)
                for pr in self.progress.values():
                    pr.recent_active = False
                if active < self.quorum:
                    self.become_follower(self.term, None)
                    return
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self.send_heartbeats()
        else:
            self.notify_commit()

    def notify_commit(self) -> None:
        """Tell followers that have not heard of the latest commit index (so they apply).

        Deliberately on the tick, not on every commit: the client's reply does not wait
        for it, the next append carries it anyway when proposals keep coming, and sending
        it at once cost every sequential commit two extra messages and two responses.
        """
        for peer in self.peers:
            pr = self.progress[peer]
            if min(pr.match, self.commit) > pr.commit_sent:
                self.send_append(peer)

    # -- dispatch (terms already reconciled) -------------------------------------------

    def dispatch(self, m: Message) -> None:
        if isinstance(m, AppendResponse):
            if self.role == Role.LEADER:
                self.handle_append_response(m)
        elif isinstance(m, HeartbeatResponse):
            if self.role == Role.LEADER:
                self.handle_heartbeat_response(m)
        elif isinstance(m, _FROM_LEADER):
            if self.role != Role.FOLLOWER or self.leader != m.src:
                self.become_follower(m.term, m.src)
            self.election_elapsed = 0
            if isinstance(m, AppendRequest):
                self.handle_append(m)
            elif isinstance(m, Heartbeat):
                self.handle_heartbeat(m)
            else:
                self.handle_snapshot(m)
        elif isinstance(m, VoteRequest):
            self.handle_vote_request(m)
        elif isinstance(m, VoteResponse):
            want_pre = self.role == Role.PRE_CANDIDATE
            if self.role in (Role.PRE_CANDIDATE, Role.CANDIDATE) and m.pre_vote == want_pre:
                self.votes.setdefault(m.src, m.granted)
                self.tally()
        elif isinstance(m, ForwardProposals):
            if self.role == Role.LEADER:
                for command, rid in m.items:
                    if self.applier.lookup(rid) is None:
                        self.append_local(command, rid)
        elif isinstance(m, ReadIndexRequest):
            self.handle_read_index_request(m)
        elif isinstance(m, ReadIndexResponse):
            self.handle_read_index_response(m)

    def handle_vote_request(self, m: VoteRequest) -> None:
        can_vote = (
            self.vote == m.src
            or (self.vote is None and self.leader is None)
            or (m.pre_vote and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.last_index, m.last_term):
            self.send(VoteResponse(m.term, self.id, m.src, True, m.pre_vote))
            if not m.pre_vote:
                self.vote = m.src
                self.election_elapsed = 0
        else:
            self.send(VoteResponse(self.term, self.id, m.src, False, m.pre_vote))
