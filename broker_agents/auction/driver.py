"""Runs one auction: the pure core plus timers, scatter-gather, KV CAS and a lease.

Every transition is computed by the core from the stored state, written with CAS on the
record's revision (stamping our heartbeat), and only then are its effects carried out. A
failed CAS means another auctioneer took the lease: we stop without further effects.

Bids arrive two ways, both judged by the same core: as answers to the ``Announce`` we send
to every participant (scatter-gather; answers are judged in arrival order and persisted as
one batch), or pushed by anyone to ``<p>.auction.<id>.bid`` (judged and persisted one at a
time, answered with the accept/reject record).

Time is milliseconds since the epoch. When every participant has answered, the driver
does not wait out the round: it ends the round at its logical end tick (sealed auctions
close with reason ``all_answered``), so the logical clock may run ahead of the wall
clock; ``clock()`` never goes back behind the stored round start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from nats.aio.msg import Msg

from broker_agents import codec
from broker_agents.auction import metrics
from broker_agents.auction.host import AuctionHost
from broker_agents.auction.kvstore import KvMirror
from broker_agents.auction.messages import Announce, BidAnswer, BidNotice
from broker_agents.auction.records import AuctionRecord, RecordEncoder, Stage
from broker_agents.clock import wall_ms
from broker_agents.core import auction as core
from broker_agents.core.auction import dutch, english
from broker_agents.core.auction.types import (
    Admission,
    AuctionClosed,
    AuctionState,
    Bid,
    BidAccepted,
    BidRejected,
    Effect,
    Mechanism,
    Phase,
    PriceAnnounced,
    RejectReason,
)
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.kv import is_cas_conflict
from broker_agents.messages import envelope

ROUNDED = (Mechanism.ENGLISH, Mechanism.DUTCH)


class LeaseLost(Exception):
    """Our CAS failed: another auctioneer owns this auction now."""


class AuctionDriver:
    def __init__(self, host: AuctionHost, record: AuctionRecord, revision: int) -> None:
        self.host = host
        self.record = record
        self.rev = revision
        self.aid = record.auction_id
        self.log = host.log.bind(auction_id=self.aid) if host.log else None
        self._lock = asyncio.Lock()
        self._answered: set[str] = set()
        self._startup_effects: list[Effect] = []
        self.lost = False
        self.encoder = RecordEncoder()
        self.bids_ms: float | None = None  # time spent in calls for bids (``gather``)

    # -- creation and persistence ------------------------------------------------------

    @classmethod
    def new_record(cls, host: AuctionHost, request: Any, config: Any,
                   participants: list[str], now: int) -> tuple[AuctionRecord, list[Effect]]:
        state, effects = core.start(config, now)
        record = AuctionRecord(
            auction_id=config.auction_id, request=request, participants=tuple(participants),
            state=state, owner=host.owner, heartbeat_ms=now, started_ms=now)
        return record, effects

    @classmethod
    async def create(cls, host: AuctionHost, record: AuctionRecord,
                     effects: list[Effect]) -> AuctionDriver:
        encoder = RecordEncoder()
        try:
            rev = await host.auctions.create(record.auction_id, encoder.encode(record))
        except Exception as exc:
            if is_cas_conflict(exc):
                raise BrokerError(ErrorCode.ALREADY_EXISTS,
                                  f"auction {record.auction_id} already exists",
                                  {"field": "auction_id"}) from exc
            raise
        driver = cls(host, record, rev)
        driver.encoder = encoder
        driver._startup_effects = effects
        return driver

    async def write(self, record: AuctionRecord) -> None:
        """CAS the record (caller holds the lock); raises ``LeaseLost`` on conflict."""
        if self.lost:
            raise LeaseLost(self.aid)
        record = record.model_copy(update={"heartbeat_ms": wall_ms()})
        try:
            self.rev = await self.host.auctions.update(self.aid, self.encoder.encode(record),
                                                       last=self.rev)
        except Exception as exc:
            if is_cas_conflict(exc):
                self.lost = True
                metrics.LEASES_LOST.inc()
                raise LeaseLost(self.aid) from exc
            raise
        self.record = record

    async def transition(self, **update: Any) -> None:
        async with self._lock:
            await self.write(self.record.model_copy(update=update))

    async def heartbeat(self) -> None:
        """Renew the lease until cancelled or lost."""
        period = self.host.lease_ms / 3000
        while not self.lost and not self.record.terminal:
            await asyncio.sleep(period)  # sleep-ok: lease renewal period
            with contextlib.suppress(LeaseLost):
                async with self._lock:
                    if not self.record.terminal:
                        await self.write(self.record)

    # -- the open phase ---------------------------------------------------------------

    def clock(self, state: AuctionState | None = None) -> int:
        state = state or self.record.state
        return max(wall_ms(), state.round_started, state.opened_at)

    async def run_open(self) -> None:
        """Drive the auction until the core says it is closed."""
        await self.perform(self._startup_effects)
        while self.record.state.phase is Phase.OPEN:
            state = self.record.state
            await self.advance(self.clock(state))
            state = self.record.state
            if state.phase is not Phase.OPEN:
                break
            round_no, targets, announce, end = self._plan(state)
            all_answered = True
            if targets:
                timeout = max(0.001, (end - self.clock(state)) / 1000)
                # Catch the admission mirrors up while the bidders think (not after): admission
                # then sees every write acknowledged before the call went out; the escrow's
                # CAS on the account decides in the end anyway.
                syncing = asyncio.ensure_future(self.sync_mirrors())
                try:
                    bids, all_answered = await self.gather(targets, announce, timeout)
                    direct = await syncing
                finally:  # if gather failed, its error wins; the sync is not left behind
                    syncing.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await syncing
                # A sealed auction everyone answered closes in the same write as the bids.
                close = all_answered and state.config.mechanism not in ROUNDED
                if bids or close:
                    await self.submit_batch(bids, close=close, direct=direct)
            state = self.record.state
            if state.phase is not Phase.OPEN or state.round != round_no:
                continue
            if all_answered:
                await self.end_round_early(state, end)
            else:
                wait = (end - wall_ms()) / 1000
                if wait > 0:
                    await asyncio.sleep(wait)  # sleep-ok: silent bidders; wait out the round

    def _plan(self, state: AuctionState) -> tuple[int, list[str], Announce, int]:
        cfg = state.config
        if cfg.mechanism in ROUNDED:
            end = state.round_started + cfg.round_ticks
            if cfg.mechanism is Mechanism.ENGLISH:
                standing = state.standing.bidder if state.standing else None
                price = cfg.opening_price if state.standing is None else state.standing.amount
                announce = Announce(config=cfg, round=state.round, price=price,
                                    min_bid=english.min_bid(state), standing_bidder=standing,
                                    deadline_ms=end)
                targets = [p for p in self.record.participants if p != standing]
            else:
                price = dutch.clock_price(state)
                announce = Announce(config=cfg, round=state.round, price=price,
                                    min_bid=price, deadline_ms=end)
                targets = list(self.record.participants)
            return state.round, targets, announce, end
        end = state.opened_at + cfg.duration_ticks
        have = {b.bidder for b in state.bids} | self._answered
        targets = [p for p in self.record.participants if p not in have]
        return state.round, targets, Announce(config=cfg, deadline_ms=end), end

    async def end_round_early(self, state: AuctionState, end: int) -> None:
        """Everyone answered: close a sealed auction, or end the round at its end tick."""
        if state.config.mechanism in ROUNDED:
            await self.advance(max(end, self.clock(state)))
            return
        async with self._lock:
            step = core.close(self.record.state, self.clock(), reason="all_answered")
            await self._store(step.state)
        await self.perform(step.effects)

    async def advance(self, now: int) -> None:
        async with self._lock:
            step = core.tick(self.record.state, now)
            if step.state is self.record.state:
                return
            await self._store(step.state)
        await self.perform(step.effects)

    async def _store(self, state: AuctionState) -> None:
        """Write a new core state; a closed state also moves the stage on."""
        update: dict[str, Any] = {"state": state}
        if state.phase is not Phase.OPEN and self.record.stage is Stage.OPEN:
            update["stage"] = Stage.CLOSED
        await self.write(self.record.model_copy(update=update))

    # -- bids ------------------------------------------------------------------------

    async def gather(self, targets: list[str], announce: Announce,
                     timeout: float) -> tuple[list[Bid], bool]:
        """Ask every target at once; bids in arrival order, and whether all answered.

        One encoded call, one reply inbox (``<inbox>.<n>`` names the target), one timer:
        cheaper than a request per bidder. An absent bidder (no responders) counts as an
        answer without bids.
        """
        nc, subjects = self.host.nc, self.host.subjects
        data = codec.encode(envelope(announce))
        arrived: list[Bid] = []
        sealed = announce.config.mechanism not in ROUNDED
        waiting = dict(enumerate(targets))
        everyone = asyncio.get_running_loop().create_future()
        inbox = nc.new_inbox()

        async def on_reply(msg: Msg) -> None:
            target = waiting.pop(int(msg.subject.rsplit(".", 1)[1]), None)
            if target is None:
                return
            if not waiting and not everyone.done():
                everyone.set_result(None)
            if msg.headers and msg.headers.get("Status") == "503":
                return
            self._take_answer(target, msg, arrived, sealed)

        sub = await nc.subscribe(f"{inbox}.*", cb=on_reply)
        started = time.perf_counter()
        try:
            for n, target in enumerate(targets):
                await nc.publish(subjects.agent(target), data, reply=f"{inbox}.{n}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(everyone, timeout)
        finally:
            took = (time.perf_counter() - started) * 1000
            self.bids_ms = (self.bids_ms or 0.0) + took
            await sub.unsubscribe()
        return arrived, not waiting

    def _take_answer(self, target: str, msg: Msg, arrived: list[Bid], sealed: bool) -> None:
        try:
            payload = codec.decode(msg.data, msg.headers)
            err = BrokerError.from_payload(payload)
            if err is not None:
                raise err
            answer = BidAnswer.model_validate(payload)
        except Exception as exc:
            if self.log:
                self.log.info("unusable bid answer", bidder=target, error=repr(exc))
            return
        if sealed:
            self._answered.add(target)
        for bid in answer.bids:
            if bid.bidder == target and bid.auction_id == self.aid:
                arrived.append(bid)
            else:
                metrics.BIDS.labels("spoofed").inc()

    async def sync_mirrors(self) -> tuple[bool, bool]:
        """Catch the accounts and reputation mirrors up with their buckets, concurrently.

        Per mirror: whether admission must read the bucket directly instead (no mirror, or
        it could not catch up). Mirrors this auction does not need are left alone.
        """
        req = self.record.request

        async def direct(mirror: KvMirror | None, wanted: bool) -> bool:
            return wanted and (mirror is None or not await mirror.sync())

        accounts, scores = await asyncio.gather(
            direct(self.host.accounts_mirror, req.budgets),
            direct(self.host.reputation_mirror, req.min_reputation is not None))
        return accounts, scores

    async def admissions(self, bidders: set[str],
                         direct: tuple[bool, bool] | None = None) -> dict[str, Admission]:
        """Funds, per-task cap and reputation per bidder, from freshly synced mirrors
        (``direct``: what ``sync_mirrors`` said, when the caller already synced them)."""
        req = self.record.request
        if not req.budgets and req.min_reputation is None:
            return {}
        host = self.host
        funds: dict[str, tuple[float, float | None]] = {}
        scores: dict[str, float | None] = {}
        direct_accounts, direct_scores = direct or await self.sync_mirrors()
        if req.budgets:
            fresh = direct_accounts
            for b in bidders:
                acc = await host.ledger.account(b) if fresh else (
                    await host.ledger.read(b, fresh=False))[0]
                funds[b] = (0.0, None) if acc is None else (acc.available, acc.max_per_task)
        if req.min_reputation is not None:
            for b in bidders:
                scores[b] = await host.reputation.score(b, fresh=direct_scores)
        out: dict[str, Admission] = {}
        for b in bidders:
            avail, cap = funds.get(b, (None, None))
            out[b] = Admission(available=avail, max_per_task=cap, reputation=scores.get(b))
        return out

    async def submit_batch(self, bids: list[Bid], close: bool = False,
                           direct: tuple[bool, bool] | None = None) -> None:
        """Judge bids in arrival order and persist them (and the close) in one write."""
        admission = await self.admissions({b.bidder for b in bids}, direct) if bids else {}
        async with self._lock:
            now = self.clock()
            state, effects = core.submit_many(self.record.state, bids, now, admission)
            if close:
                state, more = core.close(state, now, reason="all_answered")
                effects.extend(more)
            if state is self.record.state:
                return
            await self._store(state)
        await self.perform(effects)

    async def on_bid(self, msg: Msg) -> None:
        """A bid pushed to ``<p>.auction.<id>.bid``: judge, persist, answer."""
        as_json = codec.is_json(msg.data, msg.headers)
        try:
            bid = core.parse_bid(codec.decode(msg.data, msg.headers, as_json))
            reply = await self._judge_pushed(bid)
        except LeaseLost:
            reply = BrokerError(ErrorCode.CONFLICT, "auction moved to another auctioneer",
                                {"auction_id": self.aid}).to_payload()
        except BrokerError as exc:
            reply = exc.to_payload()
        if msg.reply:
            await self.host.nc.publish(msg.reply, codec.encode(reply, as_json=as_json))

    async def _judge_pushed(self, bid: Bid) -> Any:
        if bid.bidder not in self.record.participants:
            metrics.BIDS.labels(str(RejectReason.NOT_ELIGIBLE)).inc()
            return BidRejected(auction_id=self.aid, msg_id=bid.msg_id, bidder=bid.bidder,
                               reason=RejectReason.NOT_ELIGIBLE,
                               message=f"{bid.bidder} is not a participant of this auction"
                               ).to_error_payload()
        admission = await self.admissions({bid.bidder})
        async with self._lock:
            step = core.submit(self.record.state, bid, self.clock(), admission.get(bid.bidder))
            # A closed auction only records the id of a bid it refuses: not worth a write.
            if self.record.state.phase is Phase.OPEN:
                await self._store(step.state)
        await self.perform(step.effects, pushed=bid.msg_id)
        for eff in step.effects:
            if isinstance(eff, BidRejected) and eff.msg_id == bid.msg_id:
                return eff.to_error_payload()
            if isinstance(eff, BidAccepted) and eff.msg_id == bid.msg_id:
                return eff.model_dump(mode="json")
        raise BrokerError(ErrorCode.INTERNAL, "the core did not judge the bid")

    # -- effects ---------------------------------------------------------------------

    async def perform(self, effects: list[Effect], pushed: str | None = None) -> None:
        nc, subjects = self.host.nc, self.host.subjects
        accepted = 0
        for eff in effects:
            if isinstance(eff, BidAccepted):
                accepted += 1
            elif isinstance(eff, BidRejected):
                metrics.BIDS.labels(str(eff.reason)).inc()
                if eff.msg_id != pushed:
                    notice = BidNotice(auction_id=self.aid, msg_id=eff.msg_id,
                                       reason=str(eff.reason), message=eff.message)
                    await nc.publish(subjects.agent(eff.bidder), codec.encode(envelope(notice)))
            elif isinstance(eff, PriceAnnounced):
                await nc.publish(subjects.auction(self.aid, "announce"), codec.encode(eff))
            elif isinstance(eff, AuctionClosed):
                await nc.publish(subjects.auction(self.aid, "closed"), codec.encode(eff))
        if accepted:
            metrics.BIDS.labels("accepted").inc(accepted)
