"""After the close: carry out what the settlement table (``core.auction.settlement``) asks.

The table decides the stages, what each transition records and releases, and what work
comes next; this module only performs the effects against the ledger, the winners' inboxes
and the auction record, and reports what happened. It resumes from any stored stage, so
an auctioneer that takes an auction over simply runs the remaining steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import nats.errors

from broker_agents import codec
from broker_agents.auction import metrics
from broker_agents.auction.messages import AuctionResult, AwardAck, AwardNotice, allocation_of
from broker_agents.auction.records import AuctionRecord, Stage, settlement_of
from broker_agents.clock import wall_ms
from broker_agents.core.auction import settlement
from broker_agents.core.auction.settlement import (
    Event,
    Happened,
    Pay,
    RecordStage,
    ReleaseHold,
    ReserveHold,
    SendAward,
    SettlementEffect,
)
from broker_agents.core.errors import BrokerError, ErrorCode, LocalProtocolError
from broker_agents.messages import envelope
from broker_agents.transport import request as nats_request

if TYPE_CHECKING:
    from broker_agents.auction.driver import AuctionDriver


async def finish(d: AuctionDriver) -> None:
    """Run the remaining post-close steps until the record is terminal."""
    step = settlement.step(settlement_of(d.record), Event(Happened.RESUME))
    while True:
        happened = await perform(d, step.effects)
        if happened is None:
            if not step.state.terminal:
                raise LocalProtocolError(ErrorCode.INTERNAL, "settlement stopped in stage "
                                         f"{step.state.stage} with no work to do")
            return
        step = settlement.step(step.state, happened)


async def fail(d: AuctionDriver, why: str) -> bool:
    """Fail the auction (releasing every hold) if its stage still allows it."""
    state = settlement_of(d.record)
    if not settlement.allows(state.stage, Happened.FAILED):
        return False
    await perform(d, settlement.step(state, Event(Happened.FAILED, why)).effects)
    return True


async def perform(d: AuctionDriver, effects: Sequence[SettlementEffect]) -> Event | None:
    """Carry the effects out in order; the event the closing work led to, if any."""
    holds: list[ReserveHold] = []
    awards: list[SendAward] = []
    pays: list[Pay] = []
    for eff in effects:
        if isinstance(eff, ReleaseHold):
            await d.host.ledger.release(eff.payer, d.aid)
        elif isinstance(eff, RecordStage):
            await _record(d, eff)
        elif isinstance(eff, ReserveHold):
            holds.append(eff)
        elif isinstance(eff, SendAward):
            awards.append(eff)
        else:
            pays.append(eff)
    if holds:
        return await _reserve(d, holds)
    if awards:
        return await _award(d, awards)
    if pays:
        return await _pay(d, pays)
    return None


async def _record(d: AuctionDriver, eff: RecordStage) -> None:
    if eff.stage is Stage.FAILED and d.log:
        d.log.warning("auction failed", reason=eff.failure)
    update: dict[str, object] = {"stage": eff.stage, "reserved": eff.reserved,
                                 "acked": eff.acked, "settled": eff.settled,
                                 "failure": eff.failure}
    if eff.finished:
        update["finished_ms"] = wall_ms()
    await d.transition(**update)


async def _reserve(d: AuctionDriver, holds: list[ReserveHold]) -> Event:
    """Escrow every payer's payment, in order; the first refusal ends it.

    Each hold names its auction, the time, this auctioneer and its lease (the record's
    takeover count). A refusal because the auction's escrow was already released or paid
    (``fenced``) means we were deposed without knowing it yet: the failure we then try to
    record loses the CAS, and we stop.
    """
    for hold in holds:
        try:
            await d.host.ledger.reserve(hold.payer, d.aid, hold.amount, taken_ms=wall_ms(),
                                        by=d.host.owner, lease=d.record.takeovers)
        except BrokerError as exc:
            fenced = exc.details.get("fenced")
            if fenced is not None:
                metrics.HOLDS_FENCED.labels(str(fenced)).inc()
                if d.log:
                    d.log.warning("auction.hold_fenced", account=hold.payer, auction=d.aid,
                                  amount=hold.amount, fenced=str(fenced))
            return Event(Happened.RESERVE_REFUSED,
                         f"escrow for {hold.payer} refused: {exc.message}")
    return Event(Happened.RESERVED)


async def _award(d: AuctionDriver, awards: list[SendAward]) -> Event:
    """Tell every winner what it won; all must acknowledge within the award timeout."""
    record = d.record
    outcome = record.outcome
    assert outcome is not None
    timeout = record.request.award_timeout_ms / 1000

    async def notify(award: SendAward) -> str | None:
        winner = award.winner
        notice = AwardNotice(auction_id=d.aid, total=award.total, seller=record.request.seller,
                             awards=[a for a in outcome.awards if a.bidder == winner])
        try:
            msg = await nats_request(d.host.nc,
                d.host.subjects.agent(winner),
                codec.encode(envelope(notice, msg_id=f"award-{d.aid}-{winner}")),
                timeout=timeout)
            payload = codec.decode(msg.data, msg.headers)
            err = BrokerError.from_payload(payload)
            if err is not None:
                return f"{winner} refused the award: {err.message}"
            ack = AwardAck.model_validate(payload)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            return f"{winner} did not acknowledge the award"
        except Exception as exc:
            return f"{winner} answered the award with garbage: {exc!r}"
        if not ack.accepted or ack.auction_id != d.aid:
            return f"{winner} declined the award"
        return None

    problems = [p for p in await asyncio.gather(*(notify(a) for a in awards)) if p]
    if problems:
        return Event(Happened.ACK_MISSING, "; ".join(problems))
    return Event(Happened.ACKNOWLEDGED)


async def _pay(d: AuctionDriver, pays: list[Pay]) -> Event:
    """Debit each payer and credit the seller, exactly once each (keyed by auction id)."""
    for pay in pays:
        await d.host.ledger.debit(pay.payer, d.aid, pay.amount)
        await d.host.ledger.credit(pay.seller, d.aid, pay.payer, pay.amount)
        metrics.SETTLEMENTS.inc()
    return Event(Happened.SETTLED)


def result_of(record: AuctionRecord, bids_ms: float | None = None) -> AuctionResult:
    outcome = record.outcome
    if outcome is None:
        raise LocalProtocolError(ErrorCode.INTERNAL,
                                 f"auction {record.auction_id} has no outcome")
    alloc, prices = allocation_of(outcome)
    finished = record.finished_ms or wall_ms()
    return AuctionResult(
        auction_id=record.auction_id, mechanism=outcome.mechanism, status=str(record.stage),
        sold=outcome.sold, winner=outcome.winner, winners=list(outcome.winners),
        allocation=alloc, prices=prices, price=outcome.price, num_bids=outcome.num_bids,
        num_participants=outcome.num_participants, invited=len(record.participants),
        rounds=outcome.rounds, tie_broken=outcome.tie_broken, exact=outcome.exact,
        reason=outcome.reason, settled=record.stage is Stage.SETTLED,
        seller=record.request.seller, duration_ms=float(finished - record.started_ms),
        auctioneer=record.owner, takeovers=record.takeovers, failure=record.failure,
        bids_ms=bids_ms,
    )
