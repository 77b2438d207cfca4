"""The contract a replicated state machine fulfils, and the dedup layer wrapped around it.

``apply`` must be deterministic: every member applies the same commands in the same order
and must reach the same state and results. Results and snapshots must be plain data that
msgpack can carry (the dedup table stores results and travels inside snapshots).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol, runtime_checkable

import msgpack

from broker_agents.core.errors import ErrorCode, RemoteProtocolError


@runtime_checkable
class StateMachine(Protocol):
    def apply(self, command: Any) -> Any:
        """Apply a committed command and return its result (raise to reject it)."""

    def query(self, query: Any) -> Any:
        """Answer a read-only query against the current state."""

    def snapshot(self) -> bytes:
        """The whole state as bytes."""

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot."""


def error_result(code: ErrorCode, message: str) -> dict[str, Any]:
    """A deterministic rejection, in the wire's error shape (plain data: it is replicated)."""
    return {"error": {"code": code.value, "message": message, "details": {}}}


class Applier:
    """Applies entries through a bounded, expiring table of request id -> (index, result).

    The table is replicated state (every member builds the same one, and it is part of the
    snapshot), so a client that retries after a timeout -- even at a new leader -- gets the
    first result instead of a second application.

    Bounded two ways, both deterministic (every member evicts the same rows at the same
    entry, so apply stays deterministic): at most ``capacity`` rows, and a row expires
    once ``window`` newer log entries have been applied (0: no age limit). Wall-clock age
    would differ between members. Exactly-once therefore holds for a retry that arrives
    within ``window`` entries (and ``capacity`` requests) of its first application; at
    R commits/s that is ``min(window, capacity) / R`` seconds. A retry after that is
    applied a second time (at-least-once): clients must not retry for longer.

    Each row is packed (msgpack) once, when it is added, so a snapshot joins bytes that
    already exist instead of serialising the whole table in the event loop (100,000 rows
    took ~100 ms there; the join is a memcpy). The table holds only those packed rows,
    unpacked on a lookup: a row of live objects (a tuple holding the result) stays tracked
    by Python's garbage collector, and 100,000 of them made each full collection of a
    node scan them all -- pauses of 200-600 ms under load, long enough to lose the
    leadership. Bytes are not tracked.
    """

    __slots__ = ("_order", "_packer", "_rows", "_table", "capacity", "sm", "window")

    def __init__(self, sm: StateMachine, capacity: int = 100_000, window: int = 0) -> None:
        self.sm = sm
        self.capacity = capacity
        self.window = window
        self._table: dict[str, bytes] = {}  # request id -> its packed row
        self._order: deque[tuple[int, str]] = deque()  # (index, request id), oldest first
        self._rows: deque[bytes] = deque()  # the same rows, packed, for snapshots
        self._packer = msgpack.Packer(use_bin_type=True)

    def lookup(self, request_id: str) -> tuple[int, Any] | None:
        row = self._table.get(request_id)
        return None if row is None else _unpack_row(row)

    @property
    def dedup(self) -> dict[str, tuple[int, Any]]:
        """The table as ``{request id: (index, result)}``, oldest first (a copy)."""
        return {rid: _unpack_row(row) for rid, row in self._table.items()}

    def apply(self, index: int, command: Any, request_id: str | None) -> tuple[Any, bool]:
        """Returns (result, duplicate)."""
        if self.window and self._order:
            self._expire(index - self.window)
        if request_id is not None:
            seen = self.lookup(request_id)
            if seen is not None:
                return seen[1], True
        try:
            result = self.sm.apply(command)
        except Exception as exc:  # the SM rejected the command; deterministic everywhere
            result = error_result(ErrorCode.REJECTED, f"{type(exc).__name__}: {exc}")
        if request_id is not None:
            self._add(request_id, index, self._packer.pack([request_id, index, result]))
            if len(self._order) > self.capacity:
                self._evict_oldest()
        return result, False

    def _add(self, rid: str, index: int, row: bytes) -> None:
        self._table[rid] = row
        self._order.append((index, rid))
        self._rows.append(row)

    def _evict_oldest(self) -> None:
        _index, rid = self._order.popleft()
        self._rows.popleft()
        del self._table[rid]

    def _expire(self, upto: int) -> None:
        """Forget every row applied at or before ``upto``."""
        order = self._order
        while order and order[0][0] <= upto:
            self._evict_oldest()

    def snapshot(self) -> bytes:
        packed: bytes = msgpack.packb(
            {"sm": self.sm.snapshot(), "rows": b"".join(self._rows)}, use_bin_type=True
        )
        return packed

    def restore(self, data: bytes) -> None:
        """Accepts this snapshot format and the older one (``dedup``: a list of rows)."""
        try:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
            sm_data = obj["sm"]
            if "rows" in obj:
                unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
                unpacker.feed(obj["rows"])
                table = list(unpacker)
            else:
                table = obj["dedup"]
            rows = [(str(rid), int(idx), res) for rid, idx, res in table]
        except (ValueError, KeyError, TypeError, msgpack.ExtraData) as exc:
            raise RemoteProtocolError(ErrorCode.MALFORMED, f"bad snapshot: {exc}") from exc
        self.sm.restore(sm_data)
        self._table = {}
        self._order = deque()
        self._rows = deque()
        pack = self._packer.pack
        for rid, idx, res in rows:
            self._add(rid, idx, pack([rid, idx, res]))
        while len(self._order) > self.capacity:
            self._evict_oldest()


def _unpack_row(row: bytes) -> tuple[int, Any]:
    """``(index, result)`` of a packed ``[request id, index, result]`` row."""
    _rid, index, result = msgpack.unpackb(row, raw=False, strict_map_key=False)
    return int(index), result
