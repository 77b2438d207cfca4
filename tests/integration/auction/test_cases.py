"""The issue's auction cases end to end: bidder agents on two node processes answer over
NATS, an auctioneer (either node's) runs the auction and settles it against the ledger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS

from broker_agents.auction.client import run_auction
from broker_agents.core.errors import BrokerError
from node.auth.roles import Role
from node.cluster import LocalCluster
from tests.integration.auction.helpers import S, ask, auctioneer, bidder, ledger, stats

pytestmark = pytest.mark.asyncio(loop_scope="module")

NODE_1 = [
    auctioneer("auc-1"),
    bidder("bidder1", value=10.0), bidder("bidder3", value=12.0),
    bidder("tie1", value=15.0), bidder("tie3", value=12.0),
    bidder("eng1", value=50.0),
    bidder("dutch1", value=149.0),
    bidder("combo1", bundles=[{"items": ["cpu", "memory"], "value": 20.0}]),
    bidder("poor", value=12.0), bidder("capped", value=30.0), bidder("thrifty", value=10.0),
    bidder("gpu1", caps=["gpu"], value=7.0),
]
NODE_2 = [
    auctioneer("auc-2"),
    bidder("bidder2", value=15.0),
    bidder("tie2", value=15.0, delay_ms=150),
    bidder("dutch2", value=120.0),
    bidder("combo2", bundles=[{"items": ["cpu", "storage"], "value": 25.0}]),
    bidder("rich", value=11.0), bidder("decliner", value=1.0),
    bidder("gpu2", caps=["gpu"], value=9.0),
    bidder("flaky", value=40.0, accept_awards=False),
]
FUNDED = ["bidder1", "bidder2", "bidder3", "tie1", "tie2", "tie3", "eng1", "dutch1", "dutch2",
          "combo1", "combo2", "rich", "gpu1", "gpu2", "flaky", "decliner"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(Path(tmp_path_factory.mktemp("auction")), nodes=2,
                     agents=[NODE_1, NODE_2])
    await c.start()
    nc = await c.client(Role.NODE)  # deposits still write the accounts bucket directly
    book = await ledger(nc)
    for who in FUNDED:
        await book.deposit(who, 1000.0, "funding")
    await book.deposit("poor", 5.0, "funding")
    await book.deposit("thrifty", 25.0, "funding")
    await book.deposit("capped", 1000.0, "funding", max_per_task=20.0)
    await nc.close()
    yield c
    await asyncio.to_thread(c.stop)


@pytest_asyncio.fixture(loop_scope="module")
async def nc(cluster: LocalCluster) -> AsyncIterator[NATS]:
    """A client's connection: auctions and agents are public requests."""
    conn = await cluster.client()
    yield conn
    await conn.close()


@pytest_asyncio.fixture(loop_scope="module")
async def admin(cluster: LocalCluster) -> AsyncIterator[NATS]:
    """An admin's: it may sell as anyone (a client sells only as itself)."""
    conn = await cluster.client(Role.ADMIN)
    yield conn
    await conn.close()


@pytest_asyncio.fixture(loop_scope="module")
async def observer(cluster: LocalCluster) -> AsyncIterator[NATS]:
    """An observer's: reading the accounts bucket is not a client's business."""
    conn = await cluster.client(Role.OBSERVER)
    yield conn
    await conn.close()


async def run(nc: NATS, **request: Any) -> dict[str, Any]:
    return await run_auction(nc, request, timeout=20)


async def test_first_price_highest_bid_wins_and_pays_its_bid(nc: NATS, observer: NATS) -> None:
    before = await (await ledger(observer)).account("bidder2")
    r = await run(nc, type="first_price", participants=["bidder1", "bidder2", "bidder3"])
    assert (r["winner"], r["price"], r["num_bids"], r["tie_broken"]) == ("bidder2", 15.0, 3, False)
    assert r["status"] == "settled" and r["settled"]
    after = await (await ledger(observer)).account("bidder2")
    assert before is not None and after is not None
    assert after.balance == before.balance - 15.0 and after.reserved == 0.0


async def test_vickrey_winner_pays_second_highest_bid(nc: NATS) -> None:
    r = await run(nc, type="vickrey", participants=["bidder1", "bidder2", "bidder3"])
    assert (r["winner"], r["price"], r["prices"]) == ("bidder2", 12.0, {"bidder2": 12.0})


async def test_tie_goes_to_the_earliest_bid_and_says_tie_broken(nc: NATS) -> None:
    r = await run(nc, type="first_price", participants=["tie1", "tie2", "tie3"])
    assert (r["winner"], r["price"], r["tie_broken"]) == ("tie1", 15.0, True)


async def test_result_reports_the_bid_round_within_the_whole_auction(nc: NATS) -> None:
    # tie2 thinks for 150 ms: the round lasts at least that, and is part of the duration.
    r = await run(nc, type="vickrey", participants=["tie1", "tie2", "tie3"])
    assert 150.0 <= r["bids_ms"] <= r["duration_ms"] + 1.0
    r = await run(nc, type="vickrey", participants=[])
    assert r["bids_ms"] is None  # nobody to call


async def test_no_bids_means_no_winner_and_no_payment(nc: NATS) -> None:
    r = await run(nc, type="vickrey", participants=[])
    assert (r["winner"], r["price"], r["num_participants"], r["sold"]) == (None, 0.0, 0, False)
    assert r["status"] == "unsold"
    r = await run(nc, type="first_price", participants=["decliner"], reserve=5.0)
    assert (r["winner"], r["price"], r["num_participants"]) == (None, 0.0, 0)


async def test_english_with_one_bidder_sells_at_the_start_price(nc: NATS) -> None:
    r = await run(nc, type="english", participants=["eng1"], start_price=10.0, increment=2.0)
    assert (r["winner"], r["price"], r["status"]) == ("eng1", 10.0, "settled")


async def test_english_rounds_raise_by_the_increment_until_one_bidder_is_left(nc: NATS) -> None:
    r = await run(nc, type="english", participants=["bidder1", "bidder2", "bidder3"],
                  start_price=5.0, increment=2.0)
    assert r["winner"] == "bidder2"
    # bidder3 (worth 12) drops out once the next minimum exceeds 12: the price lies within
    # one increment of its value, and steps from the start price by the increment.
    assert 12.0 - 2.0 < r["price"] <= 12.0 + 2.0
    assert (r["price"] - 5.0) % 2.0 == 0.0
    assert r["rounds"] > 2


async def test_dutch_with_nobody_accepting_above_the_reserve_has_no_winner(nc: NATS) -> None:
    r = await run(nc, type="dutch", participants=["dutch1", "dutch2"], start_price=200.0,
                  decrement=5.0, reserve=150.0, round_ms=200)
    assert (r["winner"], r["price"], r["sold"]) == (None, 0.0, False)
    assert r["reason"] == "reserve_reached"


async def test_dutch_first_acceptance_wins_at_the_clock_price(nc: NATS) -> None:
    r = await run(nc, type="dutch", participants=["dutch1", "dutch2"], start_price=200.0,
                  decrement=5.0, reserve=100.0, round_ms=200)
    assert (r["winner"], r["price"]) == ("dutch1", 145.0)


async def test_combinatorial_allocates_the_revenue_maximising_bundle(nc: NATS) -> None:
    r = await run(nc, type="combinatorial", participants=["combo1", "combo2"],
                  items=["cpu", "memory", "storage"])
    assert r["allocation"] == {"combo2": ["cpu", "storage"]}
    assert (r["price"], r["winners"]) == (25.0, ["combo2"])


async def test_capability_discovery_finds_bidders_on_both_nodes(nc: NATS) -> None:
    r = await run(nc, type="vickrey", capability="gpu", item="gpu-hour", reserve=5.0)
    assert (r["invited"], r["winner"], r["price"]) == (2, "gpu2", 7.0)


async def test_a_bid_above_available_funds_is_rejected(nc: NATS, observer: NATS) -> None:
    r = await run(nc, type="first_price", participants=["poor", "rich"])
    assert (r["winner"], r["price"], r["num_bids"]) == ("rich", 11.0, 1)
    notices = (await stats(nc, "poor"))["notices"]
    mine = [n for n in notices if n["auction_id"] == r["auction_id"]]
    assert [n["reason"] for n in mine] == ["insufficient_funds"]
    acc = await (await ledger(observer)).account("poor")
    assert acc is not None and acc.balance == 5.0


async def test_a_bid_above_max_per_task_is_rejected_saying_so(nc: NATS) -> None:
    r = await run(nc, type="first_price", participants=["capped", "rich"])
    assert r["winner"] == "rich"
    notices = (await stats(nc, "capped"))["notices"]
    mine = [n for n in notices if n["auction_id"] == r["auction_id"]]
    assert mine and "exceeds the maximum per-task budget" in mine[0]["message"]


async def test_unacknowledged_award_fails_cleanly_and_releases_escrow(
        nc: NATS, observer: NATS) -> None:
    book = await ledger(observer)
    before = await book.account("flaky")
    r = await run(nc, type="first_price", participants=["flaky", "rich"])
    assert (r["status"], r["settled"], r["winner"]) == ("failed", False, "flaky")
    assert "declined" in r["failure"]
    after = await book.account("flaky")
    assert before is not None and after is not None
    assert (after.balance, after.reserved) == (before.balance, 0.0)


async def test_budgets_never_negative_under_concurrent_auctions(admin: NATS,
                                                               observer: NATS) -> None:
    book = await ledger(observer)
    # thrifty has 25: enough for two of the four 10.0 wins, whatever the interleaving.
    results = await asyncio.gather(*(
        run(admin, type="english", participants=["thrifty"], start_price=10.0, seller="shop4")
        for _ in range(4)))
    settled = [r for r in results if r["status"] == "settled"]
    assert len(settled) == 2
    assert all((r["winner"], r["price"]) == ("thrifty", 10.0) for r in settled)
    # The other two stop either at bid time (funds already held elsewhere: unsold) or at
    # escrow (failed, nothing held); both leave the money alone.
    for r in results:
        if r["status"] == "failed":
            assert "escrow" in r["failure"]
        elif r["status"] == "unsold":
            assert r["winner"] is None
    acc = await book.account("thrifty")
    shop = await book.account("shop4")
    assert acc is not None and shop is not None
    assert (acc.balance, acc.reserved, shop.balance) == (5.0, 0.0, 20.0)


async def test_reports_come_only_from_counterparties_once_per_task(nc: NATS,
                                                                  admin: NATS) -> None:
    s = S
    r = await run(admin, type="first_price", participants=["bidder3"], seller="shop")
    base = {"op": "report", "auction_id": r["auction_id"], "quality": 1.0,
            "satisfaction": 0.9}

    async def report(reporter: str, **fields: Any) -> Any:  # the admin speaks for them
        return await ask(admin, s.coord("auction"), {**base, **fields}, acting_for=reporter)

    ok = await report("shop", subject="bidder3")
    assert ok["agent"] == "bidder3" and ok["score"] > 0.5
    dup = await report("shop", subject="bidder3")
    assert dup["error"]["code"] == "duplicate" and "already" in dup["error"]["message"]
    self_report = await report("bidder3", subject="bidder3")
    assert self_report["error"]["code"] == "rejected"
    stranger = await report("bidder1", subject="bidder3")
    assert stranger["error"]["code"] == "rejected"
    bad = await report("bidder3", subject="shop", quality=2.0)
    assert bad["error"]["code"] == "validation_error"
    named = await ask(nc, s.coord("auction"), {**base, "reporter": "shop", "subject": "bidder3"})
    assert named["error"]["code"] == "unauthorized"  # a client is not the seller
    # The score now gates: bidder3 (> 0.5) is invited, bidder1 (neutral 0.5) is not.
    gated = await run(nc, type="first_price", participants=["bidder1", "bidder3"],
                      min_reputation=0.6)
    assert (gated["invited"], gated["winner"]) == (1, "bidder3")


async def test_request_errors_are_raised_to_the_client(nc: NATS) -> None:
    with pytest.raises(BrokerError) as err:
        await run(nc, type="dutch", participants=["dutch1"])
    assert err.value.code == "validation_error" and err.value.details["field"] == "start_price"
