"""Measurements shared by the consensus-backed benchmarks (Raft, variables).

``raw_rtt`` is the plain nats-py request/reply figure ours is compared with; ``pipelined``
keeps ``window`` proposals in flight on one shared reply inbox and counts commits/s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from broker_agents import transport
from broker_agents.codec import decode, encode


async def raw_rtt(server: Any, client: Any, n: int, payload: bytes) -> list[float]:
    """Seconds per plain request/reply, ``client`` asking an echo on ``server``."""

    async def echo(msg: Any) -> None:
        await msg.respond(msg.data)

    subject = f"ba.bench.echo.{uuid.uuid4().hex}"
    sub = await server.subscribe(subject, cb=echo)
    await server.flush()
    samples = []
    try:
        # Untimed, and asked again on "no responders": across a route, the client's
        # server learns of the subscription a moment after the subscriber's flush.
        await transport.request(client, subject, payload, timeout=2)
        for _ in range(n):
            started = time.perf_counter()
            await client.request(subject, payload, timeout=2)
            samples.append(time.perf_counter() - started)
    finally:
        await sub.unsubscribe()
    return samples


async def pipelined(nc: Any, subject: str, n: int, window: int,
                    body: Callable[[int], dict[str, Any]]) -> float:
    """Publish ``body(i)`` for i < n with ``window`` unanswered at most; answers per second.

    The shared reply inbox is one of the connection's own (``new_inbox``): a user may
    subscribe under its own inbox prefix only.

    Raises RuntimeError if any answer is an error or if answers stop coming (at most
    once delivery: a lost reply must not hang the benchmark).
    """
    inbox = nc.new_inbox()
    state = {"replies": 0, "errors": 0}
    done, more = asyncio.Event(), asyncio.Event()

    async def on_reply(msg: Any) -> None:
        state["replies"] += 1
        if "error" in decode(msg.data):
            state["errors"] += 1
        if state["replies"] >= n:
            done.set()
        more.set()

    sub = await nc.subscribe(inbox, cb=on_reply)
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    try:
        while sent < n:
            while sent < n and sent - state["replies"] < window:
                await nc.publish(subject, encode(body(sent)), reply=inbox)
                sent += 1
            more.clear()
            try:
                await asyncio.wait_for(more.wait(), 10)
            except TimeoutError:
                raise RuntimeError(f"pipelined proposals stalled: {sent} sent, {state}") from None
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await sub.unsubscribe()
    if state["errors"]:
        raise RuntimeError(f"{state['errors']} pipelined proposals failed")
    return n / (loop.time() - start)
