"""Leases on JetStream KV: distributed locks and leader election with fencing tokens.

One key per lock (``lock.<name>``) or role (``leader.<role>``) in the ``<p>_leases``
bucket holds ``{holder, token, expires_at_ms}``. Every change is a compare-and-set on the
revision read, so two writers cannot both win. The fencing token is kept in the record
and only ever grows: a grant to a new holder (or after a lapse) is ``token + 1``;
release keeps the token, so the next grant is still larger. Resources that honour the
token (reject writes with a smaller one than they have seen) are safe even when an old
holder is paused past its lease.

Time is epoch milliseconds from the caller's clock; nodes must have roughly synchronised
clocks (a lease is only as good as the skew is smaller than the TTL).

NOTE nats-server 2.9.10 bug (nats-io/nats-server#4320): compare-and-set on a clustered
stream (replicas > 1) is not serialized under concurrent writers, so two writers can both
"win". On a single server (and the R1 bucket created here) it is correct. Use a fixed
server (2.10+) before giving the leases bucket replicas.
"""

from __future__ import annotations

from collections.abc import Callable

from nats.js.kv import KeyValue

from broker_agents.clock import wall_ms
from broker_agents.coord.records import read_screened
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.versioning import VersionedModel
from broker_agents.kv import write_record

MAX_ATTEMPTS = 16


class LeaseRecord(VersionedModel):
    holder: str | None = None
    token: int = 0
    expires_at_ms: int | None = None

    def live(self, now_ms: int) -> bool:
        return self.holder is not None and (self.expires_at_ms or 0) > now_ms


class Grant(VersionedModel):
    granted: bool
    record: LeaseRecord
    reason: str | None = None


class LeaseStore:
    def __init__(self, kv: KeyValue, clock: Callable[[], int] = wall_ms) -> None:
        self.kv = kv
        self.clock = clock

    async def read(self, key: str) -> tuple[LeaseRecord | None, int]:
        """The lease and its revision. A corrupt or foreign record (skipped and counted
        by ``read_screened``) reads as a free lease whose last token is its revision:
        every earlier grant was a write of this key, so its token is at most that, and
        the next grant stays above every token handed out before."""
        rec, rev, unusable = await read_screened(self.kv, key, LeaseRecord)
        if unusable:
            return LeaseRecord(holder=None, token=rev), rev
        return rec, rev

    async def _write(self, key: str, record: LeaseRecord, revision: int) -> bool:
        return await write_record(self.kv, key, record, revision)

    async def acquire(self, key: str, holder: str, ttl_ms: int) -> Grant:
        """Grant the lease if free or lapsed (new token), or renew it for its holder."""
        for _ in range(MAX_ATTEMPTS):
            rec, rev = await self.read(key)
            now = self.clock()
            if rec is not None and rec.live(now) and rec.holder != holder:
                return Grant(granted=False, record=rec,
                             reason=f"held by {rec.holder} until {rec.expires_at_ms}")
            if rec is not None and rec.live(now):
                new = rec.model_copy(update={"expires_at_ms": now + ttl_ms})
            else:
                token = rec.token + 1 if rec is not None else 1
                new = LeaseRecord(holder=holder, token=token, expires_at_ms=now + ttl_ms)
            if await self._write(key, new, rev):
                return Grant(granted=True, record=new)
        raise BrokerError(ErrorCode.CONFLICT, f"{key}: too much contention, try again")

    async def renew(self, key: str, holder: str, token: int | None, ttl_ms: int) -> Grant:
        """Extend a live lease of ``holder`` (and ``token`` if given); a lapsed one is lost."""
        for _ in range(MAX_ATTEMPTS):
            rec, rev = await self.read(key)
            now = self.clock()
            if rec is None or not rec.live(now) or rec.holder != holder or (
                    token is not None and rec.token != token):
                return Grant(granted=False, record=rec or LeaseRecord(),
                             reason="not the live holder (lease lapsed or taken)")
            new = rec.model_copy(update={"expires_at_ms": now + ttl_ms})
            if await self._write(key, new, rev):
                return Grant(granted=True, record=new)
        raise BrokerError(ErrorCode.CONFLICT, f"{key}: too much contention, try again")

    async def release(self, key: str, holder: str, token: int | None = None) -> Grant:
        """Free the lease if ``holder`` has it (the token is kept for the next grant)."""
        for _ in range(MAX_ATTEMPTS):
            rec, rev = await self.read(key)
            if rec is None or rec.holder != holder or (
                    token is not None and rec.token != token):
                return Grant(granted=False, record=rec or LeaseRecord(),
                             reason="not the holder")
            new = LeaseRecord(holder=None, token=rec.token, expires_at_ms=None)
            if await self._write(key, new, rev):
                return Grant(granted=False, record=new, reason="released")
        raise BrokerError(ErrorCode.CONFLICT, f"{key}: too much contention, try again")


def lock_key(name: str) -> str:
    return f"lock.{name}"


def leader_key(role: str) -> str:
    return f"leader.{role}"
