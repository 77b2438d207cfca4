"""What the server refused a connection: its permissions violations, as they arrive."""

from __future__ import annotations

import asyncio


class Violations:
    """Pass ``on_error`` as a connection's ``error_cb``; ``expect`` the next violation."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Exception] = asyncio.Queue()

    async def on_error(self, exc: Exception) -> None:
        self.queue.put_nowait(exc)

    async def expect(self, subject: str, what: str = "publish") -> None:
        """The next error is the server's refusal to ``what`` (publish, subscription) to
        ``subject``."""
        error = str(await asyncio.wait_for(self.queue.get(), 5)).lower()
        assert error == f'nats: permissions violation for {what} to "{subject.lower()}"', error
