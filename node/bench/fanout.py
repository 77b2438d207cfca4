"""The raw scatter-gather baseline: one publish, N plain nats-py responders in two processes.

Auctions and coordination protocols are fan-outs at heart; their benchmarks report this
figure, measured in the same run, beside their own.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

RESPONDER = "node.bench.responder"


async def raw_fanout(nc: NATS, context: Path, subject: str, responders: int, runs: int,
                     payload: bytes) -> list[float]:
    """Seconds from publish until all ``responders`` answered, ``runs`` times; the
    responders connect with ``context`` (a node's), ``nc`` must be allowed to publish
    ``subject`` too."""
    return (await raw_fanouts(nc, context, subject, responders, runs, payload))[0]


async def raw_fanouts(nc: NATS, context: Path, subject: str, responders: int, runs: int,
                      payload: bytes, *, relayed: int = 0) -> tuple[list[float], list[float]]:
    """``raw_fanout``'s samples, and ``relayed`` runs through a raw relay in the first
    responder process (``responder.py``): the floor of a coordinator's two round trips."""
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", RESPONDER, str(context), subject, str(responders // 2),
        *([str(responders)] if relayed and k == 0 else []),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE) for k in range(2)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            await asyncio.wait_for(proc.stdout.readline(), 30)
        samples = []
        for _ in range(relayed):
            started = time.perf_counter()
            await nc.request(f"{subject}.relay", payload, timeout=10)
            samples.append(time.perf_counter() - started)
        relay_samples, samples = samples, []
        for _ in range(runs):
            inbox = nc.new_inbox()
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            got = [0]

            async def on_reply(_: Any, got: list[int] = got,
                               done: asyncio.Future[None] = done) -> None:
                got[0] += 1
                if got[0] == responders and not done.done():
                    done.set_result(None)

            sub = await nc.subscribe(inbox, cb=on_reply)
            started = time.perf_counter()
            await nc.publish(subject, payload, reply=inbox)
            await asyncio.wait_for(done, 10)
            samples.append(time.perf_counter() - started)
            await sub.unsubscribe()
        return samples, relay_samples
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
            await asyncio.wait_for(proc.wait(), 10)
