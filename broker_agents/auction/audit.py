"""Read the accounts and auctions buckets for the escrow and money audit.

The decision is ``core.auction.audit``; this module only reads and decodes, skipping (and
counting) what is corrupt or foreign: an account whose key is not its owner, an auction
record whose key is not its id, anything that does not decode. ``broker-agents auction
audit`` and the chaos checkers use ``run_audit``; the auctioneers' reconcile reads its
mirrors instead (``reconcile.py``) and their sweeper loads a record it takes over with
``usable_record``, all decoding with the same functions. Each skip is counted in
``ba_auction_reconcile_skipped_total{bucket,reason}`` and logged with its key (at most
once per window and reason; ``usable_record`` once per key and revision).

Order matters on a live system: accounts are read first, then auctions. A hold seen in the
accounts was there before the stage that judges it was read, so a stage that forbids it
(``open``) really did; and a hold that looks orphaned is read once more before it is
reported, past the moment its auction's driver releases what it took.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats.js.errors as jse
from pydantic import BaseModel

from broker_agents import codec
from broker_agents.auction import metrics
from broker_agents.auction.records import AuctionRecord, peek_lease
from broker_agents.clock import wall_ms
from broker_agents.core.auction.audit import AuctionView, Audit, Verdict, audit
from broker_agents.core.budget import Account
from broker_agents.core.errors import ErrorCode, RemoteProtocolError
from broker_agents.kv import all_keys
from broker_agents.logging import get_logger
from broker_agents.ratelog import RateLimitedLog

DEFAULT_GRACE_MS = 30_000
"""How long a hold may name an auction the auctions bucket does not know (yet)."""


M = TypeVar("M", bound=BaseModel)
REPORTED_LIMIT = 4096
"""How many (key, revision) pairs ``usable_record`` remembers having reported."""

_log = RateLimitedLog(get_logger(component="auction"))
_reported: OrderedDict[tuple[str, int], None] = OrderedDict()


class Skipped(RemoteProtocolError):
    """A record the audit cannot use (someone wrote garbage or another key's record);
    ``reason`` is a bounded metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(ErrorCode.MALFORMED, f"unusable record: {reason}", {"reason": reason})
        self.reason = reason


def _stored(model: type[M], data: bytes) -> M:
    """A stored record as ``model``; ``Skipped("corrupt")`` when it is not one."""
    try:
        return model.model_validate(codec.decode(data, max_depth=codec.STORED_MAX_DEPTH))
    except Exception as exc:
        raise Skipped("corrupt") from exc


def account_of(key: str, data: bytes) -> Account:
    """The account stored under ``key``; ``Skipped`` when corrupt or foreign."""
    account = _stored(Account, data)
    if account.owner != key:
        raise Skipped("foreign")
    return account


def record_of(key: str, data: bytes) -> AuctionRecord:
    """The auction record stored under ``key``; ``Skipped`` when corrupt or foreign."""
    record = _stored(AuctionRecord, data)
    if record.auction_id != key:
        raise Skipped("foreign")
    return record


def auction_view(key: str, data: bytes) -> AuctionView:
    """Stage and what each payer owes, from a full record; ``Skipped`` when unusable."""
    record = record_of(key, data)
    return AuctionView(record.stage, record.payments())


def usable_record(key: str, data: bytes | None, revision: int) -> AuctionRecord | None:
    """``record_of``, or None for a record nobody may act on: counted and logged with its
    key once per revision (a sweeper meets it again at every sweep)."""
    if data is None:
        return None
    try:
        return record_of(key, data)
    except Skipped as why:
        report_once("auctions", key, revision, why.reason)
        return None


def report_once(bucket: str, key: str, revision: int, reason: str) -> None:
    """Count and log a skipped record, unless this revision of it was reported already."""
    seen = (f"{bucket}/{key}", revision)
    if seen in _reported:
        return
    _reported[seen] = None
    if len(_reported) > REPORTED_LIMIT:
        _reported.popitem(last=False)
    skipped(Counter(), bucket, reason, key)


def stage_view(data: bytes) -> AuctionView:
    """The stage only, without validating the whole record (the sweep looks often)."""
    lease = peek_lease(data)
    if lease is None:
        raise Skipped("corrupt")
    return AuctionView(lease[0])


def skipped(counts: Counter[str], bucket: str, reason: str, key: str | None = None) -> None:
    """Count one skipped record (in ``counts`` and the metric); with its ``key``, log it
    (a reader that reports the keys itself, like the audit's snapshot, passes none)."""
    counts[f"{bucket}:{reason}"] += 1
    metrics.RECONCILE_SKIPPED.labels(bucket, reason).inc()
    if key is not None:
        _log.warning((bucket, reason), "auction.record_skipped", bucket=bucket, record=key,
                     reason=reason)


@dataclass
class Snapshot:
    """Decoded accounts and auction views (None: the record exists but is unusable)."""

    accounts: dict[str, Account] = field(default_factory=dict)
    auctions: dict[str, AuctionView | None] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    unusable: dict[str, str] = field(default_factory=dict)  # "<bucket>/<key>" -> reason


async def _value(kv: Any, key: str) -> bytes | None:
    try:
        entry = await kv.get(key)
    except (jse.KeyNotFoundError, jse.KeyDeletedError):
        return None
    return entry.value or None


async def read_account(kv: Any, key: str, snap: Snapshot) -> None:
    data = await _value(kv, key)
    snap.accounts.pop(key, None)
    if data is None:
        return
    snap.unusable.pop(f"accounts/{key}", None)
    try:
        snap.accounts[key] = account_of(key, data)
    except Skipped as why:
        skipped(snap.skipped, "accounts", why.reason)
        snap.unusable[f"accounts/{key}"] = why.reason


async def read_snapshot(accounts_kv: Any, auctions_kv: Any) -> Snapshot:
    """Every account, then every auction (see the module docstring for why that order)."""
    snap = Snapshot()
    for key in sorted(await all_keys(accounts_kv)):
        await read_account(accounts_kv, key, snap)
    for key in sorted(await all_keys(auctions_kv)):
        data = await _value(auctions_kv, key)
        if data is None:
            continue
        try:
            snap.auctions[key] = auction_view(key, data)
        except Skipped as why:
            skipped(snap.skipped, "auctions", why.reason)
            snap.unusable[f"auctions/{key}"] = why.reason
            snap.auctions[key] = None
    return snap


async def run_audit(accounts_kv: Any, auctions_kv: Any, grace_ms: int = DEFAULT_GRACE_MS,
                    now_ms: int | None = None) -> tuple[Audit, Snapshot]:
    """The audit of both buckets; a hold that looks orphaned is read a second time."""
    snap = await read_snapshot(accounts_kv, auctions_kv)
    now = wall_ms() if now_ms is None else now_ms
    first = audit(snap.accounts.values(), snap.auctions, now, grace_ms)
    suspects = sorted({h.account for h in first.holds if h.verdict is Verdict.ORPHANED})
    if not suspects:
        return first, snap
    for owner in suspects:
        await read_account(accounts_kv, owner, snap)
    return audit(snap.accounts.values(), snap.auctions, now, grace_ms), snap
