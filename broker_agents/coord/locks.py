"""``ba.coord.lock`` and ``ba.coord.leader`` request handlers on top of ``LeaseStore``.

The holder (candidate) is given by the caller: the requester's authenticated identity
(``coord.admission``), never a name the request merely claims, so only the holder can
renew or release a lock or resign a role (an admin may act for it).
"""

from __future__ import annotations

import asyncio

from broker_agents.clock import wall_ms
from broker_agents.coord.lease import (
    Grant,
    LeaseRecord,
    LeaseStore,
    leader_key,
    lock_key,
)
from broker_agents.coord.models import (
    LeaderAction,
    LeaderRequest,
    LeaderResult,
    LockAction,
    LockRequest,
    LockResult,
)
from broker_agents.core.errors import BrokerError, ErrorCode


def _need(value: str | None, field: str, action: str) -> str:
    if value is None:
        raise BrokerError(ErrorCode.VALIDATION, f"invalid request: {field}",
                          {"fields": [{"field": field,
                                       "message": f"required for action {action!r}"}]})
    return value


def _lock_result(name: str, grant: Grant, now: int) -> LockResult:
    rec = grant.record
    live = rec.live(now)
    return LockResult(name=name, granted=grant.granted, holder=rec.holder if live else None,
                      token=rec.token, expires_at_ms=rec.expires_at_ms if live else None,
                      reason=grant.reason)


async def handle_lock(store: LeaseStore, req: LockRequest, holder: str | None) -> LockResult:
    key = lock_key(req.name)
    if req.action is LockAction.QUERY:
        rec, _ = await store.read(key)
        grant = Grant(granted=False, record=rec or LeaseRecord())
        return _lock_result(req.name, grant, wall_ms())
    who = _need(holder, "holder", req.action.value)
    if req.action is LockAction.RENEW:
        return _lock_result(req.name, await store.renew(key, who, req.token, req.ttl_ms),
                            wall_ms())
    if req.action is LockAction.RELEASE:
        return _lock_result(req.name, await store.release(key, who, req.token), wall_ms())
    loop = asyncio.get_running_loop()
    give_up = loop.time() + req.wait_ms / 1000
    pause = 0.01
    while True:
        grant = await store.acquire(key, who, req.ttl_ms)
        now = wall_ms()
        left = give_up - loop.time()
        if grant.granted or left <= 0:
            return _lock_result(req.name, grant, now)
        lapse = max(0.0, ((grant.record.expires_at_ms or now) - now) / 1000)
        await asyncio.sleep(min(left, max(0.001, min(lapse, pause))))  # sleep-ok: lock wait
        pause = min(pause * 2, 0.25)


async def handle_leader(store: LeaseStore, req: LeaderRequest,
                        candidate: str | None) -> LeaderResult:
    key = leader_key(req.role)
    if req.action is LeaderAction.QUERY:
        rec, _ = await store.read(key)
        now = wall_ms()
        live = rec is not None and rec.live(now)
        return LeaderResult(role=req.role, leader=rec.holder if rec and live else None,
                            token=rec.token if rec else 0, is_leader=False,
                            expires_at_ms=rec.expires_at_ms if rec and live else None)
    who = _need(candidate, "candidate", req.action.value)
    if req.action is LeaderAction.RESIGN:
        grant = await store.release(key, who)
    else:
        grant = await store.acquire(key, who, req.ttl_ms)
    rec = grant.record
    live = rec.live(wall_ms())
    return LeaderResult(role=req.role, leader=rec.holder if live else None, token=rec.token,
                        is_leader=grant.granted, expires_at_ms=rec.expires_at_ms if live else None)
