"""A token bucket: how many messages may pass now, and how long until the next one may.

Pure (time is handed in, seconds on any monotonic origin) so the rule is tested alone and
any driver can use it: the agent runtime keeps one per agent (``broker_agents.quota``).
A rate of 0 turns the bucket off (everything passes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    rate_per_s: float
    """Tokens added per second (the sustained rate); 0: unlimited."""
    burst: int
    """The bucket's size: messages that may pass at once after a quiet spell."""
    _tokens: float = field(init=False)
    _updated_s: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.rate_per_s < 0 or self.burst < 1:
            raise ValueError("a token bucket needs rate_per_s >= 0 and burst >= 1")
        self._tokens = float(self.burst)

    def take(self, now_s: float) -> int:
        """Take one token at ``now_s``: 0 when granted, else the milliseconds (>= 1) until
        one will be there (nothing is taken)."""
        if self.rate_per_s == 0:
            return 0
        if self._updated_s is not None and now_s > self._updated_s:
            refill = (now_s - self._updated_s) * self.rate_per_s
            self._tokens = min(float(self.burst), self._tokens + refill)
        if self._updated_s is None or now_s > self._updated_s:
            self._updated_s = now_s
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - self._tokens) / self.rate_per_s * 1000))

    @property
    def tokens(self) -> float:
        """Tokens left after the last ``take`` (not refilled to any later time)."""
        return self._tokens
