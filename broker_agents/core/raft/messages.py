"""Raft log records and peer messages.

Plain slotted dataclasses rather than pydantic models: the leader builds and the followers
parse thousands of these per second, and validation happens once, at the wire boundary
(``wire.py``). Commands are plain data (what msgpack/JSON can carry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from broker_agents.core.raft.membership import Membership


class EntryKind(IntEnum):
    NORMAL = 0
    NOOP = 1  # appended by every new leader so it can commit (and serve reads) in its term
    CONFIG = 2  # command: {"voters": [ids], "learners": [ids]} (membership.py)


@dataclass(slots=True, frozen=True)
class Entry:
    term: int
    index: int
    command: Any = None
    request_id: str | None = None
    kind: EntryKind = EntryKind.NORMAL


@dataclass(slots=True, frozen=True)
class Snapshot:
    """State-machine image (incl. the dedup table) as of ``index``/``term``, and the
    configuration in force there (None: a snapshot from before membership changes; the
    bootstrap configuration applies)."""

    index: int
    term: int
    data: bytes
    membership: Membership | None = None


@dataclass(slots=True, frozen=True)
class HardState:
    """What must survive a crash besides the log: term and vote (commit is an optimisation)."""

    term: int = 0
    vote: str | None = None
    commit: int = 0


@dataclass(slots=True, frozen=True)
class VoteRequest:
    term: int
    src: str
    dst: str
    last_index: int
    last_term: int
    pre_vote: bool = False
    transfer: bool = False  # sent on a TimeoutNow: granted even inside a leader's lease


@dataclass(slots=True, frozen=True)
class VoteResponse:
    term: int
    src: str
    dst: str
    granted: bool
    pre_vote: bool = False


@dataclass(slots=True, frozen=True)
class AppendRequest:
    term: int
    src: str
    dst: str
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int


@dataclass(slots=True, frozen=True)
class AppendResponse:
    """``index`` is the match index on success, or the rejected ``prev_index``.

    On rejection ``hint_index``/``hint_term`` let the leader skip a whole conflicting term
    at once (fast backtracking) instead of probing one index per round trip.
    """

    term: int
    src: str
    dst: str
    success: bool
    index: int
    hint_index: int = 0
    hint_term: int = 0


@dataclass(slots=True, frozen=True)
class Heartbeat:
    """``ctx`` is the leader's read-index sequence number being confirmed by this round."""

    term: int
    src: str
    dst: str
    commit: int
    ctx: int = 0


@dataclass(slots=True, frozen=True)
class HeartbeatResponse:
    term: int
    src: str
    dst: str
    ctx: int = 0


@dataclass(slots=True, frozen=True)
class InstallSnapshot:
    term: int
    src: str
    dst: str
    snapshot: Snapshot


@dataclass(slots=True, frozen=True)
class ForwardProposals:
    """A follower hands client proposals (command, request_id) to the leader."""

    term: int
    src: str
    dst: str
    items: tuple[tuple[Any, str], ...] = field(default_factory=tuple)


@dataclass(slots=True, frozen=True)
class ReadIndexRequest:
    """A follower asks the leader for a confirmed read index for these request ids."""

    term: int
    src: str
    dst: str
    request_ids: tuple[str, ...]


@dataclass(slots=True, frozen=True)
class ReadIndexResponse:
    """``index`` is 0 when the leader could not confirm (the follower then fails the reads)."""

    term: int
    src: str
    dst: str
    request_ids: tuple[str, ...]
    index: int


@dataclass(slots=True, frozen=True)
class TimeoutNow:
    """The leader hands over leadership (thesis §3.10): campaign at once, no pre-vote."""

    term: int
    src: str
    dst: str


Message = (
    VoteRequest | VoteResponse | AppendRequest | AppendResponse | Heartbeat
    | HeartbeatResponse | InstallSnapshot | ForwardProposals | ReadIndexRequest
    | ReadIndexResponse | TimeoutNow
)
