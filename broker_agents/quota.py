"""Per-agent quotas: a message rate (token bucket) and a queue quota, checked first.

A flood on one agent's inbox must cost that agent's quota, not its node: every message
an agent's subscriptions deliver passes ``AgentAdmission.admit`` before anything else
(no decoding, no signature check), and one over quota is refused at once:

- ``queue``: the subscription already holds more than ``max_pending_msgs`` messages or
  ``max_pending_bytes`` bytes not yet handled (the agent is behind: refusing the excess
  cheaply is what lets it catch up, and what keeps the node's shared connection drained);
- ``rate``: the agent's token bucket (``rate`` per second, ``burst`` at once) is empty.

A refused request is answered ``rate_limited`` (details: agent, reason, retry_after_ms);
a refused one-way message is dropped. Both are counted in
``ba_agent_rate_limited_total{agent,reason}`` and logged once per window per agent and
reason. A limit of 0 turns that check off. The numbers come from the node config
(``[agent_limits]``, ``[agents.limits]``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.quota import TokenBucket

RATE = "rate"
QUEUE = "queue"

RATE_LIMITED = Counter(
    "ba_agent_rate_limited_total",
    "Messages an agent refused over its quota, before decoding them: reason rate (its "
    "token bucket was empty) or queue (its backlog was over max_pending_msgs/bytes); "
    "requests were answered rate_limited, one-way messages dropped", ["agent", "reason"])


@dataclass(frozen=True, slots=True)
class AgentQuota:
    """What one agent accepts (0: that check is off)."""

    rate: float = 2000.0
    """Messages per second, sustained (the token bucket's refill)."""
    burst: int = 4000
    """Messages at once after a quiet spell (the token bucket's size)."""
    max_pending_msgs: int = 1000
    """Backlog (messages delivered, not yet handled) per subscription past which
    messages are refused."""
    max_pending_bytes: int = 8 * 1024 * 1024
    """The same backlog in bytes."""

    @classmethod
    def unlimited(cls) -> AgentQuota:
        return cls(rate=0, burst=1, max_pending_msgs=0, max_pending_bytes=0)


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    """``rate`` or ``queue`` (a bounded metric label)."""
    retry_after_ms: int

    def error(self, agent_id: str) -> BrokerError:
        return BrokerError(
            ErrorCode.RATE_LIMITED, f"agent {agent_id} is over its {self.reason} quota",
            {"agent": agent_id, "reason": self.reason, "retry_after_ms": self.retry_after_ms})


class AgentAdmission:
    """One agent's quota, checked per delivered message (one per agent runner)."""

    def __init__(self, agent_id: str, quota: AgentQuota,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.agent_id = agent_id
        self.quota = quota
        self._bucket = TokenBucket(quota.rate, quota.burst)
        self._clock = clock
        self._counters = {reason: RATE_LIMITED.labels(agent_id, reason)
                          for reason in (RATE, QUEUE)}

    def admit(self, sub: Any) -> Refusal | None:
        """None: handle the message ``sub`` just delivered; else why not. ``sub`` is the
        nats-py subscription (its ``pending_msgs`` / ``pending_bytes`` are the backlog
        behind this message)."""
        quota = self.quota
        if sub is not None and (
                (quota.max_pending_msgs and sub.pending_msgs > quota.max_pending_msgs)
                or (quota.max_pending_bytes and sub.pending_bytes > quota.max_pending_bytes)):
            self._counters[QUEUE].inc()
            # by then the backlog is handled at the sustained rate (or a short pause)
            wait_s = sub.pending_msgs / quota.rate if quota.rate else 0.1
            return Refusal(QUEUE, max(1, int(wait_s * 1000)))
        wait_ms = self._bucket.take(self._clock())
        if wait_ms:
            self._counters[RATE].inc()
            return Refusal(RATE, wait_ms)
        return None
