"""JetStream KV helpers every capability shares: open a bucket, CAS-write pydantic records,
tell a lost race from a failure, list keys without mistaking a hiccup for an empty bucket,
and ``CasBook``, the read-modify-CAS loop the ledger and the reputation book are built on.

Replicas: a bucket opened without ``replicas`` gets the process's configured count
(``configure_replicas``, which the node calls with ``[nats] bucket_replicas``), else 3 when
the server we are connected to says its cluster has at least 3 servers (the client URLs
its INFO advertises), else 1. Buckets are created with leader-only reads (direct get off):
accounts, auctions, leases and barriers decide on what they read, and a follower may lag.
A bucket that exists with another replica count is left as it is, with a warning.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import nats.js.errors as jse
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue
from prometheus_client import Counter
from pydantic import BaseModel

from broker_agents import codec
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.logging import get_logger
from broker_agents.ratelog import RateLimitedLog

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
# JetStream's "wrong last sequence" API error codes (a create or update lost a race).
WRONG_LAST_SEQUENCE = (10071, 10164)
CLUSTER_REPLICAS = 3  # the default once the cluster has this many servers
ACCOUNT_NOT_ENABLED = 10039  # JetStream's "JetStream not enabled for account"
ACCOUNT_ENABLE_TIMEOUT = 20.0

REPLICAS_MISMATCH = Counter(
    "ba_kv_bucket_replicas_mismatch_total",
    "Buckets opened that exist with another replica count than configured (left as is)")
_log = RateLimitedLog(get_logger(component="kv"))
_configured: int | None = None


def configure_replicas(replicas: int | None) -> None:
    """The replica count of every bucket this process creates (None: from the cluster)."""
    global _configured
    _configured = replicas


def cluster_size(js: Any) -> int:
    """How many servers the connected server's cluster has, from its INFO: 1 outside a
    cluster, else the distinct client URLs it advertises (``connect_urls``, its own too)."""
    info: dict[str, Any] = getattr(getattr(js, "_nc", None), "_server_info", None) or {}
    if not info.get("cluster"):
        return 1
    return max(1, len(set(info.get("connect_urls") or [])))


def default_replicas(js: Any) -> int:
    if _configured is not None:
        return _configured
    return CLUSTER_REPLICAS if cluster_size(js) >= CLUSTER_REPLICAS else 1


def is_cas_conflict(exc: BaseException) -> bool:
    """The write lost a race: the key changed (or appeared) since we read it."""
    return isinstance(exc, jse.KeyWrongLastSequenceError) or (
        isinstance(exc, jse.APIError) and exc.err_code in WRONG_LAST_SEQUENCE)


def is_account_enabling(exc: BaseException) -> bool:
    """A server refused the request because it has not enabled the account's JetStream."""
    return isinstance(exc, jse.APIError) and exc.err_code == ACCOUNT_NOT_ENABLED


async def once_account_enabled(call: Callable[[], Awaitable[T]],
                               timeout: float = ACCOUNT_ENABLE_TIMEOUT) -> T:
    """``call()``, retried while a server answers "JetStream not enabled for account".

    With operator auth a server loads an account, and enables its JetStream, when it first
    meets it (a client's connect, a routed request), and does so asynchronously: right
    after a cluster starts, the first JetStream request of an account can be refused
    although every server reports healthy (its /healthz knows no account yet). Any other
    error, or the same one past ``timeout``, is raised."""
    deadline = asyncio.get_running_loop().time() + timeout
    delay = 0.02
    while True:
        try:
            return await call()
        except jse.APIError as exc:
            if not is_account_enabling(exc) or asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(delay)  # sleep-ok: backoff while the server enables the account
        delay = min(delay * 2, 0.5)


async def open_bucket(js: Any, name: str, *, replicas: int | None = None,
                      ttl: float | None = None, direct: bool = False) -> KeyValue:
    """Bind to a bucket, creating it (history 1, ``replicas`` or ``default_replicas``,
    leader-only reads unless ``direct``) when missing; another process creating it at the
    same moment is fine. An existing bucket keeps its replicas (a warning if they differ)."""
    wanted = replicas if replicas is not None else default_replicas(js)
    try:
        info = await once_account_enabled(lambda: js.stream_info(f"KV_{name}"))
    except jse.NotFoundError:
        config = KeyValueConfig(bucket=name, history=1, replicas=wanted, ttl=ttl,
                                direct=direct)
        try:
            created: KeyValue = await once_account_enabled(
                lambda: js.create_key_value(config))
            return created
        except jse.APIError as exc:
            try:
                return await js.key_value(name)  # type: ignore[no-any-return]  # raced
            except jse.BucketNotFoundError:
                raise exc from None  # not a race: the server refused it (e.g. replicas)
    have = info.config.num_replicas or 1
    if have != wanted:
        REPLICAS_MISMATCH.inc()
        _log.warning(("replicas", name), "bucket exists with another replica count; left as "
                     "is (recreate it, or `nats kv edit`, to change it)", bucket=name,
                     replicas=have, configured=wanted)
    return await js.key_value(name)  # type: ignore[no-any-return]


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
