"""Elections: how a member campaigns (pre-vote, then a real vote; at once, without
pre-vote, on a leadership transfer's ``TimeoutNow``), counts the votes, and grants its own.

A mixin of ``Raft`` (raft.py), which owns the state named below and the role changes;
only voters of the active configuration campaign or are asked. ``_in_lease`` is
check-quorum's other half: a member that hears a live leader ignores vote requests (a
transfer's excepted), so a stray candidate cannot depose it.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

from broker_agents.core.raft.messages import VoteRequest, VoteResponse
from broker_agents.core.raft.progress import vote_outcome

if TYPE_CHECKING:
    from broker_agents.core.raft.config import RaftConfig
    from broker_agents.core.raft.outbox import Outbox
    from broker_agents.core.raft.replication import Replication


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


class Elections:
    """The election side of ``Raft``: the state it writes is its own (slots)."""

    _votes: dict[str, bool]
    _election_elapsed: int
    leader: str | None
    term: int
    vote: str | None
    elections: int

    __slots__ = ("_election_elapsed", "_votes", "elections", "leader", "term", "vote")

    if TYPE_CHECKING:
        _cfg: RaftConfig
        _rep: Replication
        _out: Outbox
        _voters: frozenset[str]
        id: str
        role: Role

        def _set_role(self, role: Role) -> None: ...
        def _reset_timeout(self) -> None: ...
        def _become_follower(self, term: int, leader: str | None,
                             cause: str | None = None) -> None: ...
        def _become_leader(self) -> None: ...

    def _campaign(self) -> None:
        if self.id not in self._voters:  # a learner, a joiner or a removed member
            self._reset_timeout()
            return
        if not self._cfg.pre_vote:
            self._become_candidate()
            return
        self._set_role(Role.PRE_CANDIDATE)
        self.leader = None
        self._reset_timeout()
        self._request_votes(self.term + 1, pre_vote=True)

    def _become_candidate(self, transfer: bool = False) -> None:
        self.term += 1
        self.vote = self.id
        self._set_role(Role.CANDIDATE)
        self.leader = None
        self._reset_timeout()
        self.elections += 1
        self._request_votes(self.term, pre_vote=False, transfer=transfer)

    def _request_votes(self, term: int, pre_vote: bool, transfer: bool = False) -> None:
        self._votes = {self.id: True}
        if self._tally():
            return
        log = self._rep.log
        last_index, last_term = log.last_index, log.last_term
        for peer in sorted(self._voters - {self.id}):
            self._out.send(VoteRequest(term, self.id, peer, last_index, last_term, pre_vote,
                                       transfer))

    def _tally(self) -> bool:
        """Act on the votes so far; True when the campaign is decided."""
        won = vote_outcome(self._votes, self._rep.quorum)
        if won is None:
            return False
        if not won:
            self._become_follower(self.term, None)
        elif self.role == Role.PRE_CANDIDATE:
            self._become_candidate()
        else:
            self._become_leader()
        return True

    def _yields_to_us(self, m: VoteRequest) -> bool:
        """Two members that time out together would grant each other's pre-vote, both
        campaign in the same term and split the vote: a whole election timeout lost (a
        failover of ~2x the usual in about one kill in four, with 10 timeout values). So
        a pre-candidate refuses the pre-vote of a higher id with a log no newer than its
        own, for the term it campaigns for itself; the lower id wins the tie, and a newer
        log still wins over an id. Pre-votes change no term or vote: safety is untouched."""
        if self.role != Role.PRE_CANDIDATE or m.term != self.term + 1 or m.src <= self.id:
            return False
        log = self._rep.log
        return (m.last_term, m.last_index) <= (log.last_term, log.last_index)

    def _in_lease(self) -> bool:
        """Heard a live leader lately. The window ends a heartbeat interval before the
        shortest election timeout: members tick out of phase, and a peer whose timeout
        is the shortest must not find us one tick short of it (it would lose its
        pre-vote and wait a whole new timeout: kill -9 failovers of 400-580 ms). A live
        leader's heartbeats keep it far inside; no read relies on it (``readindex``)."""
        cfg = self._cfg
        return cfg.check_quorum and self.leader is not None and (
            self._election_elapsed < cfg.election_ticks - cfg.heartbeat_ticks)

    def _on_vote_request(self, m: VoteRequest) -> None:
        can_vote = (
            self.vote == m.src
            or (self.vote is None and self.leader is None)
            or (m.pre_vote and m.term > self.term)
        ) and not (m.pre_vote and self._yields_to_us(m))
        if can_vote and self._rep.log.is_up_to_date(m.last_index, m.last_term):
            self._out.send(VoteResponse(m.term, self.id, m.src, True, m.pre_vote))
            if not m.pre_vote:
                self.vote = m.src
                self._election_elapsed = 0
        else:
            self._out.send(VoteResponse(self.term, self.id, m.src, False, m.pre_vote))
