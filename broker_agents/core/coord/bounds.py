"""Upper bounds on what one coordination request may ask for.

The request models allow generous values (a one-hour barrier, ten thousand
participants); a deployment bounds them lower, so that no single request can hold a
coordinator's slots, a lease or a PBFT group for long, or fan out to everyone. A request
past a bound is a ``validation_error`` naming each field, like any invalid request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from broker_agents.core.errors import BrokerError, ErrorCode


@dataclass(frozen=True, slots=True)
class Bounds:
    max_participants: int = 1000
    """Participants per request, named or found by capability."""
    max_barrier_timeout_ms: int = 600_000
    max_lease_ttl_ms: int = 600_000
    """Locks and leader leases."""
    max_lock_wait_ms: int = 60_000
    max_pbft_timeout_ms: int = 60_000
    """A PBFT request's deadline, which is also its group's lifetime."""


def _limits(bounds: Bounds, protocol: str) -> dict[str, int]:
    """Field -> maximum, for the protocol's own numbers."""
    if protocol == "barrier":
        return {"timeout_ms": bounds.max_barrier_timeout_ms}
    if protocol == "lock":
        return {"ttl_ms": bounds.max_lease_ttl_ms, "wait_ms": bounds.max_lock_wait_ms}
    if protocol == "leader":
        return {"ttl_ms": bounds.max_lease_ttl_ms}
    if protocol == "pbft":
        return {"timeout_ms": bounds.max_pbft_timeout_ms}
    return {}


def violations(bounds: Bounds, protocol: str, request: Any) -> list[dict[str, str]]:
    """``[{"field", "message"}]`` for every bound ``request`` exceeds (none: empty)."""
    out = []
    for name, most in _limits(bounds, protocol).items():
        value = getattr(request, name, None)
        if isinstance(value, int) and value > most:
            out.append({"field": name, "message": f"at most {most} here, got {value}"})
    participants = getattr(request, "participants", None)
    if isinstance(participants, Sequence) and len(participants) > bounds.max_participants:
        out.append({"field": "participants", "message": f"at most "
                    f"{bounds.max_participants} participants here, got {len(participants)}"})
    return out


def check(bounds: Bounds, protocol: str, request: Any) -> None:
    """Raise ``validation_error`` naming every field past its bound."""
    fields = violations(bounds, protocol, request)
    if fields:
        names = ", ".join(f["field"] for f in fields)
        raise BrokerError(ErrorCode.VALIDATION, f"request past this coordinator's bounds: "
                          f"{names}", {"fields": fields})


def check_group(bounds: Bounds, found: int) -> None:
    """A group found by capability is bounded like a named one."""
    if found > bounds.max_participants:
        raise BrokerError(ErrorCode.VALIDATION, "capability matches too many participants",
                          {"fields": [{"field": "capability", "message": f"matches {found} "
                                       f"agents; at most {bounds.max_participants} here"}]})
