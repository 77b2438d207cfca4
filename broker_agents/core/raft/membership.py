"""A Raft group's configuration: which members vote, and which only learn.

Membership changes use the SINGLE-SERVER method of the Raft thesis (§4.1-4.4), not joint
consensus: adding or removing one voter at a time means any majority of the old
configuration overlaps any majority of the new one, so no step needs two quorums at once.
One change at a time is simpler to prove and to simulate, and every change we need is a
sequence of them (grow 3 -> 5 is two adds; replace a dead member is add the new one, then
remove the dead one). A member being added first joins as a LEARNER (receives the log or
a snapshot, never counted in any quorum) and becomes a voter only once it has caught up,
so adding a member never leaves the group waiting on an empty log to commit.

A member's ACTIVE configuration is the latest CONFIG entry in its log, committed or not
(thesis §4.1), else the membership its snapshot recorded, else the bootstrap
``RaftConfig.members`` (all voters). ``ConfigTrack`` follows that through appends,
truncations and snapshots; ``RaftLog`` owns one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from broker_agents.core.errors import ErrorCode, LocalProtocolError

MAX_MEMBERS = 64
"""More members than any Raft group should have: bounds what a peer's CONFIG may carry."""


@dataclass(frozen=True, slots=True)
class Membership:
    voters: frozenset[str]
    learners: frozenset[str] = frozenset()

    @property
    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    @property
    def members(self) -> frozenset[str]:
        return self.voters | self.learners

    def to_command(self) -> dict[str, list[str]]:
        """The plain-data form a CONFIG entry carries (sorted: deterministic bytes)."""
        return {"voters": sorted(self.voters), "learners": sorted(self.learners)}

    @classmethod
    def of(cls, voters: Iterable[str], learners: Iterable[str] = ()) -> Membership:
        return cls(frozenset(voters), frozenset(learners))

    @classmethod
    def from_command(cls, data: Any) -> Membership:
        """Parse a CONFIG entry's command; ``LocalProtocolError(BAD_REQUEST)`` if it is not
        ``{"voters": [ids], "learners": [ids]}`` with at least one voter, distinct ids."""
        def bad(why: str) -> LocalProtocolError:
            return LocalProtocolError(ErrorCode.BAD_REQUEST, f"bad membership: {why}")

        if not isinstance(data, dict) or set(data) != {"voters", "learners"}:
            raise bad("expected {'voters': [...], 'learners': [...]}")
        lists: list[list[str]] = []
        for key in ("voters", "learners"):
            ids = data[key]
            if not isinstance(ids, (list, tuple)) or len(ids) > MAX_MEMBERS:
                raise bad(f"{key} must be a list of at most {MAX_MEMBERS} ids")
            if not all(type(i) is str and i for i in ids):
                raise bad(f"{key} must be non-empty strings")
            lists.append(list(ids))
        voters, learners = frozenset(lists[0]), frozenset(lists[1])
        if len(voters) != len(lists[0]) or len(learners) != len(lists[1]):
            raise bad("ids must be distinct")
        if voters & learners:
            raise bad("a member cannot be both voter and learner")
        if not voters:
            raise bad("at least one voter")
        return cls(voters, learners)


class ConfigTrack:
    """The configurations a log holds: the one at its base (snapshot or bootstrap) and
    one per CONFIG entry after it. ``version`` grows on every change of the active one."""

    __slots__ = ("base", "bootstrap", "entries", "version")

    def __init__(self, bootstrap: Membership, base: Membership | None) -> None:
        self.bootstrap = bootstrap
        self.base = base or bootstrap
        self.entries: list[tuple[int, Membership]] = []  # (index, membership), ascending
        self.version = 0

    @property
    def active(self) -> Membership:
        return self.entries[-1][1] if self.entries else self.base

    @property
    def last_index(self) -> int:
        """Index of the latest CONFIG entry in the log (0: none after the base)."""
        return self.entries[-1][0] if self.entries else 0

    def at(self, index: int) -> Membership:
        """The configuration in force at ``index`` (the latest one at or before it)."""
        found = self.base
        for at, m in self.entries:
            if at > index:
                break
            found = m
        return found

    def add(self, index: int, command: Any) -> None:
        self.entries.append((index, Membership.from_command(command)))
        self.version += 1

    def truncate(self, from_index: int) -> None:
        """Entries from ``from_index`` on are gone: the configuration before them is back."""
        if self.entries and self.entries[-1][0] >= from_index:
            self.entries = [(i, m) for i, m in self.entries if i < from_index]
            self.version += 1

    def compact(self, index: int, membership: Membership | None) -> None:
        """Entries up to ``index`` are folded into a snapshot."""
        self.base = membership or self.at(index)
        self.entries = [(i, m) for i, m in self.entries if i > index]

    def reset(self, membership: Membership | None) -> None:
        """The whole log was replaced by a snapshot."""
        self.base = membership or self.bootstrap
        self.entries = []
        self.version += 1
