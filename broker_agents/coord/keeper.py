"""Holding a lease from inside an agent: acquire (or campaign), renew, release on stop.

``LeaseKeeper.run`` loops until stopped: while it holds the lease it renews every
``ttl/3``; while it does not, it retries every ``ttl/4`` (so a successor takes over
within ``ttl + ttl/4`` of the last renewal of a dead holder). It considers itself the
holder only until ``sent + ttl`` of its last successful write, measured from *before* the
write was sent, so it stops believing it leads no later than the store expires it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable

from broker_agents.coord.lease import LeaseStore
from broker_agents.logging import get_logger


class LeaseKeeper:
    def __init__(self, store: LeaseStore, key: str, holder: str, ttl_ms: int,
                 on_change: Callable[[bool, int], Awaitable[None] | None] | None = None) -> None:
        self.store = store
        self.key = key
        self.holder = holder
        self.ttl_ms = ttl_ms
        self.on_change = on_change
        self.token: int | None = None
        self.valid_until = 0.0
        self.grants = 0
        self._stop = asyncio.Event()
        self._granted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.log = get_logger(component="lease", key=key, holder=holder)

    @property
    def held(self) -> bool:
        return self.token is not None and asyncio.get_running_loop().time() < self.valid_until

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"lease-{self.key}")

    async def wait_held(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not self.held and loop.time() < end:
            self._granted.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._granted.wait(), end - loop.time())
        return self.held

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        ttl = self.ttl_ms / 1000
        while not self._stop.is_set():
            sent = loop.time()
            try:
                if self.held:
                    grant = await self.store.renew(self.key, self.holder, self.token,
                                                   self.ttl_ms)
                else:
                    grant = await self.store.acquire(self.key, self.holder, self.ttl_ms)
            except Exception as exc:  # KV unavailable: keep trying, stop believing on time
                self.log.warning("lease write failed", error=repr(exc))
                grant = None
            was = self.held
            if grant is not None and grant.granted:
                if self.token != grant.record.token:
                    self.grants += 1
                self.token = grant.record.token
                self.valid_until = sent + ttl
                self._granted.set()
            elif grant is not None or loop.time() >= self.valid_until:
                self.token = None
                self.valid_until = 0.0
            if was != self.held and self.on_change is not None:
                notified = self.on_change(self.held, self.token or 0)
                if inspect.isawaitable(notified):
                    await notified
            wait = ttl / 3 if self.held else ttl / 4
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)

    async def stop(self, release: bool = True) -> None:
        """Stop renewing; give the lease back if we hold it (graceful stop)."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if release and self.token is not None:
            try:
                await self.store.release(self.key, self.holder, self.token)
            except Exception as exc:
                self.log.warning("lease release failed", error=repr(exc))
        self.token = None
        self.valid_until = 0.0
