"""After the close: carry out what the settlement table (``core.auction.settlement``) asks.

The table decides the stages, what each transition records and releases, and what work
comes next; this module only performs the effects against the ledger, the winners' inboxes
and the auction record, and reports what happened. It resumes from any stored stage, so
an auctioneer that takes an auction over simply runs the remaining steps.

Awards are signed acts: each winner is asked with a signed gather, so only an answer
signed as that winner counts, and its signed acknowledgement is kept in the record
(``ack_evidence``) in the same write that stores ``acked``. Before anyone is paid,
``_pay`` (the one place that debits, live or after a takeover) checks every payer: an
escrow hold for this auction covering the amount, and on a secured connection its
evidence verified as signed by the payer, for this auction, accepted, for at least the
amount. A record that fails (say, an ``acked`` record written by someone else, naming an
agent that never bid) is not settled: it fails, its holds are released, and the refusal
is counted in ``ba_auction_unverifiable_total{reason}`` and logged with the auction key.

The durable steps of a sold, budgeted auction, in order (``|`` = at the same time)::

    1 create record      (auctions CAS)   one id is one auction; before any call goes out
    2 bids + close       (auctions CAS)   who answered, the bids and ``closed`` in one write
    3 holds, all payers  (accounts CAS |) the fence of the award: a release's tombstone
                                          refuses a deposed driver's hold, so it awards nobody
    4 award + ack        (signed gather)  per winner, concurrently
    5 acked + evidence   (auctions CAS) | fresh read of every payer's account (a read only)
    6 debit per payer    (accounts CAS on the revision read in 5; no read before the write)
    7 credit the seller  (accounts CAS)   only after its payer's debit stood
    8 settled            (auctions CAS)   only after every credit stood

Before issue 16 the holds were taken one after another, step 5's read came after the
``acked`` write (a round trip more), and step 6 computed the debit from the accounts
mirror (a CAS conflict and a fresh read whenever the mirror lagged behind the hold).
A crash between any two steps leaves a stored stage the table resumes from: ``closed``
(holds: any subset; a successor holds again, idempotently, and re-sends the award, whose
message id makes the winner's answer a repeat), ``acked`` (per payer its hold or its debit:
debit and credit are keyed by the auction, so re-running them is a no-op), or a terminal
stage (the reconcile releases what a failed auction still holds). What cannot overlap,
and why: the close with a hold (``open`` allows no hold; a deposed driver's hold would
outlive its close, or differ in amount from its successor's), a hold with the award (the
hold is the award's fence, above), the ``acked`` write with a debit (a successor finding
``closed`` would be refused its hold by the debit's tombstone and fail an auction whose
payer paid), a debit with its credit (the seller would be paid money a refused debit never
moved), the last credit with ``settled`` (a crash between them would leave a seller unpaid
in a terminal record nobody resumes). The payers' read in step 5 is safe beside the write
because nothing is paid until that write stands, and the debit is a CAS on the revision
read: an account that moved meanwhile (a deposit, a release) fails the CAS, and the debit
is recomputed from a fresh read (``Ledger.debit(known=)``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import Counter

from broker_agents import codec, gather, identity
from broker_agents.auction import metrics
from broker_agents.auction.messages import AuctionResult, AwardAck, AwardNotice, allocation_of
from broker_agents.auction.records import AuctionRecord, Stage, settlement_of
from broker_agents.clock import wall_ms
from broker_agents.core.auction import payment, settlement
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
from broker_agents.core.budget import Account
from broker_agents.core.errors import BrokerError, ErrorCode, LocalProtocolError
from broker_agents.core.identity import SignedAct, Unauthorized
from broker_agents.logging import get_logger
from broker_agents.messages import envelope
from broker_agents.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from broker_agents.auction.driver import AuctionDriver

UNVERIFIABLE = Counter("ba_auction_unverifiable_total",
                       "Auctions not settled because a payment could not be verified "
                       "(no covering hold, no or bad signed acknowledgement)", ["reason"])
RELEASE_ERRORS = Counter("ba_auction_release_errors_total",
                         "Holds a failing auction could not release (left to the reconcile)")
COMPONENT = "settlement"
CORRUPT_ACCOUNT = "corrupt_account"
UNAUTHORIZED = "unauthorized"
"""The driver's refusal labels besides ``payment.payment_refusal``'s."""

_log = RateLimitedLog(get_logger(component=COMPONENT))


async def finish(d: AuctionDriver) -> None:
    """Run the remaining post-close steps until the record is terminal."""
    step = settlement.step(settlement_of(d.record), Event(Happened.RESUME))
    evidence = dict(d.record.ack_evidence)
    while True:
        happened = await perform(d, step.effects, evidence)
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


async def perform(d: AuctionDriver, effects: Sequence[SettlementEffect],
                  evidence: dict[str, SignedAct] | None = None) -> Event | None:
    """Carry the effects out in order; the event the closing work led to, if any.
    ``evidence``: the winners' signed acknowledgements gathered so far (stored with the
    record's next stage).

    When the work is paying, the payers' accounts are read while the stage record (the
    ``acked`` write) is in flight: reads only, so nothing is paid before that write
    stands, and every debit is a CAS on the revision read (see ``_pay``).
    """
    evidence = {} if evidence is None else evidence
    holds: list[ReserveHold] = []
    awards: list[SendAward] = []
    pays = [eff for eff in effects if isinstance(eff, Pay)]
    reading = asyncio.ensure_future(_read_payers(d, pays)) if pays else None
    try:
        for eff in effects:
            if isinstance(eff, ReleaseHold):
                await _release(d, eff.payer)
            elif isinstance(eff, RecordStage):
                await _record(d, eff, evidence)
            elif isinstance(eff, ReserveHold):
                holds.append(eff)
            elif isinstance(eff, SendAward):
                awards.append(eff)
        if holds:
            return await _reserve(d, holds)
        if awards:
            return await _award(d, awards, evidence)
        if reading is not None:
            return await _pay(d, pays, await reading)
        return None
    finally:
        if reading is not None and not reading.done():  # the record write failed
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading


Read = tuple[Account | None, int] | BaseException
"""A payer's account and revision as read from the bucket, or why the read failed."""


async def _read_payers(d: AuctionDriver, pays: list[Pay]) -> dict[str, Read]:
    """Every payer's account, fresh from the bucket, read concurrently (different keys)."""
    if len(pays) == 1:
        try:
            return {pays[0].payer: await d.host.ledger.read(pays[0].payer)}
        except Exception as exc:
            return {pays[0].payer: exc}
    reads = await asyncio.gather(*(d.host.ledger.read(p.payer) for p in pays),
                                 return_exceptions=True)
    return {p.payer: r for p, r in zip(pays, reads, strict=True)}


async def _release(d: AuctionDriver, payer: str) -> None:
    """Release one payer's hold; a failure (a corrupt account, NATS trouble) is logged and
    left to the reconcile, so that the other payers are still released."""
    try:
        await d.host.ledger.release(payer, d.aid)
    except Exception as exc:
        RELEASE_ERRORS.inc()
        _log.warning(("release", type(exc).__name__), "auction.release_failed",
                     auction=d.aid, account=payer, error=repr(exc)[:300])


async def _record(d: AuctionDriver, eff: RecordStage, evidence: dict[str, SignedAct]) -> None:
    if eff.stage is Stage.FAILED and d.log:
        d.log.warning("auction failed", reason=eff.failure)
    update: dict[str, object] = {"stage": eff.stage, "reserved": eff.reserved,
                                 "acked": eff.acked, "settled": eff.settled,
                                 "failure": eff.failure}
    if evidence != d.record.ack_evidence:  # the acknowledgements land with ``acked``
        update["ack_evidence"] = dict(evidence)
    if eff.finished:
        update["finished_ms"] = wall_ms()
    await d.transition(**update)


async def _reserve(d: AuctionDriver, holds: list[ReserveHold]) -> Event:
    """Escrow every payer's payment, all at once (different accounts, so no order between
    them matters: ``closed`` allows any subset of the holds, and ``failed`` releases every
    payer's); the first refusal in payer order is the one reported.

    Each hold names its auction, the time, this auctioneer and its lease (the record's
    takeover count). A refusal because the auction's escrow was already released or paid
    (``fenced``) means we were deposed without knowing it yet: the failure we then try to
    record loses the CAS, and we stop. Trouble other than a refusal (NATS) is raised once
    every hold has been tried.
    """
    taken = wall_ms()

    async def reserve(hold: ReserveHold) -> Account | BaseException:
        try:
            return await d.host.ledger.reserve(hold.payer, d.aid, hold.amount,
                                               taken_ms=taken, by=d.host.owner,
                                               lease=d.record.takeovers)
        except BrokerError as exc:
            return exc

    if len(holds) == 1:  # one payer (most auctions): no task hop through a busy loop
        outcomes: list[Account | BaseException] = [await reserve(holds[0])]
    else:
        outcomes = list(await asyncio.gather(*(reserve(h) for h in holds),
                                             return_exceptions=True))
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, BrokerError):
            raise outcome
    refused: Event | None = None
    for hold, outcome in zip(holds, outcomes, strict=True):
        if not isinstance(outcome, BrokerError):
            continue
        fenced = outcome.details.get("fenced")
        if fenced is not None:
            metrics.HOLDS_FENCED.labels(str(fenced)).inc()
            if d.log:
                d.log.warning("auction.hold_fenced", account=hold.payer, auction=d.aid,
                              amount=hold.amount, fenced=str(fenced))
        refused = refused or Event(Happened.RESERVE_REFUSED,
                                   f"escrow for {hold.payer} refused: {outcome.message}")
    return refused or Event(Happened.RESERVED)


async def _award(d: AuctionDriver, awards: list[SendAward],
                 evidence: dict[str, SignedAct]) -> Event:
    """Tell every winner what it won; all must acknowledge within the award timeout, each
    with an answer signed as itself (kept in ``evidence``)."""
    record = d.record
    outcome = record.outcome
    assert outcome is not None
    timeout = record.request.award_timeout_ms / 1000
    gatherer = await gather.gatherer(d.host.nc)

    async def notify(award: SendAward) -> str | None:
        winner = award.winner
        notice = AwardNotice(auction_id=d.aid, total=award.total, seller=record.request.seller,
                             awards=[a for a in outcome.awards if a.bidder == winner])
        data = codec.encode(envelope(notice, msg_id=f"award-{d.aid}-{winner}"))
        async with gatherer.call(d.host.subjects, [winner], data, signed=True) as call:
            await call.wait(timeout)
            answer = call.results.get(0)
            act = call.evidence.get(winner)
        if answer is None:
            await d.abandoned(winner)
            return f"{winner} did not acknowledge the award"
        ack = gather.parse_answer(answer, AwardAck)
        if isinstance(ack, BrokerError):
            if ack.code in (ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT):
                await d.abandoned(winner)
                return f"{winner} did not acknowledge the award"
            return f"{winner} refused the award: {ack.message}"
        if not ack.accepted or ack.auction_id != d.aid or ack.bidder != winner:
            await d.abandoned(winner)
            reason = f": {ack.reason}" if ack.reason else ""
            return f"{winner} declined the award{reason}"
        if act is not None:
            evidence[winner] = act
        return None

    problems = [p for p in await asyncio.gather(*(notify(a) for a in awards)) if p]
    if problems:
        return Event(Happened.ACK_MISSING, "; ".join(problems))
    return Event(Happened.ACKNOWLEDGED)


async def _pay(d: AuctionDriver, pays: list[Pay], read: dict[str, Read]) -> Event:
    """Debit each payer and credit the seller, exactly once each (keyed by auction id);
    every payer verified first (see the module docstring), so a record that fails pays
    nobody. ``read``: the payers' accounts as read after their holds were taken; each
    debit is a CAS on that revision (a fresh read and retry if the account moved)."""
    for pay in pays:
        refusal = await payment_refusal(d, pay, read.get(pay.payer))
        if refusal is not None:
            return _unverifiable(d, pay, refusal)
    for pay in pays:
        got = read.get(pay.payer)
        known = got if isinstance(got, tuple) else None
        try:
            await d.host.ledger.debit(pay.payer, d.aid, pay.amount, known=known)
        except BrokerError as exc:
            if "refusal" not in exc.details:
                raise
            return _unverifiable(d, pay, str(exc.details["refusal"]))  # the hold just went
        await d.host.ledger.credit(pay.seller, d.aid, pay.payer, pay.amount)
        metrics.SETTLEMENTS.inc()
    return Event(Happened.SETTLED)


async def payment_refusal(d: AuctionDriver, pay: Pay, read: Read | None = None) -> str | None:
    """Why ``pay`` must not be made (a bounded label), or None: the payer's account read
    fresh (``read``, when the caller read it already) and its stored acknowledgement
    verified, then ``payment.payment_refusal``."""
    try:
        if read is None:
            read = await d.host.ledger.read(pay.payer)
        if isinstance(read, BaseException):
            raise read
        account = read[0]
    except BrokerError as exc:
        if exc.code is ErrorCode.MALFORMED:
            return CORRUPT_ACCOUNT
        raise
    nc = d.host.nc
    secured = identity.identity_of(nc).authenticator.required
    signer: str | None = None
    ack: object = None
    unverified: str | None = None
    act = d.record.ack_evidence.get(pay.payer)
    if secured and act is not None:
        try:
            signer = identity.verify_stored(nc, act, component=COMPONENT).identity
            ack = codec.decode(act.data, max_depth=codec.STORED_MAX_DEPTH)
        except Unauthorized:
            unverified = UNAUTHORIZED
        except BrokerError:
            ack = None  # not an acknowledgement at all
    return payment.payment_refusal(account, d.aid, pay.payer, pay.amount,
                                      secured=secured, signer=signer, ack=ack,
                                      unverified=unverified, seller=pay.seller)


def _unverifiable(d: AuctionDriver, pay: Pay, reason: str) -> Event:
    UNVERIFIABLE.labels(reason).inc()
    _log.warning(("unverifiable", reason), "auction.payment_unverifiable", auction=d.aid,
                 account=pay.payer, amount=pay.amount, reason=reason,
                 owner=d.record.owner, takeovers=d.record.takeovers)
    return Event(Happened.UNVERIFIABLE,
                 f"the payment of {pay.payer} could not be verified: {reason}")


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
