"""Barrier: everyone is released when the last participant arrives, or all at timeout.

Pure and tick-driven. ``arrive`` and ``tick`` return ``Release`` effects, one per
participant to answer. On timeout everyone who arrived is released with a ``timeout``
error naming who never arrived; later arrivals get the same outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from broker_agents.core.coord.models_more import BarrierResult
from broker_agents.core.errors import BrokerError, ErrorCode


@dataclass(frozen=True)
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
        self.barrier_id = barrier_id
        self.participants = tuple(participants)
        self.deadline = timeout_ticks
        self.now = 0
        self.arrived: list[str] = []
        self.result: BarrierResult | None = None

    def arrive(self, participant: str) -> list[Release]:
        """Record an arrival (idempotent). Strangers get a ``bad_request`` error."""
        if participant not in self.participants:
            raise BrokerError(
                ErrorCode.BAD_REQUEST, f"{participant} is not a participant of {self.barrier_id}",
                {"participant": participant},
            )
        if self.result is not None:
            return [Release(participant, self.result)]
        if participant not in self.arrived:
            self.arrived.append(participant)
        if len(self.arrived) == len(self.participants):
            return self._release(True)
        return []

    def tick(self) -> list[Release]:
        self.now += 1
        if self.result is None and self.now >= self.deadline:
            return self._release(False)
        return []

    def _release(self, complete: bool) -> list[Release]:
        missing = [p for p in self.participants if p not in self.arrived]
        error = None
        if not complete:
            error = BrokerError(
                ErrorCode.TIMEOUT,
                f"barrier {self.barrier_id} timed out; never arrived: {', '.join(missing)}",
                {"missing": missing},
            ).to_payload()
        self.result = BarrierResult(
            barrier_id=self.barrier_id, released=complete, arrived=list(self.arrived),
            missing=missing, error=error,
        )
        return [Release(p, self.result) for p in self.arrived]
