"""A dead link must not hold a reconnect: bound how long nats-py waits for a socket to close.

After pings go unanswered nats-py reconnects, but first awaits the old transport's
``wait_closed``. On a link that silently drops packets (an unplugged host, a partition)
that waits for the unsent bytes until the kernel gives up on TCP, about 15 minutes
(nats-io/nats.py#671, open), and meanwhile the client tries no other server. Our netns
chaos suite reproduces it. The socket is dead either way, so past ``CLOSE_BOUND`` it is
aborted: its unsent bytes were never going to arrive.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.transport import TcpTransport

CLOSE_BOUND = 1.0  # a live peer acknowledges a close in milliseconds


def install() -> None:
    """Patch ``TcpTransport.wait_closed`` once per process (idempotent)."""
    original = TcpTransport.wait_closed
    if getattr(original, "_bounded", False):
        return

    async def wait_closed(self: Any) -> Any:
        try:
            return await asyncio.wait_for(original(self), CLOSE_BOUND)  # type: ignore[no-untyped-call]
        except TimeoutError:
            for writer in (self._io_writer, self._bare_io_writer):
                if writer is not None:
                    writer.transport.abort()
            return None

    wait_closed._bounded = True  # type: ignore[attr-defined]
    TcpTransport.wait_closed = wait_closed  # type: ignore[method-assign]
