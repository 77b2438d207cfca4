"""Static configuration of one member, and what it recovers from storage at start."""

from __future__ import annotations

from dataclasses import dataclass, field

from broker_agents.core.errors import ErrorCode, LocalProtocolError
from broker_agents.core.raft.membership import Membership
from broker_agents.core.raft.messages import Entry, HardState, Snapshot

DEFAULT_MAX_TERM_JUMP = 1 << 16
DEFAULT_SNAPSHOT_TRAIL = 4096
"""Twice what a pipelined follower may have in flight by default (4 appends of 512)."""


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Timeouts are in ticks; the driver decides how long a tick is.

    The election timeout is drawn uniformly from [election_ticks, 2 * election_ticks) so
    that members rarely time out together and split the vote; in a group of at most 3
    voters with pre-vote, from [election_ticks, 1.5 * election_ticks) (at least two
    values). There a leader's death leaves two followers, and if they time out together
    the lower id wins (a pre-candidate refuses a higher id's pre-vote, ``election.py``),
    so the wider spread buys nothing, while a failover waits for the earlier of the two
    timeouts: with 10-19 ticks of 20 ms, 4 of 15 kills took ~370 ms. Among more
    followers, two may win their pre-votes at once and split the real vote, so the
    spread stays. The shortest timeout, which decides how long a busy follower may miss
    heartbeats, is the same either way.

    ``max_term_jump``: a peer message whose term is further ahead of ours than this is
    refused, so one forged message cannot push the group's term out of reach (a term only
    grows by one per election, and pre-vote keeps failed elections from growing it; a
    member that really missed this many elections needs the limit raised to rejoin).

    ``members`` is the BOOTSTRAP configuration (all voters): it applies only until the log
    or a snapshot holds a configuration of its own (membership.py). ``member_id`` need not
    be among them: such a member is a joiner that never campaigns until a configuration
    makes it a voter. ``catchup_rounds``: a member being added has this many election
    timeouts (``catchup_rounds * election_ticks`` ticks) to catch up as a learner before
    the leader abandons the change.

    ``snapshot_trail``: after a snapshot, the entries it covers stay in the log until
    ``applied`` is this many entries past it (never longer than the next snapshot), so a
    follower that trails by less still catches up with appends instead of a whole
    snapshot. 0: the log is compacted at once (the textbook behaviour).
    """

    member_id: str
    members: tuple[str, ...]
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    pre_vote: bool = True
    check_quorum: bool = True
    forward_proposals: bool = True
    max_append_entries: int = 512
    max_inflight: int = 32
    snapshot_threshold: int = 10_000
    dedup_capacity: int = 100_000
    dedup_window: int = 0
    max_term_jump: int = DEFAULT_MAX_TERM_JUMP
    catchup_rounds: int = 10
    snapshot_trail: int = DEFAULT_SNAPSHOT_TRAIL

    def __post_init__(self) -> None:
        if not self.members or not self.member_id:
            raise LocalProtocolError(ErrorCode.BAD_REQUEST, "need a member id and members")
        if len(set(self.members)) != len(self.members):
            raise LocalProtocolError(ErrorCode.BAD_REQUEST, "members must be distinct")
        if self.heartbeat_ticks < 1 or self.election_ticks <= self.heartbeat_ticks:
            raise LocalProtocolError(
                ErrorCode.BAD_REQUEST, "need 1 <= heartbeat_ticks < election_ticks"
            )
        if min(self.max_append_entries, self.max_inflight, self.snapshot_threshold,
               self.max_term_jump, self.dedup_capacity, self.catchup_rounds) < 1 \
                or self.dedup_window < 0 or self.snapshot_trail < 0:
            raise LocalProtocolError(ErrorCode.BAD_REQUEST, "limits must be positive")

    @property
    def quorum(self) -> int:
        """The bootstrap configuration's quorum (``RaftCore.quorum`` is the active one)."""
        return len(self.members) // 2 + 1

    @property
    def bootstrap(self) -> Membership:
        return Membership(frozenset(self.members))


@dataclass(slots=True)
class InitialState:
    """What storage recovered: hard state, latest snapshot, and the entries after it."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
