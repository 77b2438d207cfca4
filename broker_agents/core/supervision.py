"""Restart decisions of an OTP-style supervisor, kept pure so they can be tested exhaustively.

Time is whatever monotonic number the driver passes in; nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class RestartType(StrEnum):
    PERMANENT = "permanent"  # always restarted
    TRANSIENT = "transient"  # restarted only after an abnormal exit
    TEMPORARY = "temporary"  # never restarted


class Strategy(StrEnum):
    ONE_FOR_ONE = "one_for_one"  # restart only the child that exited
    ONE_FOR_ALL = "one_for_all"  # restart every child
    REST_FOR_ONE = "rest_for_one"  # restart the child and those started after it


class OnExhausted(StrEnum):
    """What a supervisor does when one child has used up its restart budget."""

    STOP_AGENT = "stop_agent"  # give that child up; its siblings (and the node) run on
    STOP_NODE = "stop_node"  # stop every child and escalate (OTP's intensity rule)


def should_restart(restart: RestartType, abnormal: bool) -> bool:
    if restart is RestartType.PERMANENT:
        return True
    if restart is RestartType.TRANSIENT:
        return abnormal
    return False


def affected_children(strategy: Strategy, order: list[str], exited: str) -> list[str]:
    """Children (in start order) that a restart caused by ``exited`` touches."""
    if strategy is Strategy.ONE_FOR_ONE:
        return [exited]
    if strategy is Strategy.ONE_FOR_ALL:
        return list(order)
    return order[order.index(exited):]


@dataclass
class RestartIntensity:
    """At most ``max_restarts`` within ``period`` seconds; one more means give up.

    Mirrors OTP's intensity/period: a supervisor that keeps restarting a broken child
    escalates to its parent instead of spinning forever.
    """

    max_restarts: int
    period: float
    _times: deque[float] = field(default_factory=deque)

    def allows(self, now: float) -> bool:
        """Whether one more restart at ``now`` would stay within the budget (records
        nothing)."""
        return sum(1 for t in self._times if now - t <= self.period) < self.max_restarts

    def record(self, now: float) -> bool:
        """Record a restart at ``now``; False when the intensity is exceeded."""
        self._times.append(now)
        while self._times and now - self._times[0] > self.period:
            self._times.popleft()
        return len(self._times) <= self.max_restarts

    @property
    def recent(self) -> int:
        return len(self._times)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff between consecutive restarts of the same child."""

    initial: float = 0.01
    maximum: float = 2.0
    factor: float = 2.0

    def delay(self, consecutive: int) -> float:
        if consecutive <= 0:
            return 0.0
        return float(min(self.maximum, self.initial * self.factor ** (consecutive - 1)))
