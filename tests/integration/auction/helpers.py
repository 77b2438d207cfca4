"""Shared helpers for auction integration tests: agent specs, accounts, bidder stats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NATS

from broker_agents import codec
from broker_agents.auction.bidder import BidderStats
from broker_agents.auction.ledger import Ledger
from broker_agents.auction.records import AuctionRecord
from broker_agents.core.errors import BrokerError
from broker_agents.kv import open_bucket
from broker_agents.messages import envelope
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request

S = Subjects()
AUCTIONEER = "broker_agents.auction.auctioneer:AuctioneerAgent"
BIDDER = "broker_agents.auction.bidder:BidderAgent"


def auctioneer(agent_id: str, **kwargs: Any) -> dict[str, Any]:
    return {"class": AUCTIONEER, "id": agent_id, "kwargs": kwargs}


def bidder(agent_id: str, caps: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"class": BIDDER, "id": agent_id, "kwargs": kwargs}
    if caps:
        spec["capabilities"] = caps
    return spec


async def ledger(nc: NATS) -> Ledger:
    return Ledger(await open_bucket(nc.jetstream(), S.bucket("accounts")))


async def stats(nc: NATS, agent_id: str) -> dict[str, Any]:
    reply = await nats_request(nc, S.agent(agent_id), codec.encode(envelope(BidderStats())),
                             timeout=5)
    payload = codec.decode(reply.data)
    err = BrokerError.from_payload(payload)
    if err is not None:
        raise err
    assert isinstance(payload, dict)
    return payload


async def ask(nc: NATS, subject: str, payload: Any, *, as_json: bool = False,
              raw: bytes | None = None, timeout: float = 10, signed: bool = True,
              acting_for: str | None = None) -> Any:
    """A request as the connection's user (a signed act unless ``signed=False``; an
    admin's or a node's may be ``acting_for`` someone); the decoded reply."""
    data = raw if raw is not None else codec.encode(payload, as_json=as_json)
    reply = await nats_request(nc, subject, data, timeout=timeout, signed=signed,
                               acting_for=acting_for)
    return codec.decode(reply.data, reply.headers)


async def watch_record(nc: NATS, aid: str,
                       ready: Callable[[AuctionRecord], bool] = lambda r: True,
                       timeout: float = 10) -> AuctionRecord:
    """Watch the auction's key (no polling) until a stored record satisfies ``ready``."""
    kv = await open_bucket(nc.jetstream(), S.bucket("auctions"))
    watcher = await kv.watch(aid)
    try:
        while True:
            entry = await watcher.updates(timeout=timeout)
            if entry is not None and entry.value:
                record = AuctionRecord.model_validate(codec.decode(entry.value))
                if ready(record):
                    return record
    finally:
        await watcher.stop()
