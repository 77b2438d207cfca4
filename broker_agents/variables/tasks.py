"""Long-lived tasks an agent starts in ``on_start`` and ends in ``on_stop``.

``ctx.spawn`` tasks are awaited before ``on_stop`` runs, so a loop that only ends when the
agent stops cannot be one. These are cancelled in ``on_stop`` instead; a failure is handed
to ``ctx.spawn`` so that it still crashes the agent to its supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


def own(ctx: Any, tasks: list[asyncio.Task[None]], task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    tasks.append(task)

    def done(t: asyncio.Task[None]) -> None:
        if t.cancelled() or t.exception() is None:
            return
        exc = t.exception()
        assert exc is not None

        async def reraise() -> None:
            raise exc

        with contextlib.suppress(RuntimeError):  # the agent is already stopping
            ctx.spawn(reraise(), "crash")

    task.add_done_callback(done)


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    pending = list(tasks)
    tasks.clear()
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
