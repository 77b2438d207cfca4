"""Release orphaned escrow holds: at every sweep, and for one auction after a takeover or
an abort.

Which holds are orphaned is decided by ``core.auction.audit.orphans`` from the
auctioneer's mirrors of the accounts and auctions buckets; this module only reads and
releases. Every release is ``Ledger.release``, a CAS on the account that also fences the
auction (a late reserve is refused), so when several auctioneers (or the auction's own
driver) release the same hold at once, exactly one removes it and only that one logs
``auction.hold_released`` and counts ``ba_auction_holds_released_total{reason}``.

A terminal stage never changes, so a hold judged by a stale mirror is still orphaned when
the fresh CAS removes it. An auction the mirror does not know is confirmed absent with a
direct read of the bucket first: a mirror that lags, or lost its keys in a leader change,
must not free money a live auction holds. Corrupt or foreign records are skipped and
counted (``ba_auction_reconcile_skipped_total``) and logged with their key, and a release
that fails is logged, counted and tried again at the next sweep: nothing aborts a sweep.
A sweep also screens every auction record it has not seen at its revision, so one whose
stage cannot even be read (which the takeover sweep passes over) is reported too.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, Protocol

import nats.js.errors as jse

from broker_agents.auction import metrics
from broker_agents.auction.audit import Skipped, account_of, report_once, skipped, stage_view
from broker_agents.auction.ledger import Ledger
from broker_agents.clock import wall_ms
from broker_agents.core.auction.audit import AuctionView, HoldReport, Reason, orphans
from broker_agents.core.budget import Account

RECORDS_PER_YIELD = 32
"""Auction records read between two yields to the event loop (the escrow screen here, the
takeover sweep in ``auctioneer.py``): a 100-bid record is ~17 KB to decode, the records
finished since the last sweep are many, and reading them all at once stalled the auctions
in flight."""


class MirrorView(Protocol):
    """What the reconcile reads of a local bucket copy (``kvmirror.KvMirror``)."""

    values: dict[str, tuple[bytes, int]]

    def get(self, key: str) -> tuple[bytes, int] | None: ...


class Reconciler:
    """Finds orphaned holds in the mirrors and releases each exactly once."""

    def __init__(self, ledger: Ledger, auctions: Any, accounts_mirror: MirrorView,
                 auctions_mirror: MirrorView, grace_ms: int, log: Any = None) -> None:
        self.ledger = ledger
        self.auctions = auctions
        self.accounts_mirror = accounts_mirror
        self.auctions_mirror = auctions_mirror
        self.grace_ms = grace_ms
        self.log = log
        self.skipped: Counter[str] = Counter()
        self._decoded: dict[str, tuple[int, Account | None]] = {}
        self._screened: dict[str, int] = {}

    def _accounts(self, auction_id: str | None) -> list[Account]:
        """Mirrored accounts holding escrow (for ``auction_id`` only, when given); each
        value decoded once per revision."""
        out = []
        values = self.accounts_mirror.values
        for key in list(values):
            data, rev = values[key]
            hit = self._decoded.get(key)
            if hit is None or hit[0] != rev:
                try:
                    account: Account | None = account_of(key, data)
                except Skipped as why:
                    skipped(self.skipped, "accounts", why.reason, key)
                    account = None
                hit = self._decoded[key] = (rev, account)
            account = hit[1]
            if account is not None and account.holds and (
                    auction_id is None or auction_id in account.holds):
                out.append(account)
        for gone in set(self._decoded) - set(values):
            del self._decoded[gone]
        return out

    def _stages(self, auction_ids: set[str]) -> dict[str, AuctionView | None]:
        views: dict[str, AuctionView | None] = {}
        for aid in auction_ids:
            cached = self.auctions_mirror.get(aid)
            if cached is None:
                continue
            try:
                views[aid] = stage_view(cached[0])
            except Skipped as why:
                skipped(self.skipped, "auctions", why.reason, aid)
                views[aid] = None
        return views

    async def screen_auctions(self) -> int:
        """Report each auction record whose stage cannot be read, once per revision; how
        many were found this time. Yields to the event loop every ``RECORDS_PER_YIELD`` records
        read, so that a sweep after many finished auctions does not stall those in flight."""
        found = 0
        read = 0
        values = self.auctions_mirror.values
        for key in list(values):
            if key not in values:  # gone while we yielded
                continue
            data, rev = values[key]
            if self._screened.get(key) == rev:
                continue
            read += 1
            if read % RECORDS_PER_YIELD == 0:
                await asyncio.sleep(0)  # sleep-ok: a yield, not a wait
            self._screened[key] = rev
            try:
                stage_view(data)
            except Skipped as why:
                found += 1
                self.skipped[f"auctions:{why.reason}"] += 1
                report_once("auctions", key, rev, why.reason)
        for gone in set(self._screened) - set(values):
            del self._screened[gone]
        return found

    async def run(self, trigger: str, auction_id: str | None = None) -> int:
        """Release every orphaned hold (of ``auction_id`` only, when given); how many this
        call released. ``trigger`` (sweep, takeover, abort) goes into the log line."""
        if auction_id is None:
            await self.screen_auctions()
        accounts = self._accounts(auction_id)
        if not accounts:
            return 0
        if auction_id is not None:
            accounts = [a.model_copy(update={"holds": {auction_id: a.holds[auction_id]}})
                        for a in accounts]
        ids = {aid for acc in accounts for aid in acc.holds}
        found = orphans(accounts, self._stages(ids), wall_ms(), self.grace_ms)
        released = 0
        for hold in found:
            try:
                released += await self._release(hold, trigger)
            except Exception as exc:  # one failed release must not end the sweep
                metrics.RECONCILE_ERRORS.inc()
                if self.log:
                    self.log.warning("auction.hold_release_failed", account=hold.account,
                                     auction=hold.auction_id, error=repr(exc))
        return released

    async def _release(self, hold: HoldReport, trigger: str) -> bool:
        if hold.reason is Reason.UNKNOWN_AUCTION and await self._exists(hold.auction_id):
            return False  # our mirror lags behind the bucket: the auction is alive
        removed = await self.ledger.release(hold.account, hold.auction_id)
        if removed is None:
            return False  # someone else released it first
        metrics.HOLDS_RELEASED.labels(str(hold.reason)).inc()
        if self.log:
            self.log.warning(
                "auction.hold_released", account=hold.account, auction=hold.auction_id,
                amount=removed.amount, stage=str(hold.stage) if hold.stage else None,
                reason=str(hold.reason), trigger=trigger, taken_by=removed.by,
                taken_ms=removed.taken_ms, lease=removed.lease)
        return True

    async def _exists(self, auction_id: str) -> bool:
        try:
            entry = await self.auctions.get(auction_id)
        except (jse.KeyNotFoundError, jse.KeyDeletedError):
            return False
        return entry.value is not None
