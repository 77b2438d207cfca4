"""JetStream KV helpers every capability shares: open a bucket, CAS-write pydantic records,
tell a lost race from a failure, list keys without mistaking a hiccup for an empty bucket,
and ``CasBook``, the read-modify-CAS loop the ledger and the reputation book are built on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import nats.js.errors as jse
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue
from pydantic import BaseModel

from broker_agents import codec
from broker_agents.core.errors import BrokerError, ErrorCode

M = TypeVar("M", bound=BaseModel)
# JetStream's "wrong last sequence" API error codes (a create or update lost a race).
WRONG_LAST_SEQUENCE = (10071, 10164)


def is_cas_conflict(exc: BaseException) -> bool:
    """The write lost a race: the key changed (or appeared) since we read it."""
    return isinstance(exc, jse.KeyWrongLastSequenceError) or (
        isinstance(exc, jse.APIError) and exc.err_code in WRONG_LAST_SEQUENCE)


async def open_bucket(js: Any, name: str, *, replicas: int = 1,
                      ttl: float | None = None) -> KeyValue:
    """Bind to a bucket, creating it (history 1) when missing; another process creating it
    at the same moment is fine."""
    kv: KeyValue
    try:
        kv = await js.key_value(name)
    except jse.BucketNotFoundError:
        config = KeyValueConfig(bucket=name, history=1, replicas=replicas, ttl=ttl)
        try:
            kv = await js.create_key_value(config)
        except jse.APIError:
            kv = await js.key_value(name)  # created concurrently
    return kv


async def read_record(kv: KeyValue, key: str, model: type[M]) -> tuple[M | None, int]:
    """The record under ``key`` and its revision; (None, 0) when absent."""
    try:
        entry = await kv.get(key)
    except (jse.KeyNotFoundError, jse.KeyDeletedError):
        return None, 0
    if entry.value is None:
        return None, entry.revision or 0
    value = codec.decode(entry.value, max_depth=codec.STORED_MAX_DEPTH)
    return model.model_validate(value), entry.revision or 0


async def write_record(kv: KeyValue, key: str, record: BaseModel, revision: int) -> bool:
    """Create (revision 0) or compare-and-set; False when another writer got there first."""
    data = codec.encode(record)
    try:
        if revision == 0:
            await kv.create(key, data)
        else:
            await kv.update(key, data, last=revision)
    except Exception as exc:
        if is_cas_conflict(exc):
            return False
        raise
    return True


async def all_keys(kv: Any, attempts: int = 5) -> list[str]:
    """Every key of the bucket.

    nats-py raises ``NoKeysError`` whenever its watcher saw no keys, which also happens
    while the stream is changing leaders. Believe it only when the bucket's status agrees
    that it holds no values; otherwise ask again with backoff.
    """
    for attempt in range(attempts):
        try:
            return list(await kv.keys())
        except jse.NoKeysError:
            if (await kv.status()).values == 0 or attempt == attempts - 1:
                return []
            await asyncio.sleep(0.05 * 2 ** attempt)  # retry backoff
    return []


class Mirror(Protocol):
    """A local copy of a bucket: ``key -> (value, revision)``, or None when absent."""

    def get(self, key: str) -> tuple[bytes, int] | None: ...


class CasBook:
    """Read-modify-CAS of pydantic records under one key each, with bounded retry."""

    model: type[BaseModel] = BaseModel
    max_attempts = 16

    def __init__(self, kv: KeyValue, mirror: Mirror | None = None) -> None:
        self.kv = kv
        self.mirror = mirror
        self._decoded: dict[str, tuple[int, Any]] = {}

    def _decode(self, data: bytes) -> Any:
        return self.model.model_validate(codec.decode(data, max_depth=codec.STORED_MAX_DEPTH))

    def _cached(self, key: str, data: bytes, rev: int) -> Any:
        """Decode a mirrored value once per revision (records are frozen: safe to share)."""
        hit = self._decoded.get(key)
        if hit is not None and hit[0] == rev:
            return hit[1]
        record = self._decode(data)
        self._decoded[key] = (rev, record)
        return record

    async def read(self, key: str, fresh: bool = True) -> tuple[Any | None, int]:
        """The record and its revision (0 when absent); from the mirror unless ``fresh``."""
        if not fresh and self.mirror is not None:
            cached = self.mirror.get(key)
            if cached is None:
                return None, 0
            return self._cached(key, cached[0], cached[1]), cached[1]
        try:
            entry = await self.kv.get(key)
        except jse.KeyNotFoundError:
            return None, 0
        assert entry.value is not None
        return self._decode(entry.value), entry.revision or 0

    async def apply(self, key: str, op: Callable[[Any | None], Any]) -> Any:
        """Apply ``op(record) -> record`` with CAS; an unchanged (same) record is not written.

        The first read may come from the mirror (no round trip); a conflict re-reads the key.
        """
        fresh = self.mirror is None
        for _ in range(self.max_attempts):
            record, rev = await self.read(key, fresh=fresh)
            new = op(record)
            if new is record:
                return record
            data = codec.encode(new)
            try:
                if rev == 0:
                    await self.kv.create(key, data)
                else:
                    await self.kv.update(key, data, last=rev)
                return new
            except Exception as exc:
                if not is_cas_conflict(exc):
                    raise
                fresh = True
        raise BrokerError(ErrorCode.CONFLICT, f"{key}: too much contention, gave up after "
                          f"{self.max_attempts} attempts", {"key": key})
