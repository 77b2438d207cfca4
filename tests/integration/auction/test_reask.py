"""``run_auction`` asks again, under the same auction id, when nobody answered: a request
lost on its way (NATS core delivers at most once; an auctioneer unsubscribing as its node
stops drops what was routed to it) is run by the next ask, and an ask that finds the
auction already started (``already_exists``) waits for the one that runs it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker_agents import codec
from broker_agents.auction import client as auction_client
from broker_agents.auction.client import run_auction
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.secured import connect_as

S = Subjects()


class StubAuctioneer:
    """Answers ``coord.auction`` as told: ``plan`` says, per ask, what to do."""

    def __init__(self, plan: list[str]) -> None:
        self.plan = plan
        self.seen: list[dict[str, Any]] = []
        self.nc: Any = None
        self.later: list[asyncio.Future[None]] = []

    async def start(self, server: NatsServer) -> None:
        self.nc = await connect_as(server, Role.NODE)
        await self.nc.subscribe(S.coord("auction"), queue="auctioneers", cb=self._on)
        await self.nc.flush()

    async def _on(self, msg: Any) -> None:
        request = codec.decode(msg.data, msg.headers)
        self.seen.append(request)
        step = self.plan[len(self.seen) - 1] if len(self.seen) <= len(self.plan) else "exists"
        result = {"auction_id": request["auction_id"], "winner": "w", "price": 1.0}
        if step == "lose":
            return
        if step == "answer":
            await self.nc.publish(msg.reply, codec.encode(result))
        elif step == "slow":
            async def later() -> None:
                await asyncio.sleep(0.5)  # sleep-ok: the stub's auction takes this long
                await self.nc.publish(msg.reply, codec.encode(result))
            self.later.append(asyncio.ensure_future(later()))
        else:
            err = BrokerError(ErrorCode.ALREADY_EXISTS, "auction exists already")
            await self.nc.publish(msg.reply, codec.encode(err.to_payload()))


@pytest.fixture(autouse=True)
def quick_reasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auction_client, "REASK_AFTER_S", (0.2, 0.2, 0.2))


async def test_a_lost_request_is_asked_again_with_the_same_id(nats_server: NatsServer) -> None:
    stub = StubAuctioneer(["lose", "answer"])
    await stub.start(nats_server)
    nc = await connect_as(nats_server, Role.CLIENT)
    try:
        result = await run_auction(nc, {"type": "vickrey", "item": "x"}, timeout=5)
        assert len(stub.seen) == 2
        assert stub.seen[0]["auction_id"] == stub.seen[1]["auction_id"] == result["auction_id"]
    finally:
        await nc.close()
        await stub.nc.close()


async def test_an_ask_that_finds_the_auction_started_waits_for_the_first(
        nats_server: NatsServer) -> None:
    stub = StubAuctioneer(["slow", "exists", "exists"])
    await stub.start(nats_server)
    nc = await connect_as(nats_server, Role.CLIENT)
    try:
        result = await run_auction(nc, {"type": "vickrey", "item": "x"}, timeout=5)
        assert result["winner"] == "w" and len(stub.seen) >= 2
    finally:
        await nc.close()
        await stub.nc.close()


async def test_already_exists_on_the_first_ask_is_the_callers_error(
        nats_server: NatsServer) -> None:
    """An id the caller reused: told at once, not waited out."""
    stub = StubAuctioneer(["exists"])
    await stub.start(nats_server)
    nc = await connect_as(nats_server, Role.CLIENT)
    try:
        with pytest.raises(BrokerError) as err:
            await run_auction(nc, {"type": "vickrey", "item": "x", "auction_id": "a1"},
                              timeout=5)
        assert err.value.code == ErrorCode.ALREADY_EXISTS and len(stub.seen) == 1
    finally:
        await nc.close()
        await stub.nc.close()
