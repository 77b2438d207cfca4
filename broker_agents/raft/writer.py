"""LogWriter: a member's storage writes, in order, off the event loop, batched.

One worker thread does every ``save`` so writes land in submission order. Whatever is
submitted while a write is in flight is saved together in the next one (one fsync for
many Readys). A leader's early writes (``Ready.early``) do not hold up its messages; the
writer reports their ``mark`` once durable so the core may count the leader itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from broker_agents.core.raft import Persisted, PersistOp
from broker_agents.raft.memstore import MemoryStorage, Storage

QUICK_MAX_S = 0.002
"""A write is done on the loop only while recent ones took less than this (a moving
average): a disk whose fsyncs slow down (contention, a busy device) must not stall every
other service of the node; its writes go back to the thread until the average recovers."""


class LogWriter:
    def __init__(self, storage: Storage, on_durable: Callable[[Persisted], None],
                 on_failure: Callable[[BaseException], None]) -> None:
        self.storage = storage
        self.on_durable = on_durable
        self.on_failure = on_failure
        self.inline = isinstance(storage, MemoryStorage)
        self._executor: ThreadPoolExecutor | None = None
        self._queue: list[tuple[Sequence[PersistOp], Persisted | None, asyncio.Future[None]]] = []
        self._busy = False
        self._last: asyncio.Future[None] | None = None
        self.failed: BaseException | None = None
        self.write_s = 0.0  # moving average of a write's duration, on either path

    def submit(self, ops: Sequence[PersistOp], mark: Persisted | None, *,
               now: bool = False) -> asyncio.Future[None]:
        """Queue ``ops``; the future resolves once they (and all before them) are durable.

        ``now``: the caller waits for this write before it does anything else (a
        follower's append, answered only once durable), so while no write is in flight a
        plain append + fsync is done here, on the loop: two thread hand-offs cost more
        than the fsync itself (measured: ~200 us of a ~2 ms commit). Anything heavier
        (a snapshot, a log rewrite) still goes to the thread, and so does every write
        while recent ones were slow (``QUICK_MAX_S``).
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failed is not None:
            fut.set_exception(self.failed)
            return fut
        if self.inline and not self._busy:
            self.storage.save(ops)
            fut.set_result(None)
            if mark is not None:
                self.on_durable(mark)
            return fut
        quick = getattr(self.storage, "save_quick", None) if now else None
        if quick is not None and not self._busy and self.write_s < QUICK_MAX_S:
            try:
                started = time.perf_counter()
                done = quick(ops)
                self._observe(time.perf_counter() - started)
            except Exception as exc:
                self.failed = exc
                fut.set_exception(exc)
                fut.exception()  # reported through on_failure, not as "never retrieved"
                self.on_failure(exc)
                return fut
            if done:
                fut.set_result(None)
                if mark is not None:
                    self.on_durable(mark)
                return fut
        self._queue.append((ops, mark, fut))
        self._last = fut
        if not self._busy:
            self._start()
        return fut

    async def barrier(self) -> None:
        """Wait until every write submitted so far is durable (raises if one failed)."""
        if self.failed is not None:
            raise self.failed
        if self._last is not None and not self._last.done():
            await asyncio.shield(self._last)

    def _start(self) -> None:
        batch, self._queue = self._queue, []
        ops = [op for item in batch for op in item[0]]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="raft-writer")
        self._busy = True
        done = asyncio.get_running_loop().run_in_executor(self._executor, self._timed_save, ops)
        done.add_done_callback(lambda f: self._finished(batch, f))

    def _timed_save(self, ops: Sequence[PersistOp]) -> None:
        started = time.perf_counter()
        self.storage.save(ops)
        self._observe(time.perf_counter() - started)

    def _observe(self, seconds: float) -> None:
        self.write_s += (seconds - self.write_s) / 8

    def _finished(self, batch: list[tuple[Sequence[PersistOp], Persisted | None,
                                          asyncio.Future[None]]],
                  done: asyncio.Future[None]) -> None:
        self._busy = False
        exc = done.exception() if not done.cancelled() else asyncio.CancelledError()
        if exc is not None:
            self.failed = exc
            for _ops, _mark, fut in [*batch, *self._queue]:
                if not fut.done():
                    fut.set_exception(exc)
            self._queue = []
            for _ops, _mark, fut in batch:
                fut.exception()  # reported through on_failure, not as "never retrieved"
            self.on_failure(exc)
            return
        for _ops, mark, fut in batch:
            if not fut.done():
                fut.set_result(None)
            if mark is not None:
                self.on_durable(mark)
        if self._queue:
            self._start()

    async def close(self) -> None:
        """Let the write in flight finish (storage is closed after), then stop the thread."""
        with contextlib.suppress(Exception):  # a failed write was reported already
            await self.barrier()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
