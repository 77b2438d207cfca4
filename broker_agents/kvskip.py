"""Stored records a local mirror will not use: corrupt or foreign values in a bucket.

Everything read from a bucket is untrusted input (DESIGN, trust model): a value that does
not decode, fails its schema, or holds another key's record is skipped, read as if the key
were absent, and never stops the feed that read it. Each skip is
``ba_kv_records_skipped_total{bucket,reason}`` and a ``kv.record_skipped`` log line naming
the key (one per bucket and reason per window: a node writing garbage under many keys
cannot flood the log; the suppressed lines are counted into the next one). The one home of
this rule for every feed: ``kvfeed.BucketFeed``, ``kvmirror.KvMirror``, the registry view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from prometheus_client import Counter

from broker_agents.core.errors import BrokerError, ErrorCode, RemoteProtocolError
from broker_agents.logging import get_logger
from broker_agents.ratelog import RateLimitedLog

UNDECODABLE: Final = "undecodable"
"""The bytes are not msgpack/JSON within the stored bounds."""
INVALID: Final = "invalid"
"""Decodes, but not to the bucket's record schema."""
FOREIGN: Final = "foreign"
"""A valid record of another key (its id is not the key it is stored under)."""
SINK_ERROR: Final = "sink_error"
"""The mirror failed on the value in a way its own check did not foresee."""
REASONS: Final = (UNDECODABLE, INVALID, FOREIGN, SINK_ERROR)

RecordCheck = Callable[[str, bytes], object]
"""``check(key, value)``: returns when the value is a usable record of ``key``, raises
(``Unusable``, or any ``BrokerError`` of the codec or a validator) when it is not."""

SKIPPED = Counter("ba_kv_records_skipped_total",
                  "Stored records a local mirror skipped as corrupt or foreign",
                  ["bucket", "reason"])

_log = RateLimitedLog(get_logger(component="kv"))


class Unusable(RemoteProtocolError):
    """A stored value that is not a usable record of its key; ``reason`` is one of
    ``REASONS`` (a bounded metric label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(ErrorCode.MALFORMED, message, {"reason": reason})
        self.reason = reason


@dataclass(frozen=True)
class SkippedRecord:
    """What a mirror remembers of a key it skipped (the CLI shows it as corrupt)."""

    key: str
    revision: int
    reason: str
    error: str


def reason_of(exc: BaseException) -> str:
    """The skip reason a check's exception stands for (an error whose ``details`` name
    one of ``REASONS``, like ``Unusable`` or the auction audit's ``Skipped``, says it)."""
    if isinstance(exc, BrokerError):
        named = exc.details.get("reason")
        if isinstance(named, str) and named in REASONS:
            return named
        if exc.code in (ErrorCode.MALFORMED, ErrorCode.TOO_LARGE):
            return UNDECODABLE
        if exc.code in (ErrorCode.VALIDATION, ErrorCode.UNSUPPORTED_VERSION):
            return INVALID
    return SINK_ERROR


def describe(exc: BaseException) -> str:
    """A bounded one-line description of why a value was skipped."""
    text = exc.message if isinstance(exc, BrokerError) else repr(exc)
    return text[:300]


def record_skipped(bucket: str, key: str, revision: int, exc: BaseException,
                   reason: str | None = None) -> SkippedRecord:
    """Count and log one skipped value; returns what the mirror keeps of it."""
    skipped = SkippedRecord(key, revision, reason or reason_of(exc), describe(exc))
    SKIPPED.labels(bucket, skipped.reason).inc()
    _log.warning((bucket, skipped.reason), "kv.record_skipped", bucket=bucket, kv_key=key,
                 revision=revision, reason=skipped.reason, error=skipped.error)
    return skipped


def screen(bucket: str, key: str, value: bytes | None, revision: int,
           check: RecordCheck | None) -> tuple[bytes | None, SkippedRecord | None]:
    """``(value, None)`` when ``check`` accepts it (or there is nothing to check), else
    ``(None, what was skipped)``, counted and logged."""
    if value is None or check is None:
        return value, None
    try:
        check(key, value)
    except Exception as exc:
        return None, record_skipped(bucket, key, revision, exc)
    return value, None
