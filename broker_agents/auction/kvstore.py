"""KV plumbing for the auction driver: a watched local mirror and CAS write helpers.

``KvMirror`` keeps a bucket's current values in memory through a KV watch (an ordered
consumer), so admission checks over 100 bidders cost no round trips; ``sync()`` waits until
the mirror has applied everything the stream held when it was called (one round trip), so
a read after ``sync()`` is at least as new as any write acknowledged before it. Decisions
are still made with CAS on the authoritative key, never on the mirror alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from broker_agents.logging import get_logger

log = get_logger(component="auction.kv")


class KvMirror:
    """key -> (value, revision) for one bucket, kept current by a watch."""

    def __init__(self, js: Any, kv: KeyValue, bucket: str) -> None:
        self.js = js
        self.kv = kv
        self.bucket = bucket
        self.values: dict[str, tuple[bytes, int]] = {}
        self.revision = 0
        self._changed = asyncio.Event()
        self._watcher: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._watcher = await self.kv.watchall()
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                             name=f"mirror-{self.bucket}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()

    async def _run(self) -> None:
        async for entry in self._watcher:
            if entry is None:
                continue
            self.apply(entry.key, None if entry.operation in (KV_DEL, KV_PURGE)
                       else entry.value, entry.revision)

    def apply(self, key: str, value: bytes | None, revision: int) -> None:
        """Apply one entry (idempotent: a watch may deliver an entry twice)."""
        current = self.values.get(key)
        if current is not None and current[1] >= revision:
            return
        if value is None:
            self.values.pop(key, None)
        else:
            self.values[key] = (value, revision)
        self.revision = max(self.revision, revision)
        self._changed.set()

    def get(self, key: str) -> tuple[bytes, int] | None:
        return self.values.get(key)

    async def sync(self, timeout: float = 2.0) -> bool:
        """Wait until everything in the stream now is applied; False on timeout."""
        info = await self.js.stream_info(f"KV_{self.bucket}")
        target = info.state.last_seq
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.revision < target:
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                log.warning("mirror behind", bucket=self.bucket, have=self.revision,
                            want=target)
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True
