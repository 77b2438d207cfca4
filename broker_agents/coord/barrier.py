"""Barrier over NATS: participants arrive by request; all are released together.

State lives in the ``<p>_barriers`` KV bucket (one key per barrier, written with CAS), so
arrivals may land on any coordinator. Each waiting coordinator subscribes to
``<p>.vote.barrier.<id>`` *before* recording its arrival; whoever records the last
arrival (or, at the deadline, the first coordinator to write the timeout) stores the
result and publishes it there. The core ``Barrier`` (replayed from the record, then
stepped with the new ``Arrive`` or the deadline's ``Tick``) decides who is released and
names who never arrived. Deadlines are epoch milliseconds (the first arrival fixes them).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

from broker_agents import codec
from broker_agents.clock import wall_ms
from broker_agents.coord.models import BarrierArrival
from broker_agents.coord.records import read_screened
from broker_agents.core.coord.barrier import Arrive, Barrier
from broker_agents.core.coord.models import BarrierResult
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.machine import Tick
from broker_agents.core.versioning import VersionedModel
from broker_agents.kv import open_bucket, write_record
from broker_agents.subjects import Subjects

BARRIER_TTL_S = 3600.0


class BarrierRecord(VersionedModel):
    participants: list[str]
    created_ms: int
    deadline_ms: int
    arrived: list[str] = []
    result: BarrierResult | None = None


def _timeout_ticks(rec: BarrierRecord) -> int:
    """The core counts milliseconds since the barrier was created."""
    return max(1, rec.deadline_ms - rec.created_ms)


def _core(barrier_id: str, rec: BarrierRecord) -> Barrier:
    core = Barrier(barrier_id, rec.participants, _timeout_ticks(rec))
    for p in rec.arrived:
        core.step(Arrive(p))
    return core


def _outcome(result: BarrierResult) -> BarrierResult:
    """A released barrier is a result; a timed-out one is the core's ``timeout`` error."""
    if result.released:
        return result
    err = BrokerError.from_payload(result.error) or BrokerError(ErrorCode.TIMEOUT, "timeout")
    raise BrokerError(err.code, err.message, {**err.details, **result.model_dump(
        mode="json", exclude={"error"})})


async def open_barriers(js: Any, bucket: str) -> KeyValue:
    return await open_bucket(js, bucket, ttl=BARRIER_TTL_S)


class BarrierDriver:
    def __init__(self, nc: NATS, subjects: Subjects, kv: KeyValue) -> None:
        self.nc = nc
        self.subjects = subjects
        self.kv = kv

    async def _read(self, key: str) -> tuple[BarrierRecord | None, int]:
        """A corrupt or foreign record reads as absent (skipped and counted by
        ``read_screened``); the next arrival replaces it by compare-and-set."""
        rec, rev, _ = await read_screened(self.kv, key, BarrierRecord)
        return rec, rev

    async def _write(self, key: str, rec: BarrierRecord, rev: int) -> bool:
        return await write_record(self.kv, key, rec, rev)

    async def arrive(self, req: BarrierArrival) -> BarrierResult:
        key = req.barrier_id
        released: asyncio.Future[BarrierResult] = asyncio.get_running_loop().create_future()

        async def on_release(msg: Any) -> None:
            with contextlib.suppress(Exception):
                result = BarrierResult.model_validate(codec.decode(msg.data))
                if not released.done():
                    released.set_result(result)

        sub = await self.nc.subscribe(self.subjects.vote("barrier", key), cb=on_release)
        try:
            rec = await self._record_arrival(req)
            if rec.result is not None:
                return _outcome(rec.result)
            left = max(0.0, (rec.deadline_ms - wall_ms()) / 1000)
            with contextlib.suppress(TimeoutError):
                return _outcome(await asyncio.wait_for(asyncio.shield(released), left))
            return _outcome(await self._time_out(key))
        finally:
            await sub.unsubscribe()

    async def _record_arrival(self, req: BarrierArrival) -> BarrierRecord:
        key = req.barrier_id
        for _ in range(32):
            rec, rev = await self._read(key)
            if rec is None:
                now = wall_ms()
                rec = BarrierRecord(participants=req.participants, created_ms=now,
                                    deadline_ms=now + req.timeout_ms)
            elif rec.participants != req.participants:
                raise BrokerError(
                    ErrorCode.CONFLICT,
                    f"barrier {key} already exists with other participants",
                    {"field": "participants", "existing": rec.participants})
            if rec.result is not None:
                return rec
            core = _core(key, rec)
            core.step(Arrive(req.participant))
            new = rec.model_copy(update={"arrived": core.arrived, "result": core.result})
            if await self._write(key, new, rev):
                if new.result is not None:
                    await self._publish(key, new.result)
                return new
        raise BrokerError(ErrorCode.CONFLICT, f"barrier {key}: too much contention")

    async def _time_out(self, key: str) -> BarrierResult:
        for _ in range(32):
            rec, rev = await self._read(key)
            if rec is None:
                raise BrokerError(ErrorCode.NOT_FOUND, f"barrier {key} vanished")
            if rec.result is not None:
                return rec.result
            core = _core(key, rec)
            core.step(Tick(_timeout_ticks(rec)))
            assert core.result is not None
            new = rec.model_copy(update={"result": core.result})
            if await self._write(key, new, rev):
                await self._publish(key, core.result)
                return core.result
        raise BrokerError(ErrorCode.CONFLICT, f"barrier {key}: too much contention")

    async def _publish(self, key: str, result: BarrierResult) -> None:
        await self.nc.publish(self.subjects.vote("barrier", key), codec.encode(result))
