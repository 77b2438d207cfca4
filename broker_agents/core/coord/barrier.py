"""Barrier: everyone is released when the last participant arrives, or all at timeout.

Pure and tick-driven, with the one core face (``core.machine``):
``step(Arrive | Tick) -> [Release]``, one ``Release`` per participant to answer. Time is
``Tick.now``, ticks since the barrier was created (the driver counts milliseconds). On
timeout everyone who arrived is released with a ``timeout`` error naming who never
arrived; later arrivals get the same outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from broker_agents.core.coord.models import BarrierResult
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.machine import Tick


@dataclass(frozen=True, slots=True)
class Arrive:
    """``participant`` reached the barrier (arriving again changes nothing)."""

    participant: str


@dataclass(frozen=True, slots=True)
class Release:
    """Answer ``participant``'s arrival with ``result``."""

    participant: str
    result: BarrierResult


class Barrier:
    def __init__(self, barrier_id: str, participants: Sequence[str], timeout_ticks: int) -> None:
        if not participants or len(set(participants)) != len(participants):
            raise BrokerError(ErrorCode.BAD_REQUEST, "participants must be distinct, not empty")
        if timeout_ticks < 1:
            raise BrokerError(ErrorCode.BAD_REQUEST, "timeout_ticks must be >= 1")
        self._id = barrier_id
        self._participants = tuple(participants)
        self._deadline = timeout_ticks
        self._arrived: list[str] = []
        self._result: BarrierResult | None = None

    @property
    def arrived(self) -> list[str]:
        """Who arrived so far, in arrival order."""
        return list(self._arrived)

    @property
    def result(self) -> BarrierResult | None:
        """The outcome once released (by the last arrival or the deadline), else None."""
        return self._result

    def step(self, event: Arrive | Tick) -> list[Release]:
        if isinstance(event, Arrive):
            return self._arrive(event.participant)
        if self._result is None and event.now >= self._deadline:
            return self._release(complete=False)
        return []

    def _arrive(self, participant: str) -> list[Release]:
        """Record an arrival (idempotent). Strangers get a ``bad_request`` error."""
        if participant not in self._participants:
            raise BrokerError(
                ErrorCode.BAD_REQUEST, f"{participant} is not a participant of {self._id}",
                {"participant": participant},
            )
        if self._result is not None:
            return [Release(participant, self._result)]
        if participant not in self._arrived:
            self._arrived.append(participant)
        if len(self._arrived) == len(self._participants):
            return self._release(complete=True)
        return []

    def _release(self, *, complete: bool) -> list[Release]:
        missing = [p for p in self._participants if p not in self._arrived]
        error = None
        if not complete:
            error = BrokerError(
                ErrorCode.TIMEOUT,
                f"barrier {self._id} timed out; never arrived: {', '.join(missing)}",
                {"missing": missing},
            ).to_payload()
        self._result = BarrierResult(
            barrier_id=self._id, released=complete, arrived=list(self._arrived),
            missing=missing, error=error,
        )
        return [Release(p, self._result) for p in self._arrived]
