"""Per-requester quotas: an in-flight limit and a token bucket per (requester, protocol).

One requester must not starve the others: before a coordination request runs, the driver
asks ``Quotas.admit(requester, protocol, now_s)``; a refusal says why (``requester_inflight``
or ``requester_rate``) and when to retry. An admitted request holds one in-flight slot
until the driver calls ``release``. Time is handed in (seconds, any monotonic origin).

Memory is bounded: past ``max_keys`` tracked pairs, the least recently used idle ones
(nothing in flight) are forgotten. A forgotten pair starts again with a full bucket,
which only many distinct authenticated requesters can exploit, and the driver's global
in-flight limit still holds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from broker_agents.core.quota import TokenBucket

INFLIGHT = "requester_inflight"
RATE = "requester_rate"


@dataclass(frozen=True, slots=True)
class Quota:
    """What one requester may do with one protocol."""

    inflight: int
    """Requests running at once."""
    rate_per_s: float
    """Requests per second, sustained."""
    burst: int
    """Requests at once after a quiet spell (the bucket's size)."""

    def __post_init__(self) -> None:
        if self.inflight < 1 or self.burst < 1 or not self.rate_per_s > 0:
            raise ValueError("a quota needs inflight >= 1, burst >= 1 and rate_per_s > 0")


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    """``requester_inflight`` or ``requester_rate`` (a bounded metric label)."""
    limit: float
    retry_after_ms: int


@dataclass(slots=True)
class _Bucket:
    rate: TokenBucket
    inflight: int = 0


class Quotas:
    def __init__(self, default: Quota, per_protocol: Mapping[str, Quota] | None = None,
                 max_keys: int = 10_000) -> None:
        self.default = default
        self.per_protocol = dict(per_protocol or {})
        self.max_keys = max_keys
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()

    def quota(self, protocol: str) -> Quota:
        return self.per_protocol.get(protocol, self.default)

    def admit(self, requester: str, protocol: str, now_s: float) -> Refusal | None:
        """Admit one request (it holds an in-flight slot until ``release``), or say why
        not; a refused request takes nothing."""
        quota = self.quota(protocol)
        key = (requester, protocol)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(TokenBucket(quota.rate_per_s, quota.burst))
            self._forget_idle(keep=key)
        else:
            self._buckets.move_to_end(key)
        if bucket.inflight >= quota.inflight:
            return Refusal(INFLIGHT, quota.inflight, 0)
        wait_ms = bucket.rate.take(now_s)
        if wait_ms:
            return Refusal(RATE, quota.rate_per_s, wait_ms)
        bucket.inflight += 1
        return None

    def release(self, requester: str, protocol: str) -> None:
        """An admitted request finished (however it ended)."""
        bucket = self._buckets.get((requester, protocol))
        if bucket is not None and bucket.inflight > 0:
            bucket.inflight -= 1

    def inflight(self, requester: str, protocol: str) -> int:
        bucket = self._buckets.get((requester, protocol))
        return bucket.inflight if bucket is not None else 0

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget_idle(self, keep: tuple[str, str]) -> None:
        if len(self._buckets) <= self.max_keys:
            return
        for key in [k for k, b in self._buckets.items() if b.inflight == 0 and k != keep]:
            del self._buckets[key]
            if len(self._buckets) <= self.max_keys:
                return
