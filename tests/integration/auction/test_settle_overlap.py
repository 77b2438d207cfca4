"""Settlement reads the payers' accounts while the ``acked`` record is being written, and
debits with a CAS on the revision it read (``settle.perform``, ``Ledger.debit(known=)``).
Each test puts a fault in the window that overlap opened and checks exactly-once money:

- the account moves between the read and the debit (a deposit): the CAS fails, the debit
  is recomputed from a fresh read, and the payer is debited once, the seller credited once;
- the hold is released in that window (a successor or the reconcile): the recomputed debit
  is refused, the auction fails unverifiable, and no money moves;
- the ``acked`` write loses the lease while the read is in flight: nothing is paid by the
  deposed driver, and the successor settles exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from broker_agents import codec, identity
from broker_agents.auction import settle
from broker_agents.auction.driver import AuctionDriver, LeaseLost
from broker_agents.auction.host import AuctionHost
from broker_agents.auction.ledger import Ledger
from broker_agents.auction.messages import build_config, parse_request
from broker_agents.auction.records import AuctionRecord
from broker_agents.clock import wall_ms
from broker_agents.kv import open_bucket
from broker_agents.messages import open_envelope
from broker_agents.reputation import ReputationBook
from tests.integration.auction.helpers import S

WINNER = "w"
SELLER = "s"
PRICE = 7.0
Hook = Callable[[], Awaitable[None]]


class FaultyLedger(Ledger):
    """A ledger that runs ``before_debit`` between settlement's read and its debit."""

    def __init__(self, kv: Any, before_debit: Hook | None = None) -> None:
        super().__init__(kv)
        self.before_debit = before_debit
        self.known_revisions: list[int] = []

    async def debit(self, owner: str, auction_id: str, amount: float, *,
                    known: tuple[Any, int] | None = None) -> Any:
        if known is not None:
            self.known_revisions.append(known[1])
        if self.before_debit is not None:
            await self.before_debit()
        return await super().debit(owner, auction_id, amount, known=known)


async def _host(nc: NATS, owner: str, ledger: Ledger) -> AuctionHost:
    js = nc.jetstream()
    return AuctionHost(nc=nc, subjects=S, owner=owner, lease_ms=1000,
                       auctions=await open_bucket(js, S.bucket("auctions")), ledger=ledger,
                       reputation=ReputationBook(await open_bucket(js, S.bucket("reputation"))))


async def _winner(nc: NATS, aid: str, on_award: Hook | None = None, *, who: str = WINNER,
                  items: list[str] | None = None) -> list[str]:
    """Bids ``PRICE`` (for ``items``, when given) when called and acknowledges every award
    (signed as ``who``'s node), after ``on_award`` (a fault hook) the first time."""
    awards: list[str] = []

    async def answer(reply: str, payload: Any) -> None:
        data = codec.encode(payload)
        await nc.publish(reply, data, headers=identity.act_headers(nc, reply, data, who))

    async def on_message(msg: Msg) -> None:
        kind, data, _ = open_envelope(codec.decode(msg.data))
        if kind == "auction.announce":
            bid: dict[str, Any] = {"auction_id": aid, "msg_id": f"{aid}-{who}-bid",
                                   "bidder": who, "amount": PRICE}
            if items:
                bid["items"] = items
            await answer(msg.reply, {"bids": [bid]})
        elif kind == "auction.award":
            awards.append(data["auction_id"])
            if on_award is not None and len(awards) == 1:
                await on_award()
            await answer(msg.reply, {"auction_id": aid, "bidder": who, "accepted": True,
                                     "total": data["total"], "seller": data["seller"]})

    await nc.subscribe(S.agent(who), cb=on_message)
    await nc.flush()
    return awards


async def _closed(host: AuctionHost, aid: str) -> AuctionDriver:
    """A first-price auction among the winner alone, run to its close."""
    request = parse_request({"auction_id": aid, "type": "first_price", "seller": SELLER,
                             "participants": [WINNER], "duration_ms": 10_000,
                             "award_timeout_ms": 3000})
    record, effects = AuctionDriver.new_record(host, request, build_config(request, aid),
                                               [WINNER], wall_ms())
    driver = await AuctionDriver.create(host, record, effects)
    await asyncio.wait_for(driver.run_open(), 10)
    assert str(driver.record.stage) == "closed"
    return driver


async def _money(book: Ledger, aid: str) -> tuple[Any, Any]:
    payer, seller = await book.account(WINNER), await book.account(SELLER)
    assert payer is not None and payer.holds == {}
    return payer, seller


@pytest.mark.timeout(30)
async def test_a_deposit_between_read_and_debit_is_debited_once(nc: NATS) -> None:
    aid = "overlap-moved"
    accounts = await open_bucket(nc.jetstream(), S.bucket("accounts"))
    book = Ledger(accounts)
    await book.deposit(WINNER, 100.0, "funding")

    async def deposit() -> None:  # the account moves on after settlement read it
        await book.deposit(WINNER, 5.0, "late-deposit")

    faulty = FaultyLedger(accounts, deposit)
    await _winner(nc, aid)
    driver = await _closed(await _host(nc, "auc-1", faulty), aid)
    await asyncio.wait_for(settle.finish(driver), 10)

    assert str(driver.record.stage) == "settled"
    assert faulty.known_revisions, "the debit was not given the revision settlement read"
    payer, seller = await _money(book, aid)
    assert payer.balance == 105.0 - PRICE
    assert [a for a in payer.applied if a.startswith("debit:")] == [f"debit:{aid}"]
    assert seller is not None and seller.balance == PRICE


@pytest.mark.timeout(30)
async def test_a_hold_released_between_read_and_debit_pays_nobody(nc: NATS) -> None:
    aid = "overlap-released"
    accounts = await open_bucket(nc.jetstream(), S.bucket("accounts"))
    book = Ledger(accounts)
    await book.deposit(WINNER, 100.0, "funding")

    async def release() -> None:  # a successor (or the reconcile) releases the hold
        assert await book.release(WINNER, aid) is not None

    await _winner(nc, aid)
    driver = await _closed(await _host(nc, "auc-1", FaultyLedger(accounts, release)), aid)
    await asyncio.wait_for(settle.finish(driver), 10)

    assert str(driver.record.stage) == "failed"
    assert "could not be verified" in (driver.record.failure or "")
    payer, seller = await _money(book, aid)
    assert payer.balance == 100.0 and payer.available == 100.0
    assert not any(a.startswith("debit:") for a in payer.applied)
    assert seller is None or seller.balance == 0.0


@pytest.mark.timeout(30)
async def test_the_acked_write_losing_its_lease_mid_read_pays_exactly_once(nc: NATS) -> None:
    aid = "overlap-deposed"
    accounts = await open_bucket(nc.jetstream(), S.bucket("accounts"))
    book = Ledger(accounts)
    await book.deposit(WINNER, 100.0, "funding")
    first = await _host(nc, "auc-1", FaultyLedger(accounts))
    second = await _host(nc, "auc-2", book)
    taken: list[AuctionDriver] = []

    async def take_over() -> None:  # while driver 1 awaits the acknowledgement
        entry = await second.auctions.get(aid)
        assert entry.value is not None and entry.revision is not None
        record = AuctionRecord.model_validate(codec.decode(entry.value)).model_copy(
            update={"owner": "auc-2", "heartbeat_ms": wall_ms(), "takeovers": 1})
        rev = await second.auctions.update(aid, codec.encode(record), last=entry.revision)
        taken.append(AuctionDriver(second, record, rev))

    awards = await _winner(nc, aid, take_over)
    deposed = await _closed(first, aid)
    with pytest.raises(LeaseLost):  # its acked write fails while it reads the account
        await asyncio.wait_for(settle.finish(deposed), 10)
    assert isinstance(first.ledger, FaultyLedger) and first.ledger.known_revisions == []
    held = await book.account(WINNER)
    assert held is not None and set(held.holds) == {aid} and held.balance == 100.0

    successor = taken[0]
    await asyncio.wait_for(settle.finish(successor), 10)
    assert str(successor.record.stage) == "settled" and awards == [aid, aid]
    payer, seller = await _money(book, aid)
    assert payer.balance == 100.0 - PRICE
    assert [a for a in payer.applied if a.startswith("debit:")] == [f"debit:{aid}"]
    assert seller is not None and seller.balance == PRICE
    assert len([a for a in seller.applied if a.startswith("credit:")]) == 1


@pytest.mark.timeout(30)
async def test_a_refused_hold_among_concurrent_holds_releases_every_hold(nc: NATS) -> None:
    """Holds are taken all at once: one payer refused (a frozen account) fails the auction,
    and the other payer's hold, taken meanwhile, is released and fenced."""
    aid = "overlap-holds"
    accounts = await open_bucket(nc.jetstream(), S.bucket("accounts"))
    book = Ledger(accounts)
    for who in (WINNER, "v"):
        await book.deposit(who, 100.0, "funding")
    await _winner(nc, aid, items=["cpu"])
    await _winner(nc, aid, who="v", items=["mem"])
    host = await _host(nc, "auc-1", book)
    request = parse_request({"auction_id": aid, "type": "combinatorial", "seller": SELLER,
                             "participants": [WINNER, "v"], "items": ["cpu", "mem"],
                             "duration_ms": 10_000, "award_timeout_ms": 3000})
    record, effects = AuctionDriver.new_record(host, request, build_config(request, aid),
                                               [WINNER, "v"], wall_ms())
    driver = await AuctionDriver.create(host, record, effects)
    await asyncio.wait_for(driver.run_open(), 10)
    assert sorted(driver.record.payments()) == ["v", WINNER]
    await book.set_frozen("v", True, "freeze")  # after admission: only escrow can refuse
    await asyncio.wait_for(settle.finish(driver), 10)

    assert str(driver.record.stage) == "failed"
    assert "escrow for v refused" in (driver.record.failure or "")
    for who in (WINNER, "v"):
        acc = await book.account(who)
        assert acc is not None and acc.holds == {} and acc.balance == 100.0
        assert acc.fenced(aid) == "released"
