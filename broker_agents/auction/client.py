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

REASK_AFTER_S = (1.0, 2.0, 4.0)
"""When neither an answer nor a published result came, the same request (same auction id)
is sent again after these pauses. NATS core delivers at most once: a request routed to
an auctioneer's server while that auctioneer unsubscribes (its node stopping) is dropped,
and nobody would ever run the auction. Asking again is safe: the id is the auction's
record key, so a request whose auction exists already is answered ``already_exists`` and
ignored here; the one that runs it answers (or a successor publishes the result)."""


async def run_auction(nc: NATS, request: dict[str, Any], *, timeout: float = 30.0,
                      subjects: Subjects | None = None, as_json: bool = False,
                      acting_for: str | None = None) -> dict[str, Any]:
    """Run one auction; the result dict, or ``BrokerError`` from the auctioneer."""
    subjects = subjects or Subjects()
    request = dict(request)
    aid = request.setdefault("auction_id", new_auction_id())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    published: asyncio.Future[dict[str, Any]] = loop.create_future()

    async def on_result(msg: Any) -> None:
        if not published.done():
            published.set_result(codec.decode(msg.data, msg.headers))

    def ask() -> asyncio.Future[Any]:
        return asyncio.ensure_future(nats_request(
            nc, subjects.coord("auction"), codec.encode(request, as_json=as_json),
            max(0.01, deadline - loop.time()), signed=True, acting_for=acting_for))

    sub = await nc.subscribe(subjects.auction(aid, "result"), cb=on_result)
    asks = [ask()]
    sent = 1
    pauses = iter(REASK_AFTER_S)
    try:
        while True:
            # Whichever comes first: an answer, or the result published by a successor.
            pause = next(pauses, None)
            left = deadline - loop.time()
            wait = left if pause is None else min(left, pause)
            await asyncio.wait([*asks, published], timeout=max(0.0, wait),
                               return_when=asyncio.FIRST_COMPLETED)
            if published.done():
                return published.result()
            for done in [a for a in asks if a.done()]:
                asks.remove(done)
                answer = _answer(done, subjects, reasked=sent > 1)
                if answer is _TAKEN_OVER:
                    return await _published(published, max(0.01, deadline - loop.time()))
                if answer is not None:
                    return answer
            if loop.time() >= deadline:
                raise BrokerError(ErrorCode.TIMEOUT, f"no result for auction {aid} within "
                                  f"{timeout}s", {"auction_id": aid})
            if pause is not None:
                asks.append(ask())  # no answer yet: perhaps nobody got it (see above)
                sent += 1
    finally:
        for a in asks:
            a.cancel()
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


_TAKEN_OVER: dict[str, Any] = {}


def _answer(done: asyncio.Future[Any], subjects: Subjects,
            reasked: bool) -> dict[str, Any] | None:
    """What one ask brought: the result; None when nothing to act on (a timeout, or, once
    we asked again, ``already_exists`` or no responders: another of our asks runs it);
    ``_TAKEN_OVER`` when a successor will publish the result."""
    try:
        reply = done.result()
    except nats.errors.NoRespondersError as exc:
        if reasked:
            return None
        raise BrokerError(ErrorCode.UNAVAILABLE, "no auctioneer is serving "
                          f"{subjects.coord('auction')}") from exc
    except nats.errors.TimeoutError:
        return None
    payload = codec.decode(reply.data, reply.headers)
    err = BrokerError.from_payload(payload)
    if err is None:
        assert isinstance(payload, dict)
        return payload
    if err.details.get(TAKEN_OVER):  # a successor finishes it and publishes the result
        return _TAKEN_OVER
    if err.code == ErrorCode.ALREADY_EXISTS and reasked:
        return None  # our own other ask runs it: its answer (or the result) follows
    raise err


async def _published(fut: asyncio.Future[dict[str, Any]], timeout: float) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(fut, timeout)
    except TimeoutError as exc:
        raise BrokerError(ErrorCode.TIMEOUT, "no auction result within the timeout") from exc
