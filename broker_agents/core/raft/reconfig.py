"""The leader's side of membership changes and leadership transfer (thesis §4, §3.10).

MEMBERSHIP (``ChangeMembers``), one single-server change at a time (membership.py says
why). Refused with CONFLICT while the log holds an uncommitted CONFIG entry or a change
is under way, and until the leader has committed an entry of its own term (the thesis's
fix for a change racing a leader change). Refused with BAD_REQUEST for an add of a
voter, a remove of an absent member, or removing the last voter. An add of a member that
is a learner already (an add that did not finish: its leader died, or the learner was
slow) resumes: catch-up and promotion as below, with no new learner entry.

- add: append a CONFIG with the member as a LEARNER. Once that entry is committed the
  leader replicates to it in ROUNDS (thesis §4.2.1): a round ends when the learner's
  match index reaches the leader's commit index as of the round's start; the learner is
  CAUGHT UP when a round took at most one election timeout (it then trails by less than
  that, even under steady load); otherwise the next round starts. The leader then appends
  a CONFIG making it a voter and answers once that entry commits. If it has not caught up
  within ``catchup_rounds * election_ticks`` ticks, the leader appends a CONFIG without
  it (if the learner entry is committed; otherwise the learner stays and an operator
  removes it) and answers ``Failed(TIMEOUT)``.
- remove: append a CONFIG without the member; answer once it commits. A leader that
  removes itself keeps leading without counting itself (thesis §4.2.2) and steps down
  once the entry commits, first sending ``TimeoutNow`` to a voter that holds its whole log.

TRANSFER (``TransferLeadership``): the leader stops taking proposals (it holds their
answers until the transfer ends, then answers ``NotLeader`` naming whoever leads, so
clients go straight to the new leader; proposals forwarded by followers are dropped and
time out), keeps replicating until the target's match index is its last
index, then sends ``TimeoutNow`` (again every heartbeat interval, in case it was lost).
The target campaigns at once with ``VoteRequest.transfer``, which voters grant even
inside a leader lease. The transfer is aborted (``Failed(TIMEOUT)``) after one election
timeout, and proposals are taken again. Success is answered when the old leader learns
of a newer term after its ``TimeoutNow`` (from the target, or a voter that answers first).

A leader that steps down for any other reason answers what it holds ``NotLeader``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker_agents.core.errors import ErrorCode
from broker_agents.core.raft.config import RaftConfig
from broker_agents.core.raft.effects import Failed, NotLeader, ProposalResult
from broker_agents.core.raft.events import ChangeMembers, TransferLeadership
from broker_agents.core.raft.membership import Membership
from broker_agents.core.raft.messages import EntryKind, TimeoutNow
from broker_agents.core.raft.outbox import Outbox
from broker_agents.core.raft.replication import Replication


@dataclass(slots=True)
class PendingChange:
    request_id: str
    member: str
    index: int  # the CONFIG entry awaited (while catching up: the learner entry)
    catching_up: bool
    deadline: int  # tick by which a learner must have caught up
    round_target: int = 0  # catch-up round: the commit index the learner must reach
    round_start: int = 0


@dataclass(slots=True)
class PendingTransfer:
    request_id: str
    target: str
    deadline: int
    sent_at: int = -1  # tick of the last TimeoutNow (-1: none yet)
    held: list[str] = field(default_factory=list)  # proposals to answer once it ends


class Reconfig:
    """What a leader holds of a membership change and a leadership transfer."""

    __slots__ = ("_cfg", "_id", "_out", "_rep", "change", "transfer")

    def __init__(self, cfg: RaftConfig, rep: Replication, out: Outbox) -> None:
        self._cfg, self._id, self._rep, self._out = cfg, cfg.member_id, rep, out
        self.change: PendingChange | None = None
        self.transfer: PendingTransfer | None = None

    def _fail(self, rid: str, code: ErrorCode, why: str) -> None:
        self._out.reply(Failed(rid, code, why))

    def _append(self, m: Membership) -> int:
        self._rep.append(m.to_command(), None, EntryKind.CONFIG)
        return self._rep.log.last_index

    # -- membership ----------------------------------------------------------------------

    def start_change(self, e: ChangeMembers, term: int, now: int) -> bool:
        """Validate and append the first CONFIG entry; True when one was appended."""
        rep, rid, member = self._rep, e.request_id, e.member
        if self.transfer is not None:
            self._out.reply(NotLeader(rid, self.transfer.target))
            return False
        if e.action not in ("add", "remove") or not isinstance(member, str) or not member:
            self._fail(rid, ErrorCode.BAD_REQUEST, "action must be add or remove, with a member")
            return False
        configs = rep.log.configs
        if self.change is not None or configs.last_index > rep.commit:
            self._fail(rid, ErrorCode.CONFLICT, "another membership change is in progress")
            return False
        if rep.log.term_at(rep.commit) != term:
            self._fail(rid, ErrorCode.CONFLICT, "the leader has not committed in its term yet")
            return False
        m = configs.active
        deadline = now + self._cfg.catchup_rounds * self._cfg.election_ticks
        if e.action == "add":
            if member in m.voters:
                self._fail(rid, ErrorCode.BAD_REQUEST, f"{member} is already a voter")
                return False
            if member in m.learners:
                # A learner left by an add that did not finish (its leader died, or it did
                # not catch up in time): the admin's retry resumes the catch-up and the
                # promotion from the committed learner configuration.
                self.change = PendingChange(rid, member, configs.last_index, True, deadline)
                return False
            index = self._append(Membership(m.voters, m.learners | {member}))
        else:
            if member not in m.members:
                self._fail(rid, ErrorCode.BAD_REQUEST, f"{member} is not a member")
                return False
            if m.voters == {member}:
                self._fail(rid, ErrorCode.BAD_REQUEST, f"{member} is the last voter")
                return False
            index = self._append(Membership(m.voters - {member}, m.learners - {member}))
        self.change = PendingChange(rid, member, index, e.action == "add", deadline)
        return True

    def _advance_change(self, ch: PendingChange, now: int) -> bool:
        rep = self._rep
        committed = rep.commit >= ch.index
        if not ch.catching_up:
            if committed:
                members = rep.log.configs.at(ch.index).to_command()
                self._out.reply(ProposalResult(ch.request_id, ch.index, members))
                self.change = None
            return False
        m = rep.log.configs.active
        pr = rep.progress.get(ch.member)
        if committed and pr is not None:
            if ch.round_target == 0:  # the first round starts once the learner entry commits
                ch.round_target, ch.round_start = rep.commit, now
            if pr.match >= ch.round_target:
                if now - ch.round_start <= self._cfg.election_ticks:
                    ch.index = self._append(
                        Membership(m.voters | {ch.member}, m.learners - {ch.member}))
                    ch.catching_up = False
                    return True
                ch.round_target, ch.round_start = rep.commit, now  # a slow round: again
        if now < ch.deadline:
            return False
        self.change = None
        ticks = self._cfg.catchup_rounds * self._cfg.election_ticks
        self._fail(ch.request_id, ErrorCode.TIMEOUT,
                   f"{ch.member} did not catch up within {ticks} ticks")
        if committed:
            self._append(Membership(m.voters, m.learners - {ch.member}))
            return True
        return False

    # -- transfer ------------------------------------------------------------------------

    def start_transfer(self, e: TransferLeadership, term: int, now: int) -> None:
        rep, rid = self._rep, e.request_id
        if self.transfer is not None:
            self._fail(rid, ErrorCode.CONFLICT, "a leadership transfer is in progress")
            return
        voters = rep.membership.voters
        target = e.target
        if target is None:
            ranked = sorted((pr.match, p) for p, pr in rep.progress.items() if p in voters)
            if not ranked:
                self._fail(rid, ErrorCode.BAD_REQUEST, "no other voter to transfer to")
                return
            target = ranked[-1][1]
        elif target == self._id or target not in voters:
            self._fail(rid, ErrorCode.BAD_REQUEST, f"{target} is not another voter")
            return
        self.transfer = PendingTransfer(rid, target, now + self._cfg.election_ticks)
        self._advance_transfer(self.transfer, term, now)

    def _advance_transfer(self, tr: PendingTransfer, term: int, now: int) -> None:
        rep = self._rep
        pr = rep.progress.get(tr.target)
        if now >= tr.deadline or pr is None or tr.target not in rep.membership.voters:
            self.transfer = None
            self._fail(tr.request_id, ErrorCode.TIMEOUT,
                       f"leadership did not move to {tr.target} within an election timeout")
            self._release(tr, self._id)  # we still lead: ask us again
            return
        due = tr.sent_at < 0 or now - tr.sent_at >= self._cfg.heartbeat_ticks
        if due and pr.match == rep.log.last_index:
            self._out.send(TimeoutNow(term, self._id, tr.target))
            tr.sent_at = now

    # -- what Raft calls -----------------------------------------------------------------

    def advance(self, term: int, now: int) -> bool:
        """After each step while leading; True when a CONFIG entry was appended."""
        appended = False
        if self.change is not None:
            appended = self._advance_change(self.change, now)
        if self.transfer is not None:
            self._advance_transfer(self.transfer, term, now)
        return appended

    def hold(self, request_id: str) -> None:
        """A proposal during a transfer: answered when it ends, naming whoever leads then,
        so its client goes straight to the new leader (answered at once, naming the
        target, it would reach the target before it won and wait out a retry pause)."""
        assert self.transfer is not None
        self.transfer.held.append(request_id)

    def _release(self, tr: PendingTransfer, leader: str | None) -> None:
        for rid in tr.held:
            self._out.reply(NotLeader(rid, leader))
        tr.held.clear()

    def stepped_down(self, cause: str | None, leader: str | None) -> None:
        """No longer leader (``cause``: who told us of a newer term, if anyone)."""
        tr, ch = self.transfer, self.change
        self.transfer = self.change = None
        if tr is not None:
            if tr.sent_at >= 0:
                # Handed over: a newer term after our TimeoutNow is the target's campaign,
                # though another member may tell us of it first (a voter's response).
                new_leader = leader if leader is not None else tr.target
                self._out.reply(ProposalResult(tr.request_id, 0, {"leader": new_leader}))
                self._release(tr, new_leader)
            else:
                self._out.reply(NotLeader(tr.request_id, leader))
                self._release(tr, leader)
        if ch is not None:
            self._out.reply(NotLeader(ch.request_id, leader))

    def handover_target(self) -> str | None:
        """A voter holding the leader's whole log (for a leader that removed itself)."""
        rep = self._rep
        last = rep.log.last_index
        ready = sorted(p for p, pr in rep.progress.items()
                       if pr.match == last and p in rep.membership.voters)
        return ready[0] if ready else None
