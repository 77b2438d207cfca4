"""In-memory Raft storage: the reference semantics of applying ``PersistOp`` records.

Used by tests and simulations (a "crash" keeps exactly what was saved here) and as the
base of ``FileStorage``, which replays the same records from disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from broker_agents.core.raft import (
    AppendOp,
    Entry,
    HardState,
    HardStateOp,
    InitialState,
    PersistOp,
    Snapshot,
    SnapshotOp,
    TruncateOp,
)


class Storage(Protocol):
    def load(self) -> InitialState:
        """What survived: hard state, latest snapshot, entries after it."""

    def save(self, ops: Sequence[PersistOp]) -> None:
        """Apply ``ops`` in order; durable when this returns."""

    def close(self) -> None: ...


class MemoryStorage:
    """Keeps the stable state in memory; ``load`` returns a copy."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.saves = 0

    @property
    def base_index(self) -> int:
        return self.snapshot.index if self.snapshot else 0

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.base_index

    def load(self) -> InitialState:
        return InitialState(self.hard_state, self.snapshot, list(self.entries))

    def save(self, ops: Sequence[PersistOp]) -> None:
        for op in ops:
            self.apply(op)
        self.saves += 1

    def apply(self, op: PersistOp) -> None:
        if isinstance(op, AppendOp):
            if not op.entries:
                return
            self.truncate(op.entries[0].index)
            if op.entries[0].index != self.last_index + 1:
                raise ValueError(
                    f"append at {op.entries[0].index} leaves a gap after {self.last_index}"
                )
            self.entries.extend(op.entries)
        elif isinstance(op, TruncateOp):
            self.truncate(op.from_index)
        elif isinstance(op, SnapshotOp):
            snap = op.snapshot
            if op.reset_log:
                self.entries = []
            else:
                self.entries = [e for e in self.entries if e.index > snap.index]
            self.snapshot = snap
        elif isinstance(op, HardStateOp):
            self.hard_state = op.state

    def truncate(self, from_index: int) -> None:
        keep = from_index - self.base_index - 1
        if keep < len(self.entries):
            del self.entries[max(keep, 0):]

    def close(self) -> None:
        pass
