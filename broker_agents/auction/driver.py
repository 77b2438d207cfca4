"""Runs one auction: the pure core plus timers, the call for bids, KV CAS and a lease.

The core decides; this module does the IO. Every transition is computed by
``core.step`` from the stored state, written with CAS on the record's revision (stamping
our heartbeat), and only then are its effects carried out. A failed CAS means another
auctioneer took the lease: we stop without further effects (``LeaseLost``).

Each round, ``core.plan`` says who gets the call for bids, with what, until when. The call
goes out once to every target through the shared gatherer (``broker_agents.gather``);
answers are handed to the core as ``CallAnswered`` in arrival order: all at once when
everyone answered quickly, or in batches at the lease-renewal period while some are still
thinking, so an auctioneer that takes over keeps both the bids and who already answered.
Bids may also be pushed by anyone to ``<p>.auction.<id>.bid`` (``BidReceived``; judged and
persisted one at a time, answered with the accept/reject record).

Every bid is an act of its bidder (``broker_agents.identity``): an answer to a call for
bids lands in this node's inbox, where only nodes may publish, and names the target's own
bids only (an answer signed for anyone else is refused and counted by the gatherer, and
does not take the bidder's place); a pushed bid's bidder must be its signer
(``bound_bid``). The reply to a pushed bid in a sealed auction does not say how
many bids came before it (``acts.bid_receipt``). A winner that declines its award or
ignores it abandoned the task: ``abandoned`` records the seller's ``abandoned_task``
violation against it in reputation (once per auction).

Time is milliseconds since the epoch. When every target has answered, the core does not
wait out the round: it ends the round at its end tick (sealed auctions close with reason
``all_answered``), so the logical clock may run ahead of the wall clock; ``clock()``
never goes back behind the stored round start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from nats.aio.msg import Msg

from broker_agents import codec, gather, identity
from broker_agents.auction import metrics
from broker_agents.auction.host import AuctionHost
from broker_agents.auction.messages import Announce, BidAnswer, BidNotice
from broker_agents.auction.records import AuctionRecord, RecordEncoder, Stage
from broker_agents.clock import wall_ms
from broker_agents.core import auction as core
from broker_agents.core import reputation
from broker_agents.core.auction import settlement
from broker_agents.core.auction.acts import bid_receipt
from broker_agents.core.auction.types import (
    Admission,
    AuctionClosed,
    AuctionState,
    Bid,
    BidAccepted,
    BidRejected,
    Effect,
    Phase,
    PriceAnnounced,
)
from broker_agents.core.errors import BrokerError, CodedError, ErrorCode
from broker_agents.kv import is_cas_conflict
from broker_agents.kvmirror import KvMirror
from broker_agents.messages import envelope
from broker_agents.reply import respond

TAKEN_OVER = "taken_over"
"""Details key set (True) on errors that mean "another auctioneer drives this auction now":
its result is published on the auction's result subject."""


class LeaseLost(CodedError):
    """Our CAS failed: another auctioneer owns this auction now."""

    CODE = ErrorCode.CONFLICT

    def __init__(self, auction_id: str) -> None:
        super().__init__(f"auction {auction_id} moved to another auctioneer",
                         {"auction_id": auction_id, TAKEN_OVER: True})


def bound_bid(nc: Any, msg: Msg, as_json: bool) -> Bid:
    """A pushed bid whose bidder is its signer (``unauthorized`` otherwise, counted)."""
    principal = identity.authenticate(nc, msg.subject, msg.data, msg.headers,
                                      component="auction")
    bid = core.parse_bid(codec.decode(msg.data, msg.headers, as_json))
    identity.bind_act(nc, principal, bid.bidder, "bidder", component="auction")
    return bid


class AuctionDriver:
    def __init__(self, host: AuctionHost, record: AuctionRecord, revision: int) -> None:
        self.host = host
        self.record = record
        self.rev = revision
        self.aid = record.auction_id
        self.log = host.log.bind(auction_id=self.aid) if host.log else None
        self._lock = asyncio.Lock()
        self._startup_effects: list[Effect] = []
        self.lost = False
        self.encoder = RecordEncoder()
        self.bids_ms: float | None = None  # time spent in calls for bids
        self.flush_s = host.lease_ms / 3000  # early answers are persisted at this period

    # -- creation and persistence ------------------------------------------------------

    @classmethod
    def new_record(cls, host: AuctionHost, request: Any, config: Any,
                   participants: list[str], now: int) -> tuple[AuctionRecord, list[Effect]]:
        state, effects = core.start(config, now, participants)
        record = AuctionRecord(auction_id=config.auction_id, request=request, state=state,
                               owner=host.owner, heartbeat_ms=now, started_ms=now)
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
        while not self.lost and not self.record.terminal:
            await asyncio.sleep(self.flush_s)  # sleep-ok: lease renewal period
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
            await self.apply(core.Tick(self.clock()))
            state = self.record.state
            if state.phase is not Phase.OPEN:
                break
            call = core.plan(state)
            await self.call_for_bids(call)
            state = self.record.state
            if state.phase is Phase.OPEN and state.round == call.round:
                wait = (call.end - wall_ms()) / 1000
                if wait > 0:  # some stayed silent: the round runs to its end
                    await asyncio.sleep(wait)  # sleep-ok: silent bidders; wait out the round

    async def call_for_bids(self, call: core.RoundPlan) -> None:
        """Send the round's call to its targets and hand the answers to the core: at the
        flush period while some are missing, and when everyone answered or time is up."""
        if not call.targets:  # nobody left to ask: everyone has answered
            await self.answered(call, [], None)
            return
        cfg = self.record.state.config
        announce = Announce(config=cfg, round=call.round, price=call.price,
                            min_bid=call.min_bid, standing_bidder=call.standing_bidder,
                            deadline_ms=call.end)
        data = codec.encode(envelope(announce))
        gatherer = await gather.gatherer(self.host.nc)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.001, (call.end - self.clock()) / 1000)
        # Catch the admission mirrors up while the bidders think (not after): admission
        # then sees every write acknowledged before the call went out; the escrow's CAS on
        # the account decides in the end anyway.
        syncing = asyncio.ensure_future(self.sync_mirrors())
        direct: tuple[bool, bool] | None = None
        started = time.perf_counter()
        took: float | None = None
        try:
            async with gatherer.call(self.host.subjects, call.targets, data) as pending:
                while took is None:
                    await pending.wait(min(deadline - loop.time(), self.flush_s))
                    arrived = pending.take()
                    if pending.everyone_answered or loop.time() >= deadline:
                        took = (time.perf_counter() - started) * 1000
                    if arrived:
                        if direct is None:
                            direct = await syncing
                        await self.answered(call, arrived, direct)
        finally:  # if the call failed, its error wins; the sync is not left behind
            self.bids_ms = (self.bids_ms or 0.0) + (
                took if took is not None else (time.perf_counter() - started) * 1000)
            syncing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await syncing

    async def answered(self, call: core.RoundPlan, arrived: list[tuple[str, gather.Outcome]],
                       direct: tuple[bool, bool] | None) -> None:
        """Judge the bids of these answers in arrival order, with who answered, in one write."""
        answered, bids = self._read_answers(arrived)
        admission = await self.admissions({b.bidder for b in bids}, direct) if bids else {}
        async with self._lock:
            event = core.CallAnswered(call, answered, bids, self.clock(), admission)
            step = core.step(self.record.state, event)
            if step.state is not self.record.state:
                await self._store(step.state)
        await self.perform(step.effects)

    def _read_answers(self, arrived: list[tuple[str, gather.Outcome]]
                      ) -> tuple[list[str], list[Bid]]:
        """Who answered, and their bids. Only a target's own bids count: the reply subject
        names the target, a bid naming anyone else (or another auction) is dropped."""
        answered: list[str] = []
        bids: list[Bid] = []
        for target, outcome in arrived:
            answered.append(target)
            answer = gather.parse_answer(outcome, BidAnswer)
            if isinstance(answer, BrokerError):
                if answer.code is ErrorCode.UNAUTHORIZED:  # logged where it was refused
                    metrics.BIDS.labels("unauthorized").inc()
                elif answer.code is not ErrorCode.UNAVAILABLE and self.log:  # absent: quiet
                    self.log.info("unusable bid answer", bidder=target, error=repr(answer))
                continue
            for bid in answer.bids:
                if bid.bidder == target and bid.auction_id == self.aid:
                    bids.append(bid)
                else:
                    metrics.BIDS.labels("spoofed").inc()
        return answered, bids

    async def apply(self, event: core.AuctionEvent) -> None:
        """Step the core with ``event``; store and perform what changed."""
        async with self._lock:
            step = core.step(self.record.state, event)
            if step.state is self.record.state:
                return
            await self._store(step.state)
        await self.perform(step.effects)

    async def _store(self, state: AuctionState) -> None:
        """Write a new core state; a closed state also moves the stage on."""
        update: dict[str, Any] = {"state": state}
        if state.phase is not Phase.OPEN and self.record.stage is Stage.OPEN:
            update["stage"] = settlement.next_stage(Stage.OPEN, settlement.Happened.CLOSED)
        await self.write(self.record.model_copy(update=update))

    # -- admission --------------------------------------------------------------------

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

    # -- pushed bids ------------------------------------------------------------------

    async def on_bid(self, msg: Msg) -> None:
        """A bid pushed to ``<p>.auction.<id>.bid``: judge, persist, answer."""
        as_json = codec.is_json(msg.data, msg.headers)
        try:
            bid = bound_bid(self.host.nc, msg, as_json)
            reply = await self._judge_pushed(bid)
        except BrokerError as exc:  # LeaseLost and Unauthorized included
            if exc.code is ErrorCode.UNAUTHORIZED:
                metrics.BIDS.labels("unauthorized").inc()
            reply = exc.to_payload()
        await respond(self.host.nc, msg.reply, reply, as_json, component="auction")

    async def _judge_pushed(self, bid: Bid) -> Any:
        # Strangers are refused by the core; their bids are not worth a read of the buckets.
        invited = core.invited(self.record.state, bid.bidder)
        admission = await self.admissions({bid.bidder}) if invited else {}
        async with self._lock:
            before = self.record.state
            event = core.BidReceived(bid, self.clock(), admission.get(bid.bidder))
            step = core.step(before, event)
            # A closed auction only records the id of a bid it refuses: not worth a write.
            if step.state is not before and before.phase is Phase.OPEN:
                await self._store(step.state)
        await self.perform(step.effects, pushed=bid.msg_id)
        for eff in step.effects:
            if isinstance(eff, BidRejected) and eff.msg_id == bid.msg_id:
                return eff.to_error_payload()
            if isinstance(eff, BidAccepted) and eff.msg_id == bid.msg_id:
                return bid_receipt(self.record.state.config.mechanism, eff)
        raise BrokerError(ErrorCode.INTERNAL, "the core did not judge the bid")

    # -- awards ----------------------------------------------------------------------

    async def abandoned(self, winner: str) -> None:
        """Penalise a winner that declined or ignored its award (on the seller's word, once
        per auction); reputation trouble never fails the auction."""
        seller = self.record.request.seller
        settled = reputation.SettledAuction(auction_id=self.aid, task_id=self.aid,
                                            parties=(winner, seller))
        try:
            await self.host.reputation.violation(winner, seller,
                                                 reputation.Violation.ABANDONED, settled)
        except BrokerError as exc:  # already penalised (a resumed award), or contention
            if exc.code is not ErrorCode.DUPLICATE and self.log:
                self.log.warning("abandoned award not recorded", winner=winner,
                                 error=exc.message[:200])
        except Exception as exc:
            if self.log:
                self.log.warning("abandoned award not recorded", winner=winner,
                                 error=repr(exc))

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
