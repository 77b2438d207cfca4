"""RaftCore: one sans-IO Raft member, with the one core face of ``core/machine.py``.

    core.step(event)       # a peer Message, Propose, Read, Tick, Persisted or Forget
    ready = core.ready()   # what to persist, then send, then answer (see effects.py)

``step`` returns nothing; ``ready()`` hands back one ``Ready`` for everything stepped since
the last call. That is etcd's split (``Step``, then ``Ready``): a driver steps whatever
arrived in one event-loop turn and takes one Ready, so one fsync and one publish per peer
carry many entries, and the Ready's shape orders persist before send. Every decision is
the core's, forwarding a client's proposal to the leader included (``Redirect``,
``ForwardProposals``, ``NotLeader``: see raft.py); the driver only carries out the Ready.

This is the whole public face (etcd's ``RawNode``); the read-only properties are for
drivers, metrics and checkers. Behind it: ``Raft`` (raft.py: terms, roles, elections),
``Replication`` (replication.py: the log, commit and apply), ``ReadIndex``
(readindex.py), ``Progress`` (progress.py: flow control and quorums), ``Outbox``
(outbox.py: how a Ready is assembled).
"""

from __future__ import annotations

import random

from broker_agents.core.machine import Tick
from broker_agents.core.raft.config import InitialState, RaftConfig
from broker_agents.core.raft.effects import Ready
from broker_agents.core.raft.election import Role
from broker_agents.core.raft.events import (
    ChangeMembers,
    Forget,
    Persisted,
    Propose,
    Read,
    TransferLeadership,
)
from broker_agents.core.raft.log import RaftLog
from broker_agents.core.raft.membership import Membership
from broker_agents.core.raft.messages import (
    AppendRequest,
    AppendResponse,
    ForwardProposals,
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
from broker_agents.core.raft.raft import Raft
from broker_agents.core.raft.readindex import ReadIndex
from broker_agents.core.raft.replication import Replication
from broker_agents.core.raft.statemachine import Applier, StateMachine

RaftEvent = (
    Message | Propose | Read | Tick | Persisted | Forget | ChangeMembers | TransferLeadership
)

_PEER_MESSAGES = (  # the most frequent first: isinstance tries them in order
    AppendResponse, AppendRequest, HeartbeatResponse, Heartbeat, ForwardProposals,
    ReadIndexRequest, ReadIndexResponse, VoteRequest, VoteResponse, InstallSnapshot,
    TimeoutNow,
)


class RaftCore:
    """One member of a Raft group: step events in, take ``Ready`` batches out.

    ``Tick.now`` is ignored: timeouts count ticks (``RaftConfig``), so a driver may step
    the same ``Tick`` every time. An ``early`` Ready's ``mark`` is itself the
    ``Persisted`` event to step back once its write is durable.
    """

    __slots__ = ("_out", "_raft", "_reads", "_rep")

    def __init__(
        self,
        config: RaftConfig,
        rng: random.Random,
        state_machine: StateMachine,
        initial: InitialState | None = None,
    ) -> None:
        initial = initial or InitialState()
        self._out = Outbox(initial.hard_state)
        self._reads = ReadIndex()
        self._rep = Replication(config, initial, state_machine, self._out, self._reads)
        self._raft = Raft(config, rng, initial.hard_state, self._rep, self._reads, self._out)
        self._rep.apply_committed()

    def step(self, event: RaftEvent) -> None:
        """Take one event; what it produces waits for ``ready()``."""
        raft = self._raft
        if isinstance(event, _PEER_MESSAGES):
            raft.receive(event)
        elif isinstance(event, Propose):
            raft.propose(event)
        elif isinstance(event, Tick):
            raft.tick()
        elif isinstance(event, Persisted):
            raft.persisted(event)
        elif isinstance(event, Read):
            raft.read(event)
        elif isinstance(event, (ChangeMembers, TransferLeadership)):
            raft.request(event)
        else:
            self._rep.pending.discard(event.request_id)
            self._reads.forget(event.request_id)
        raft.after_step()

    def ready(self) -> Ready:
        """Everything produced since the last call: persist, then send, then reply (a
        leader's own appends may trail its messages: see ``Ready.early``)."""
        raft, rep, out = self._raft, self._rep, self._out
        hs = out.hard_state
        # A leader that stayed leader in its term since the last Ready only writes its
        # own appends, which may trail its messages (Ready.early).
        early = raft.role == Role.LEADER and raft.term == hs.term and raft.vote == hs.vote
        if not early:
            rep.self_match = rep.log.last_index  # durable before anything leaves
        raft.flush()
        if not early:
            rep.self_match = rep.log.last_index
        return out.take(raft.term, raft.vote, rep.commit, early, rep.log.last_index)

    # -- observers (read-only) ---------------------------------------------------------

    @property
    def id(self) -> str:
        return self._raft.id

    @property
    def role(self) -> Role:
        return self._raft.role

    @property
    def leader(self) -> str | None:
        return self._raft.leader

    @property
    def term(self) -> int:
        return self._raft.term

    @property
    def elections(self) -> int:
        """Elections this member started (pre-votes not counted)."""
        return self._raft.elections

    @property
    def snapshot_index(self) -> int:
        """The last index this member's latest snapshot covers (0: none yet). Its log may
        still hold entries below it: the catch-up window (``RaftConfig.snapshot_trail``)."""
        return self._rep.snapshot_index

    @property
    def snapshots_sent(self) -> int:
        """Snapshots this member sent to followers its log no longer reached."""
        return self._rep.snapshots_sent

    @property
    def snapshots_installed(self) -> int:
        """Snapshots from a leader that replaced this member's log."""
        return self._rep.snapshots_installed

    @property
    def quorum(self) -> int:
        """The active configuration's quorum (of its voters)."""
        return self._rep.quorum

    @property
    def membership(self) -> Membership:
        """The active configuration: the latest in the log, committed or not."""
        return self._rep.membership

    @property
    def voters(self) -> frozenset[str]:
        return self._rep.membership.voters

    @property
    def learners(self) -> frozenset[str]:
        return self._rep.membership.learners

    @property
    def transferring(self) -> str | None:
        """The target of a leadership transfer in progress (leader only)."""
        transfer = self._raft.reconf.transfer
        return transfer.target if transfer is not None else None

    @property
    def commit(self) -> int:
        return self._rep.commit

    @property
    def applied(self) -> int:
        return self._rep.applied

    @property
    def log(self) -> RaftLog:
        """The log as this member holds it (for checkers and metrics: do not modify)."""
        return self._rep.log

    @property
    def applier(self) -> Applier:
        """The state machine behind its dedup table (for checkers: do not modify)."""
        return self._rep.applier
