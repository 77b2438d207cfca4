"""Load shapes shared by the consensus benchmark's two systems (ours and JetStream):
one client issuing operations one after another, and ``concurrency`` clients in a closed
loop (each sends its next operation when the previous one is answered) for a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Op = Callable[[int, int], Awaitable[object]]  # (client index, operation number) -> answer


async def sequential(op: Op, n: int) -> list[float]:
    """Seconds per operation, ``n`` operations from one client."""
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await op(0, i)
        samples.append(time.perf_counter() - started)
    return samples


@dataclass
class Loaded:
    """What a closed-loop phase did: every answered operation's latency, and its span."""

    samples: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.samples)


async def closed_loop(op: Op, concurrency: int, seconds: float) -> Loaded:
    """``concurrency`` clients, each issuing operations back to back for ``seconds``.
    An operation that raises fails the phase (its error propagates): a benchmark of
    writes that got lost must not report a rate."""
    out = Loaded()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    counter = iter(range(1 << 62))

    async def client(index: int) -> None:
        while loop.time() < deadline:
            started = time.perf_counter()
            await op(index, next(counter))
            out.samples.append(time.perf_counter() - started)

    begun = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(concurrency)))
    out.seconds = time.perf_counter() - begun
    return out


async def spread(op: Op, n: int, concurrency: int) -> Loaded:
    """``n`` operations over ``concurrency`` closed-loop clients (a fixed amount of work,
    not a fixed time): every one is answered or the phase fails."""
    out = Loaded()
    numbers = iter(range(n))

    async def client(index: int) -> None:
        for i in numbers:
            started = time.perf_counter()
            await op(index, i)
            out.samples.append(time.perf_counter() - started)

    begun = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(max(1, min(concurrency, n)))))
    out.seconds = time.perf_counter() - begun
    return out
