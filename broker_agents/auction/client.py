"""Client helpers for the external auction API (CLI, benchmarks, tests).

``run_auction`` sends a request to ``<p>.coord.auction`` and returns the ``AuctionResult``
as a dict. It subscribes to the auction's result subject first, so when the auctioneer
that took the request dies and another one finishes the auction, the result still arrives.

The request is a signed act of the connection's user: its seller is that user unless the
request names another, which only a node or an admin may (or ``acting_for``: a node
speaking for an agent it hosts, an admin for any account).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

from broker_agents import codec
from broker_agents.auction.auctioneer import new_auction_id
from broker_agents.auction.driver import TAKEN_OVER
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request


async def run_auction(nc: NATS, request: dict[str, Any], *, timeout: float = 30.0,
                      subjects: Subjects | None = None, as_json: bool = False,
                      acting_for: str | None = None) -> dict[str, Any]:
    """Run one auction; the result dict, or ``BrokerError`` from the auctioneer."""
    subjects = subjects or Subjects()
    request = dict(request)
    aid = request.setdefault("auction_id", new_auction_id())
    published: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def on_result(msg: Any) -> None:
        if not published.done():
            published.set_result(codec.decode(msg.data, msg.headers))

    sub = await nc.subscribe(subjects.auction(aid, "result"), cb=on_result)
    asking = asyncio.ensure_future(nats_request(
        nc, subjects.coord("auction"), codec.encode(request, as_json=as_json), timeout,
        signed=True, acting_for=acting_for))
    try:
        # Whichever comes first: our reply, or the result published by a successor.
        waiting: list[asyncio.Future[Any]] = [asking, published]
        await asyncio.wait(waiting, timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        if published.done():
            return published.result()
        try:
            reply = asking.result() if asking.done() else None
        except nats.errors.NoRespondersError as exc:
            raise BrokerError(ErrorCode.UNAVAILABLE, "no auctioneer is serving "
                              f"{subjects.coord('auction')}") from exc
        except nats.errors.TimeoutError:
            reply = None
        if reply is None:
            raise BrokerError(ErrorCode.TIMEOUT, f"no result for auction {aid} within "
                              f"{timeout}s", {"auction_id": aid})
        payload = codec.decode(reply.data, reply.headers)
        err = BrokerError.from_payload(payload)
        if err is not None:
            if err.details.get(TAKEN_OVER):  # a successor finishes it and publishes the result
                return await _published(published, timeout)
            raise err
        assert isinstance(payload, dict)
        return payload
    finally:
        asking.cancel()
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def _published(fut: asyncio.Future[dict[str, Any]], timeout: float) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(fut, timeout)
    except TimeoutError as exc:
        raise BrokerError(ErrorCode.TIMEOUT, "no auction result within the timeout") from exc
