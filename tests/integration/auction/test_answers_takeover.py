"""An auctioneer dies mid-round after two of three bidders answered the call for bids; a
second driver started from the stored record asks only the silent one, and the auction
closes as soon as it answers (everyone answered), without calling the others again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from broker_agents import codec, identity
from broker_agents.auction.driver import AuctionDriver
from broker_agents.auction.host import AuctionHost
from broker_agents.auction.ledger import Ledger
from broker_agents.auction.messages import build_config, parse_request
from broker_agents.auction.records import AuctionRecord
from broker_agents.clock import wall_ms
from broker_agents.kv import open_bucket
from broker_agents.messages import open_envelope
from broker_agents.reputation import ReputationBook
from tests.integration.auction.helpers import S, watch_record

AID = "answers-1"
LEASE_MS = 300  # answers are persisted at a third of it while someone is still silent


async def _host(nc: NATS, owner: str) -> AuctionHost:
    js = nc.jetstream()
    return AuctionHost(
        nc=nc, subjects=S, owner=owner, lease_ms=LEASE_MS,
        auctions=await open_bucket(js, S.bucket("auctions")),
        ledger=Ledger(await open_bucket(js, S.bucket("accounts"))),
        reputation=ReputationBook(await open_bucket(js, S.bucket("reputation"))))


async def _bidder(nc: NATS, agent_id: str, calls: dict[str, int],
                  answer: Callable[[int], Awaitable[dict[str, Any] | None]]) -> None:
    """A stand-in bidder: counts the calls for bids it gets, answers as told (signed as
    ``agent_id``, its node speaking for it, as the runtime signs an agent's answers)."""
    calls[agent_id] = 0

    async def on_call(msg: Msg) -> None:
        kind, _, _ = open_envelope(codec.decode(msg.data))
        assert kind == "auction.announce"
        calls[agent_id] += 1
        reply = await answer(calls[agent_id])
        if reply is not None:
            data = codec.encode(reply)
            await nc.publish(msg.reply, data,
                             headers=identity.act_headers(nc, msg.reply, data, agent_id))

    await nc.subscribe(S.agent(agent_id), cb=on_call)


@pytest.mark.timeout(30)
async def test_a_takeover_mid_round_keeps_who_has_answered(nc: NATS) -> None:
    calls: dict[str, int] = {}
    second_call = asyncio.Event()

    async def no_bid(_: int) -> dict[str, Any]:
        return {"bids": []}

    async def one_bid(_: int) -> dict[str, Any]:
        return {"bids": [{"auction_id": AID, "msg_id": "fast-1-bid", "bidder": "fast-1",
                          "amount": 7.0}]}

    async def silent_until_asked_again(n: int) -> dict[str, Any] | None:
        if n == 1:
            return None  # the first auctioneer never hears from it
        second_call.set()
        return {"bids": []}

    await _bidder(nc, "fast-1", calls, one_bid)
    await _bidder(nc, "fast-2", calls, no_bid)
    await _bidder(nc, "slow", calls, silent_until_asked_again)
    await nc.flush()

    request = parse_request({"auction_id": AID, "type": "first_price", "budgets": False,
                             "participants": ["fast-1", "fast-2", "slow"],
                             "duration_ms": 10_000})
    first = await _host(nc, "auc-1")
    record, effects = AuctionDriver.new_record(first, request, build_config(request, AID),
                                               ["fast-1", "fast-2", "slow"], wall_ms())
    dying = await AuctionDriver.create(first, record, effects)
    running = asyncio.ensure_future(dying.run_open())
    stored = await watch_record(nc, AID, lambda r: len(r.state.answered) == 2)
    running.cancel()  # the first auctioneer dies mid-round: nothing more is written
    await asyncio.gather(running, return_exceptions=True)
    assert set(stored.state.answered) == {"fast-1", "fast-2"}
    assert [b.bidder for b in stored.state.bids] == ["fast-1"]

    second = await _host(nc, "auc-2")
    entry = await second.auctions.get(AID)
    assert entry.value is not None and entry.revision is not None
    taken = AuctionRecord.model_validate(codec.decode(entry.value)).model_copy(
        update={"owner": "auc-2", "heartbeat_ms": wall_ms(), "takeovers": 1})
    rev = await second.auctions.update(AID, codec.encode(taken), last=entry.revision)
    successor = AuctionDriver(second, taken, rev)
    await asyncio.wait_for(successor.run_open(), timeout=10)

    assert second_call.is_set()
    assert calls == {"fast-1": 1, "fast-2": 1, "slow": 2}
    outcome = successor.record.outcome
    assert outcome is not None
    assert (outcome.reason, outcome.winner, outcome.price) == ("all_answered", "fast-1", 7.0)
    assert str(successor.record.stage) == "closed"
