"""Reading coordination records (leases, barriers) that a bucket may hold corrupt.

Everything read from a bucket is untrusted (DESIGN, trust model): a value that does not
decode or fails its schema is read as absent *for its key only*, counted and logged with
its key by the one home of that rule (``broker_agents.kvskip``:
``ba_kv_records_skipped_total{bucket,reason}``). Its revision is still returned, so the
next write replaces it with compare-and-set, and a caller that must stay monotonic (a
lease's fencing token) can start above it.
"""

from __future__ import annotations

from typing import Any, TypeVar

import nats.js.errors as jse
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError

from broker_agents import codec, kvskip
from broker_agents.core.errors import BrokerError

M = TypeVar("M", bound=BaseModel)


def bucket_of(kv: KeyValue) -> str:
    name: Any = getattr(kv, "_name", None)
    return name if isinstance(name, str) else "unknown"


async def read_screened(kv: KeyValue, key: str, model: type[M]) -> tuple[M | None, int, bool]:
    """``(record, revision, unusable)``: the record under ``key`` (None when absent or
    unusable), its revision (0 when absent), and whether a stored value was skipped."""
    try:
        entry = await kv.get(key)
    except (jse.KeyNotFoundError, jse.KeyDeletedError):
        return None, 0, False
    revision = entry.revision or 0
    if entry.value is None:
        return None, revision, False
    try:
        value = codec.decode(entry.value, max_depth=codec.STORED_MAX_DEPTH)
    except BrokerError as exc:
        kvskip.record_skipped(bucket_of(kv), key, revision, exc)
        return None, revision, True
    try:
        return model.model_validate(value), revision, False
    except ValidationError as exc:
        kvskip.record_skipped(bucket_of(kv), key, revision, exc, kvskip.INVALID)
        return None, revision, True
