"""A fault hook around a real KeyValue: listings that end early and status calls that time
out, the way they do around a stream leader change or a server cut (nats.py #842/#995:
a watch may emit its end-of-snapshot marker before the snapshot's entries)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nats.js.kv import KeyValue

MARKER_FIRST = "marker_first"  # the end-of-snapshot marker comes before the entries
EMPTY = "empty"  # the listing ends at once and shows nothing of the bucket
SHORT = "short"  # the listing shows one key of the bucket only


class _MarkerFirst:
    """A real watcher whose first update is the end-of-snapshot marker."""

    def __init__(self, watcher: Any) -> None:
        self._watcher = watcher
        self._marked = False

    async def updates(self, timeout: float | None = 5.0) -> Any:
        if not self._marked:
            self._marked = True
            return None
        return await self._watcher.updates(timeout=timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._watcher, name)


class FaultyKv:
    """Delegates to ``kv``; ``listings`` queues faults for the next ``watchall`` calls,
    and while ``status_fails`` is set every ``status()`` raises ``TimeoutError``."""

    def __init__(self, kv: KeyValue, short_key: str = "a1") -> None:
        self._kv = kv
        self._short_key = short_key
        self.listings: list[str] = []
        self.status_fails = False
        self.status_failures = 0
        self.status_failed = asyncio.Event()
        self.first_failure_at: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kv, name)

    async def status(self) -> Any:
        if self.status_fails:
            self.status_failures += 1
            if self.first_failure_at is None:
                self.first_failure_at = time.monotonic()
            self.status_failed.set()
            raise TimeoutError("status timed out (fault hook)")
        return await self._kv.status()

    async def watchall(self, **kwargs: Any) -> Any:
        fault = self.listings.pop(0) if self.listings else None
        if fault == EMPTY:
            return await self._kv.watch("no-such-key", **kwargs)
        if fault == SHORT:
            return await self._kv.watch(self._short_key, **kwargs)
        watcher = await self._kv.watchall(**kwargs)
        return _MarkerFirst(watcher) if fault == MARKER_FIRST else watcher
