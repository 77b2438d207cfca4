"""What a driver feeds ``RaftCore.step``, besides peer messages and ``Tick``.

Client requests (``Propose``, ``Read``), the storage's word that a write is durable
(``Persisted``) and a waiter that gave up (``Forget``). Each is a small slotted record,
treated as immutable but not declared ``frozen``: a frozen dataclass costs three times as
much to build, and every client request builds one on the commit path. A driver may reuse
one ``Tick`` for every tick (Raft counts ticks and ignores ``now``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Propose:
    """Replicate ``command``; a ``ProposalResult`` (or ``NotLeader``/``Redirect``) follows.

    ``relayable``: the client can be answered by whichever member ends up holding the
    request (a NATS request with its own reply subject), so a follower has the driver
    relay the request itself to the leader (``Redirect``), which answers the client
    directly. Otherwise (an in-process caller) the follower forwards the command to the
    leader and answers once it applies the entry. ``hops``: how often the request was
    relayed already (a stale leader hint can bounce it; the core caps it).
    """

    command: Any
    request_id: str
    relayable: bool = False
    hops: int = 0


@dataclass(slots=True)
class Read:
    """A linearizable read; a ``ReadResult`` (or ``NotLeader``) follows."""

    query: Any
    request_id: str


@dataclass(slots=True)
class Persisted:
    """An ``early`` Ready's write is durable: the leader may count itself for entries up
    to ``index`` of ``term``. The core hands it out as ``Ready.mark``; the driver steps
    that same record back once the write is on disk."""

    term: int
    index: int


@dataclass(slots=True)
class Forget:
    """The driver gave up waiting for ``request_id`` (timeout): stop tracking it."""

    request_id: str


@dataclass(slots=True)
class ChangeMembers:
    """Add (as a learner, promoted to voter once caught up) or remove one member; leader
    only. Answered ``ProposalResult(request_id, index, {"voters", "learners"})`` once the
    final CONFIG entry commits, or ``Failed``/``NotLeader`` (see reconfig.py)."""

    request_id: str
    action: str  # "add" or "remove"
    member: str


@dataclass(slots=True)
class TransferLeadership:
    """Hand leadership to ``target`` (None: the most up-to-date other voter); leader only.
    Answered ``ProposalResult(request_id, 0, {"leader": target})`` or ``Failed``."""

    request_id: str
    target: str | None = None
