"""The in-memory view of a member's log: a snapshot base plus the entries after it.

Entry ``i`` lives at ``entries[i - base_index - 1]``; everything up to ``base_index`` has
been folded into ``snapshot`` and only its term is still known. ``configs`` follows the
configurations the log holds (membership.py): every mutation below keeps it current.
"""

from __future__ import annotations

from collections.abc import Sequence

from broker_agents.core.errors import ErrorCode, LocalProtocolError
from broker_agents.core.raft.membership import ConfigTrack, Membership
from broker_agents.core.raft.messages import Entry, EntryKind, Snapshot

_CONFIG = EntryKind.CONFIG


class RaftLog:
    __slots__ = ("base_index", "base_term", "configs", "entries", "snapshot")

    def __init__(self, snapshot: Snapshot | None = None, entries: Sequence[Entry] = (),
                 bootstrap: Membership | None = None) -> None:
        self.snapshot = snapshot
        self.base_index = snapshot.index if snapshot else 0
        self.base_term = snapshot.term if snapshot else 0
        self.entries: list[Entry] = list(entries)
        self.configs = ConfigTrack(bootstrap or Membership(frozenset()),
                                   snapshot.membership if snapshot else None)
        for offset, entry in enumerate(self.entries):
            if entry.index != self.base_index + 1 + offset:
                raise LocalProtocolError(ErrorCode.INTERNAL, "log entries are not contiguous")
            if entry.kind == _CONFIG:
                self.configs.add(entry.index, entry.command)

    def append(self, entry: Entry) -> None:
        """The leader's own append (its index is ``last_index + 1``)."""
        self.entries.append(entry)
        if entry.kind == _CONFIG:
            self.configs.add(entry.index, entry.command)

    @property
    def last_index(self) -> int:
        return self.base_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.base_term

    def term_at(self, index: int) -> int | None:
        """The term of entry ``index``; None when it is compacted away or beyond the end."""
        if index == self.base_index:
            return self.base_term
        if index < self.base_index or index > self.last_index:
            return None
        return self.entries[index - self.base_index - 1].term

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.base_index - 1]

    def matches(self, index: int, term: int) -> bool:
        return self.term_at(index) == term

    def slice(self, lo: int, hi: int, max_count: int) -> tuple[Entry, ...]:
        """Entries lo..hi inclusive (at most ``max_count``); lo must be > base_index."""
        hi = min(hi, self.last_index, lo + max_count - 1)
        if lo > hi:
            return ()
        start = lo - self.base_index - 1
        return tuple(self.entries[start : start + hi - lo + 1])

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft's election restriction: is a candidate's log at least as new as ours?"""
        mine = self.last_term
        return last_term > mine or (last_term == mine and last_index >= self.last_index)

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest index <= ``index`` whose term is <= ``term`` (fast backtracking).

        Every entry between the result and ``index`` has a term > ``term`` and so cannot
        match the other side's log.
        """
        index = min(index, self.last_index)
        while index > self.base_index:
            t = self.entries[index - self.base_index - 1].term
            if t <= term:
                return index
            index -= 1
        return index

    def merge(
        self, entries: Sequence[Entry], commit: int
    ) -> tuple[int | None, Sequence[Entry]]:
        """Follower side: add ``entries`` (already known to follow a matching entry),
        skipping those we already have and truncating from the first conflict. Returns the
        truncation point (first index removed, or None) and the entries actually added.

        Entries at or below ``commit`` are never truncated: that would break Raft's safety.
        """
        truncated: int | None = None
        new_from = len(entries)
        for k, entry in enumerate(entries):
            if entry.index <= self.base_index:
                continue
            mine = self.term_at(entry.index)
            if mine is None:
                new_from = k
                break
            if mine != entry.term:
                if entry.index <= commit:
                    raise LocalProtocolError(
                        ErrorCode.INTERNAL, f"refusing to truncate committed entry {entry.index}"
                    )
                del self.entries[entry.index - self.base_index - 1 :]
                self.configs.truncate(entry.index)
                truncated = entry.index
                new_from = k
                break
        added = entries[new_from:]
        if added:
            self.entries.extend(added)
            for entry in added:
                if entry.kind == _CONFIG:
                    self.configs.add(entry.index, entry.command)
        return truncated, added

    def compact(self, snapshot: Snapshot) -> None:
        """Fold the entries ``snapshot`` covers (the last must be held) into the base."""
        index = snapshot.index
        if index <= self.base_index:
            return
        if self.term_at(index) != snapshot.term:
            raise LocalProtocolError(ErrorCode.INTERNAL, f"cannot compact to index {index}")
        del self.entries[: index - self.base_index]
        self.configs.compact(index, snapshot.membership)
        self.base_index = index
        self.base_term = snapshot.term
        self.snapshot = snapshot

    def reset(self, snapshot: Snapshot) -> None:
        """Replace everything with ``snapshot`` (installed from the leader)."""
        self.entries = []
        self.configs.reset(snapshot.membership)
        self.base_index = snapshot.index
        self.base_term = snapshot.term
        self.snapshot = snapshot
