"""Counting and logging what a member refuses, at a rate that cannot flood the log.

Every refusal is counted (``ba_raft_rejected_messages_total{group,reason}`` for peer
messages, ``ba_raft_refused_proposals_total{group,code}`` for client requests); at most
``burst`` lines per ``window`` seconds are logged for each kind and reason, and the next
line that gets through says how many were left out (``suppressed``). An attacker who can
send garbage at line rate then costs a counter increment per message, not a log line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from broker_agents.raft.metrics import REFUSED_PROPOSALS, REJECTED


class LogThrottle:
    """At most ``burst`` lines per ``window`` seconds for each key."""

    __slots__ = ("_clock", "_seen", "burst", "window")

    def __init__(self, window: float = 10.0, burst: int = 5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window, self.burst, self._clock = window, burst, clock
        self._seen: dict[str, list[float]] = {}  # key -> [window start, logged, suppressed]

    def admit(self, key: str) -> int | None:
        """None: stay quiet. Otherwise log, mentioning this many suppressed lines."""
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None or now - seen[0] >= self.window:
            suppressed = int(seen[2]) if seen is not None else 0
            self._seen[key] = [now, 1, 0]
            return suppressed
        if seen[1] < self.burst:
            seen[1] += 1
            return 0
        seen[2] += 1
        return None


class Refusals:
    """One member's refusals: counters plus throttled structured log lines."""

    def __init__(self, group: str, log: Any, throttle: LogThrottle | None = None) -> None:
        self.group = group
        self.log = log
        self.throttle = throttle or LogThrottle()
        self._peer: dict[str, Any] = {}
        self._request: dict[str, Any] = {}

    def peer(self, reason: str, **fields: Any) -> None:
        """A peer message refused (``reason``: a ``RefusalReason`` value)."""
        child = self._peer.get(reason)
        if child is None:
            child = self._peer[reason] = REJECTED.labels(self.group, reason)
        child.inc()
        suppressed = self.throttle.admit("peer:" + reason)
        if suppressed is not None:
            self.log.warning("raft.peer_message_refused", reason=reason,
                             suppressed=suppressed, **fields)

    def request(self, code: str, **fields: Any) -> None:
        """A client request refused with error ``code`` before it reached the core."""
        child = self._request.get(code)
        if child is None:
            child = self._request[code] = REFUSED_PROPOSALS.labels(self.group, code)
        child.inc()
        suppressed = self.throttle.admit("request:" + code)
        if suppressed is not None:
            self.log.info("raft.request_refused", code=code, suppressed=suppressed, **fields)
