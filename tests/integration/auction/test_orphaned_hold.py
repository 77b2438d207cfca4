"""Issue 19, part 1: a hold must not be orphaned by an auctioneer takeover.

The seam: a deposed driver learns that it lost the lease only at its next write. Driver 1
closes the auction and starts escrow, but its ``reserve`` is held back (a fault hook, as a
SIGSTOP would). Driver 2 takes the auction over from the stored record, reserves, the
winner stays silent, and it fails the auction, releasing every hold. Then driver 1's
reserve goes through: before the fix it locked the winner's money for an auction that had
already failed, and nobody ever released it. Now the release left a tombstone that refuses
the late hold (and driver 1 stops at its next write without telling the winner anything).
"""

from __future__ import annotations

import asyncio
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

AID = "orphan-1"
WINNER = "w"


class PausedLedger(Ledger):
    """A ledger whose ``reserve`` stops at a fault hook until the test lets it go on."""

    def __init__(self, kv: Any, entered: asyncio.Event, resume: asyncio.Event) -> None:
        super().__init__(kv)
        self.entered = entered
        self.resume = resume

    async def reserve(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        await self.resume.wait()
        return await super().reserve(*args, **kwargs)


async def _host(nc: NATS, owner: str, ledger: Ledger) -> AuctionHost:
    js = nc.jetstream()
    return AuctionHost(nc=nc, subjects=S, owner=owner, lease_ms=1000,
                       auctions=await open_bucket(js, S.bucket("auctions")), ledger=ledger,
                       reputation=ReputationBook(await open_bucket(js, S.bucket("reputation"))))


async def _winner(nc: NATS, awards: list[str]) -> None:
    """Bids 7 when called; stays silent on the first award (driver 2's), acknowledges any
    later one (what a winner paused meanwhile would do for the deposed driver)."""

    async def answer(reply: str, payload: Any) -> None:  # signed as the winner's node
        data = codec.encode(payload)
        await nc.publish(reply, data, headers=identity.act_headers(nc, reply, data, WINNER))

    async def on_message(msg: Msg) -> None:
        kind, data, _ = open_envelope(codec.decode(msg.data))
        if kind == "auction.announce":
            await answer(msg.reply, {"bids": [{
                "auction_id": AID, "msg_id": "w-bid", "bidder": WINNER, "amount": 7.0}]})
        elif kind == "auction.award":
            awards.append(data["auction_id"])
            if len(awards) > 1:
                await answer(msg.reply, {"auction_id": AID, "bidder": WINNER,
                                         "accepted": True, "total": data["total"]})

    await nc.subscribe(S.agent(WINNER), cb=on_message)
    await nc.flush()


@pytest.mark.timeout(30)
async def test_a_deposed_drivers_late_reserve_cannot_lock_funds_of_a_failed_auction(
        nc: NATS) -> None:
    accounts = await open_bucket(nc.jetstream(), S.bucket("accounts"))
    book = Ledger(accounts)
    await book.deposit(WINNER, 100.0, "funding")
    awards: list[str] = []
    await _winner(nc, awards)

    entered, resume = asyncio.Event(), asyncio.Event()
    first = await _host(nc, "auc-1", PausedLedger(accounts, entered, resume))
    request = parse_request({"auction_id": AID, "type": "first_price", "participants": [WINNER],
                             "duration_ms": 10_000, "award_timeout_ms": 300})
    record, effects = AuctionDriver.new_record(first, request, build_config(request, AID),
                                               [WINNER], wall_ms())
    deposed = await AuctionDriver.create(first, record, effects)
    await asyncio.wait_for(deposed.run_open(), 10)
    assert str(deposed.record.stage) == "closed"
    finishing = asyncio.ensure_future(settle.finish(deposed))
    await asyncio.wait_for(entered.wait(), 10)  # driver 1 is about to take the hold

    # Driver 1's lease lapses (it is paused); driver 2 takes the auction over.
    second = await _host(nc, "auc-2", book)
    entry = await second.auctions.get(AID)
    assert entry.value is not None and entry.revision is not None
    taken = AuctionRecord.model_validate(codec.decode(entry.value)).model_copy(
        update={"owner": "auc-2", "heartbeat_ms": wall_ms(), "takeovers": 1})
    rev = await second.auctions.update(AID, codec.encode(taken), last=entry.revision)
    successor = AuctionDriver(second, taken, rev)
    await asyncio.wait_for(settle.finish(successor), 10)
    assert str(successor.record.stage) == "failed"
    assert "did not acknowledge" in (successor.record.failure or "")
    held = await book.account(WINNER)
    assert held is not None and held.holds == {}

    resume.set()  # driver 1 wakes up and carries on with its stale beliefs
    with pytest.raises(LeaseLost):
        await asyncio.wait_for(finishing, 10)

    after = await book.account(WINNER)
    assert after is not None
    assert after.holds == {}, f"orphaned hold: {after.holds}"
    assert (after.balance, after.available) == (100.0, 100.0)
    assert awards == [AID]  # the deposed driver told the winner nothing
