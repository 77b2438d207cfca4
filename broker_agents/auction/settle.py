"""After the close: escrow, award, acknowledgement, settlement — each step resumable.

    closed --reserve every payer, award, all ack--> acked --debit+credit--> settled
    closed (nothing sold) --> unsold;  reserve refused / award not acknowledged --> failed

Each step reads payers and prices from the stored outcome and is idempotent (holds, debits
and credits are keyed by the auction id), so a successor that finds the record in any
stage simply runs the remaining steps: an award is settled at most once, and once the
acknowledgement is stored it is settled exactly once. ``failed`` releases every hold.

Escrow is not recorded as a stage of its own (one write less per auction): a successor
that finds ``closed`` reserves again, which is a no-op for a hold already taken, and
``failed`` releases holds whatever the stage. Without budgets there is nothing to settle,
so ``closed`` goes to ``settled`` as soon as every winner acknowledged.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import nats.errors

from broker_agents import codec
from broker_agents.auction import metrics
from broker_agents.auction.messages import AuctionResult, AwardAck, AwardNotice, allocation_of
from broker_agents.auction.records import AuctionRecord, Stage
from broker_agents.clock import wall_ms
from broker_agents.core.errors import BrokerError, LocalProtocolError
from broker_agents.messages import envelope
from broker_agents.transport import request as nats_request

if TYPE_CHECKING:
    from broker_agents.auction.driver import AuctionDriver


async def finish(d: AuctionDriver) -> None:
    """Run the remaining post-close steps until the record is terminal."""
    while not d.record.terminal:
        stage = d.record.stage
        if stage is Stage.CLOSED:
            if await reserve(d):
                await award(d)
        elif stage is Stage.RESERVED:
            await award(d)
        elif stage is Stage.ACKED:
            await settle(d)
        else:
            raise LocalProtocolError("internal", f"cannot finish an auction in stage {stage}")


async def _done(d: AuctionDriver, stage: Stage, **update: object) -> None:
    await d.transition(stage=stage, finished_ms=wall_ms(), **update)


async def reserve(d: AuctionDriver) -> bool:
    """Escrow every winner's payment; False when the auction ended here instead."""
    outcome = d.record.outcome
    if outcome is None or not outcome.sold:
        await _done(d, Stage.UNSOLD)
        return False
    owed = d.record.payments()
    if d.record.request.budgets:
        for payer in sorted(owed):
            try:
                await d.host.ledger.reserve(payer, d.aid, owed[payer])
            except BrokerError as exc:
                await fail(d, f"escrow for {payer} refused: {exc.message}")
                return False
    return True


async def award(d: AuctionDriver) -> None:
    """Tell every winner what it won; all must acknowledge within the award timeout."""
    record = d.record
    outcome = record.outcome
    assert outcome is not None
    owed = record.payments()
    timeout = record.request.award_timeout_ms / 1000
    pending = [w for w in sorted(owed) if w not in record.acked]

    async def notify(winner: str) -> str | None:
        notice = AwardNotice(auction_id=d.aid, total=owed[winner], seller=record.request.seller,
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

    problems = [p for p in await asyncio.gather(*(notify(w) for w in pending)) if p]
    if problems:
        await fail(d, "; ".join(problems))
        return
    if not record.request.budgets:
        await _done(d, Stage.SETTLED, reserved=tuple(sorted(owed)), acked=tuple(sorted(owed)))
        return
    await d.transition(stage=Stage.ACKED, reserved=tuple(sorted(owed)),
                       acked=tuple(sorted(owed)))


async def settle(d: AuctionDriver) -> None:
    """Debit each winner and credit the seller, exactly once each (keyed by auction id)."""
    record = d.record
    owed = record.payments()
    seller = record.request.seller
    if record.request.budgets:
        for payer in sorted(owed):
            if payer in record.settled:
                continue
            await d.host.ledger.debit(payer, d.aid, owed[payer])
            await d.host.ledger.credit(seller, d.aid, payer, owed[payer])
            metrics.SETTLEMENTS.inc()
    await _done(d, Stage.SETTLED, settled=tuple(sorted(owed)))


async def fail(d: AuctionDriver, why: str) -> None:
    """Release every hold this auction may have taken, then record the failure."""
    if d.record.request.budgets:
        for payer in sorted(d.record.payments()):
            await d.host.ledger.release(payer, d.aid)
    if d.log:
        d.log.warning("auction failed", reason=why)
    await _done(d, Stage.FAILED, failure=why)


def result_of(record: AuctionRecord, bids_ms: float | None = None) -> AuctionResult:
    outcome = record.outcome
    if outcome is None:
        raise LocalProtocolError("internal", f"auction {record.auction_id} has no outcome")
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
