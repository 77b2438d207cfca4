"""What a core hands back to its driver: a ``Ready`` record.

The driver's contract, in order: (1) apply ``persist`` to stable storage, in order, and make
it durable (fsync), after every earlier write; (2) send ``messages``; (3) deliver
``replies``. Sending before the storage is durable could let a member vote twice or
acknowledge an entry it then forgets.

One exception (Raft thesis 10.2.1): when ``early`` is set, the Ready comes from a leader
that stayed leader in the same term since its last Ready; ``persist`` then holds only its
own new entries (plus the advisory commit index or a compaction snapshot), and the driver
may send ``messages`` and deliver ``replies`` *before* that write is durable, so the
leader's fsync overlaps replication. The leader counts itself toward the commit majority
only for what is durable: once the write is on disk the driver steps
``ready.mark`` (a ``Persisted`` event) back into the core. Writes stay in order: a Ready
that is not ``early`` waits until every earlier write is durable before sending anything.

``replies`` answer client requests; a ``Redirect`` among them tells the driver to relay a
relayable proposal to the leader instead of answering it here. ``refused`` lists the peer
messages this member would not act on (a forgery or a confused peer): the driver counts
and logs them; nobody is answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from broker_agents.core.errors import ErrorCode
from broker_agents.core.raft.events import Persisted
from broker_agents.core.raft.messages import Entry, HardState, Message, Snapshot


@dataclass(slots=True, frozen=True)
class AppendOp:
    """Append entries; they directly follow the stable log (after any ``TruncateOp``)."""

    entries: tuple[Entry, ...]


@dataclass(slots=True, frozen=True)
class TruncateOp:
    """Delete every stable entry with index >= ``from_index`` (a follower's conflict)."""

    from_index: int


@dataclass(slots=True, frozen=True)
class SnapshotOp:
    """Store the snapshot. ``reset_log``: drop every entry (installed from the leader);
    otherwise drop only the entries it covers (local compaction)."""

    snapshot: Snapshot
    reset_log: bool


@dataclass(slots=True, frozen=True)
class HardStateOp:
    state: HardState


PersistOp = AppendOp | TruncateOp | SnapshotOp | HardStateOp


@dataclass(slots=True, frozen=True)
class ProposalResult:
    """The proposal was committed at ``index`` and applied; ``result`` is what apply returned
    (or, for a retried request id, what the first application returned)."""

    request_id: str
    index: int
    result: Any


@dataclass(slots=True, frozen=True)
class NotLeader:
    """This member cannot take the request; ``leader`` is the best hint it has (or None)."""

    request_id: str
    leader: str | None


@dataclass(slots=True, frozen=True)
class ReadResult:
    """A linearizable read, evaluated on the state machine as of ``index``."""

    request_id: str
    index: int
    result: Any


@dataclass(slots=True, frozen=True)
class Failed:
    """The request failed for a reason other than leadership (e.g. the query raised)."""

    request_id: str
    code: ErrorCode
    message: str


@dataclass(slots=True, frozen=True)
class Redirect:
    """Relay the (relayable) proposal to ``leader``, marked as relayed ``hops`` times, with
    the client's reply subject: the leader answers the client. Not an answer itself."""

    request_id: str
    leader: str
    hops: int


Answer = ProposalResult | NotLeader | ReadResult | Failed
"""What the client who asked is told."""

Reply = Answer | Redirect


@dataclass(slots=True, frozen=True)
class Applied:
    """An entry this member just applied (for observers and checkers)."""

    index: int
    term: int
    request_id: str | None
    result: Any
    duplicate: bool


class RefusalReason(StrEnum):
    """Why a peer message was refused: a small fixed set (a metric label)."""

    NOT_MEMBER = "not_member"  # the sender is not a configured member, or claims to be us
    WRONG_DESTINATION = "wrong_destination"  # addressed to another member
    TERM_JUMP = "term_jump"  # a term further ahead of ours than RaftConfig.max_term_jump
    BEYOND_LOG = "beyond_log"  # acknowledges an index (or read round) we never sent
    NOT_LEADER = "not_leader"  # a TimeoutNow from a member that is not our leader
    # found by the driver before the core sees the message:
    MALFORMED = "malformed"  # not a wire message at all
    NUMBER_OUT_OF_RANGE = "number_out_of_range"  # a term or index past wire.MAX_WIRE_INT
    INVALID_COMMAND = "invalid_command"  # a forwarded command that cannot be stored


@dataclass(slots=True, frozen=True)
class Refused:
    """A peer message this member did not act on: who it claimed to be from, and why."""

    src: str
    reason: RefusalReason
    term: int


@dataclass(slots=True)
class Ready:
    persist: list[PersistOp] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    applied: list[Applied] = field(default_factory=list)
    early: bool = False  # may send/reply before persist (and earlier writes) are durable
    mark: Persisted | None = None  # early writes: step it back once they are durable
    refused: list[Refused] = field(default_factory=list)  # count and log; nobody is told

    def __bool__(self) -> bool:
        return bool(self.persist or self.messages or self.replies or self.applied
                    or self.refused)
