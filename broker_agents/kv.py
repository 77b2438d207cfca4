"""JetStream KV helpers every capability shares: open a bucket, CAS-write pydantic records,
tell a lost race from a failure, list keys without mistaking a hiccup for an empty bucket."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import nats.js.errors as jse
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue
from pydantic import BaseModel

from broker_agents import codec

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
    return model.model_validate(codec.decode(entry.value)), entry.revision or 0


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
