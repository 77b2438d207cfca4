"""Reputation reports bound to their principals, on a secured server (issue 13,
"reputation"): a report counts only from an authenticated counterparty of a settled
auction, once per reporter and auction; violations and decay reach the stored scores.

The auctioneer and the bidder run in-process on a node connection; the attacker is a
client ("mallory"). An admin speaks for the house seller ("market"), a node for its agent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from broker_agents import codec
from broker_agents.auction.auctioneer import AuctioneerAgent
from broker_agents.auction.bidder import BidderAgent
from broker_agents.auction.client import run_auction
from broker_agents.auction.ledger import Ledger
from broker_agents.core.errors import BrokerError
from broker_agents.core.reputation import Entry, Reputation
from broker_agents.identity import UNAUTHORIZED
from broker_agents.kv import open_bucket
from broker_agents.reputation import REPORTS
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from tests.integration.test_runtime import Hosted

S = Subjects()
Connect = Callable[..., Coroutine[Any, Any, NATS]]


@pytest.fixture
async def market(connect: Connect) -> AsyncIterator[Hosted]:
    hosted = Hosted(await connect(Role.NODE))
    await hosted.add(AuctioneerAgent("auc", sweep_ms=60_000))
    await hosted.add(BidderAgent("victim", value=10.0))
    book = Ledger(await open_bucket(hosted.nc.jetstream(), S.bucket("accounts")))
    await book.deposit("victim", 100.0, "fund-victim")
    yield hosted
    await hosted.stop_all()


async def report(nc: NATS, body: dict[str, Any], *, signed: bool = True,
                 acting_for: str | None = None) -> Any:
    reply = await nats_request(nc, S.coord("auction"), codec.encode({"op": "report", **body}),
                               10, signed=signed, acting_for=acting_for)
    return codec.decode(reply.data, reply.headers)


def error_of(reply: Any) -> BrokerError:
    err = BrokerError.from_payload(reply)
    assert err is not None, f"expected an error reply, got {reply!r}"
    return err


async def stored_reputation(nc: NATS, agent: str) -> Reputation | None:
    kv = await open_bucket(nc.jetstream(), S.bucket("reputation"))
    try:
        entry = await kv.get(agent)
    except Exception:
        return None
    assert entry.value is not None
    return Reputation.model_validate(codec.decode(entry.value))


async def settled_house_sale(connect: Connect) -> tuple[NATS, str]:
    """An admin sells for the house ("market"); the victim wins. (admin, auction id)"""
    admin = await connect(Role.ADMIN)
    result = await run_auction(admin, {"type": "first_price", "participants": ["victim"]})
    assert (result["seller"], result["winner"], result["status"]) == (
        "market", "victim", "settled")
    return admin, result["auction_id"]


async def test_a_report_spoofed_as_the_seller_is_refused(market: Hosted,
                                                         connect: Connect) -> None:
    _, aid = await settled_house_sale(connect)
    mallory = await connect(Role.CLIENT, user="mallory")
    spoof = {"reporter": "market", "subject": "victim", "auction_id": aid, "quality": 0.0,
             "satisfaction": 0.0}
    mismatch = UNAUTHORIZED.labels("reputation", "identity_mismatch")._value.get()
    err = error_of(await report(mallory, spoof))
    assert err.code == "unauthorized" and err.details["reason"] == "identity_mismatch"
    assert UNAUTHORIZED.labels("reputation", "identity_mismatch")._value.get() == mismatch + 1
    err = error_of(await report(mallory, spoof, signed=False))
    assert err.code == "unauthorized" and err.details["reason"] == "unsigned"
    as_herself = {k: v for k, v in spoof.items() if k != "reporter"}
    err = error_of(await report(mallory, as_herself))  # not a counterparty of this sale
    assert err.code == "rejected" and "counterparty" in err.message
    assert await stored_reputation(market.nc, "victim") is None  # untouched


async def test_each_counterparty_reports_once_per_auction(market: Hosted,
                                                          connect: Connect) -> None:
    admin, aid = await settled_house_sale(connect)
    good = {"auction_id": aid, "quality": 1.0, "satisfaction": 1.0}
    duplicates = REPORTS.labels("duplicate")._value.get()
    first = await report(admin, {**good, "subject": "victim"}, acting_for="market")
    assert first["agent"] == "victim" and first["score"] > 0.5
    again = error_of(await report(admin, {**good, "subject": "victim"}, acting_for="market"))
    assert again.code == "duplicate"
    assert REPORTS.labels("duplicate")._value.get() == duplicates + 1
    # the other side reports too, once (its node speaks for it)
    back = await report(market.nc, {**good, "subject": "market"}, acting_for="victim")
    assert back["agent"] == "market"
    again = error_of(await report(market.nc, {**good, "subject": "market"},
                                  acting_for="victim"))
    assert again.code == "duplicate"
    record = await stored_reputation(market.nc, "victim")
    assert record is not None and len(record.entries) == 1


async def test_violations_are_reported_by_counterparties_only_once(
        market: Hosted, connect: Connect) -> None:
    admin, aid = await settled_house_sale(connect)
    fraud = {"auction_id": aid, "subject": "victim", "violation": "fraud"}
    mallory = await connect(Role.CLIENT, user="mallory")
    assert error_of(await report(mallory, fraud)).code == "rejected"
    penalised = await report(admin, fraud, acting_for="market")
    assert penalised["agent"] == "victim" and penalised["score"] < 0.1
    assert error_of(await report(admin, fraud, acting_for="market")).code == "duplicate"
    both = error_of(await report(admin, {**fraud, "quality": 1.0, "satisfaction": 1.0},
                                 acting_for="market"))
    assert both.code == "validation_error"


async def test_a_winner_that_declines_its_award_is_penalised_once(
        market: Hosted, connect: Connect) -> None:
    await market.add(BidderAgent("flaky", value=10.0, accept_awards=False))
    book = Ledger(await open_bucket(market.nc.jetstream(), S.bucket("accounts")))
    await book.deposit("flaky", 100.0, "fund-flaky")
    shop = await connect(Role.CLIENT, user="shop")
    result = await run_auction(shop, {"type": "first_price", "participants": ["flaky"]})
    assert result["status"] == "failed" and "declined" in (result["failure"] or "")
    record = await stored_reputation(market.nc, "flaky")
    assert record is not None and [e.kind for e in record.entries] == ["abandoned_task"]
    assert record.score < 0.5 and record.tasks == (f"{result['auction_id']}#violation",)


async def test_the_sweeper_decays_stored_scores(connect: Connect) -> None:
    node = await connect(Role.NODE)
    kv = await open_bucket(node.jetstream(), S.bucket("reputation"))
    long_ago = int(time.time()) - 100_000  # a hundred half-lives
    stale = Reputation(agent="old-timer", score=0.05, updated_at=long_ago,
                       entries=(Entry(value=0.0, weight=10.0, tick=long_ago, task_id="t"),))
    await kv.put("old-timer", codec.encode(stale))
    watcher = await kv.watch("old-timer")
    hosted = Hosted(node)
    await hosted.add(AuctioneerAgent("auc", sweep_ms=50, reputation_decay_ms=50))
    try:
        while True:
            entry = await watcher.updates(timeout=10)
            if entry is not None and entry.value:
                record = Reputation.model_validate(codec.decode(entry.value))
                if record.version > stale.version:
                    break
        assert record.score > 0.49 and record.entries == stale.entries
    finally:
        await watcher.stop()
        await hosted.stop_all()
