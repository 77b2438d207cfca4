"""kill -9 the node of the auctioneer running an auction: the other auctioneer takes the
lease over and finishes it (or fails it cleanly, releasing escrow); never two awards,
never a payment settled twice, never a negative balance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from broker_agents.auction.client import run_auction
from node.auth.roles import Role
from node.cluster import LocalCluster
from tests.integration.auction.helpers import auctioneer, bidder, ledger, stats, watch_record

LEASE = {"lease_ms": 1000, "sweep_ms": 250}
PEOPLE = ["n1-a", "n1-b", "n2-a", "n2-b", "n2-slow"]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path, nodes=2, agents=[
        [auctioneer("auc-1", **LEASE), bidder("n1-a", value=30.0), bidder("n1-b", value=12.0)],
        [auctioneer("auc-2", **LEASE), bidder("n2-a", value=25.0), bidder("n2-b", value=11.0),
         bidder("n2-slow", value=20.0, delay_ms=2500)],
    ])
    await c.start()
    yield c
    await asyncio.to_thread(c.stop)


async def _check_money(nc: NATS, result: dict[str, Any], funded: float) -> None:
    book = await ledger(nc)
    seller = result["seller"]  # the client that asked for the auction
    accounts = {who: await book.account(who) for who in [*PEOPLE, seller]}
    for acc in accounts.values():
        if acc is not None:
            assert acc.balance >= 0.0 and acc.reserved == 0.0
    market = accounts[seller]
    if result["status"] == "settled":
        winner = accounts[result["winner"]]
        assert winner is not None and market is not None
        assert winner.balance == funded - result["price"]
        assert market.balance == result["price"]
        assert [a for a in winner.applied if a.startswith("debit:")] == [
            f"debit:{result['auction_id']}"]
    else:
        assert result["status"] == "failed"
        assert market is None or market.balance == 0.0
        assert all(a is None or a.balance == funded for w, a in accounts.items()
                   if w != seller)


@pytest.mark.timeout(60)
async def test_auctioneer_killed_mid_auction_is_taken_over_exactly_once(
        cluster: LocalCluster) -> None:
    nc = await cluster.client()  # a client runs the auction and asks the bidders
    observer = await cluster.client(Role.OBSERVER)  # reads the buckets
    treasury = await cluster.client(Role.NODE)  # deposits still write the bucket directly
    book = await ledger(treasury)
    for who in PEOPLE:
        await book.deposit(who, 100.0, "funding")
    await treasury.close()
    aid = "takeover-1"
    request = {"auction_id": aid, "type": "first_price", "participants": PEOPLE,
               "duration_ms": 6000}
    running = asyncio.ensure_future(run_auction(nc, request, timeout=30))
    record = await watch_record(observer, aid)
    assert record.stage == "open"
    victim = 0 if record.owner == "auc-1" else 1
    cluster.kill(victim)
    result = await running
    survivor = "auc-2" if victim == 0 else "auc-1"
    assert result["auctioneer"] == survivor and result["takeovers"] == 1
    assert result["status"] in ("settled", "failed")
    live = [p for p in PEOPLE if p.startswith("n1" if victim == 1 else "n2")]
    # Only bids from agents still alive at the takeover (or stored before it) count.
    assert result["num_bids"] >= len(live)
    if result["status"] == "settled":
        assert result["winner"] in live or result["winner"] in PEOPLE
    awards = [(await stats(nc, p))["awards"].get(aid, []) for p in live]
    winners_told = {a["awards"][0]["bidder"] for got in awards for a in got}
    assert len(winners_told) <= 1
    if winners_told:
        assert winners_told == {result["winner"]}
    await _check_money(observer, result, 100.0)
    await nc.close()
    await observer.close()
