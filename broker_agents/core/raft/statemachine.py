"""The contract a replicated state machine fulfils, and the dedup layer wrapped around it.

``apply`` must be deterministic: every member applies the same commands in the same order
and must reach the same state and results. Results and snapshots must be plain data that
msgpack can carry (the dedup table stores results and travels inside snapshots).
"""

from __future__ import annotations

from collections import OrderedDict
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
    """Applies entries through a bounded table of request id -> (index, result).

    The table is replicated state (every member builds the same one, and it is part of the
    snapshot), so a client that retries after a timeout -- even at a new leader -- gets the
    first result instead of a second application. Capacity bounds memory; eviction is
    oldest-first and therefore identical on every member.
    """

    __slots__ = ("capacity", "dedup", "sm")

    def __init__(self, sm: StateMachine, capacity: int = 100_000) -> None:
        self.sm = sm
        self.capacity = capacity
        self.dedup: OrderedDict[str, tuple[int, Any]] = OrderedDict()

    def lookup(self, request_id: str) -> tuple[int, Any] | None:
        return self.dedup.get(request_id)

    def apply(self, index: int, command: Any, request_id: str | None) -> tuple[Any, bool]:
        """Returns (result, duplicate)."""
        if request_id is not None:
            seen = self.dedup.get(request_id)
            if seen is not None:
                return seen[1], True
        try:
            result = self.sm.apply(command)
        except Exception as exc:  # the SM rejected the command; deterministic everywhere
            result = error_result(ErrorCode.REJECTED, f"{type(exc).__name__}: {exc}")
        if request_id is not None:
            self.dedup[request_id] = (index, result)
            if len(self.dedup) > self.capacity:
                self.dedup.popitem(last=False)
        return result, False

    def snapshot(self) -> bytes:
        table = [[rid, idx, res] for rid, (idx, res) in self.dedup.items()]
        packed: bytes = msgpack.packb(
            {"sm": self.sm.snapshot(), "dedup": table}, use_bin_type=True
        )
        return packed

    def restore(self, data: bytes) -> None:
        try:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
            sm_data = obj["sm"]
            table = obj["dedup"]
            dedup: OrderedDict[str, tuple[int, Any]] = OrderedDict(
                (str(rid), (int(idx), res)) for rid, idx, res in table
            )
        except (ValueError, KeyError, TypeError, msgpack.ExtraData) as exc:
            raise RemoteProtocolError(ErrorCode.MALFORMED, f"bad snapshot: {exc}") from exc
        self.sm.restore(sm_data)
        self.dedup = dedup
