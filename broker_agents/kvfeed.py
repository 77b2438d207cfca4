"""The one local KV mirror mechanism: a bucket's entries flow into a sink; snapshot, live
updates, re-list.

nats-py watches are known to die silently around reconnects, so the feed never trusts
one: it re-lists (a fresh watch whose snapshot is reconciled against what the sink holds)
when the owner reports a reconnect, when the bucket's last revision runs ahead of what
was applied for longer than ``stall_after`` seconds, or when the watch ends.

``BucketFeed`` drives any ``FeedSink`` (the registry's agent index is one); ``KvMirror`` is
the plain sink: ``key -> (value, revision)`` in a dict, with ``sync()`` to catch up with
the bucket before a read that must see every acknowledged write.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Protocol

import structlog
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue, StopIterSentinel

log = structlog.get_logger()


class FeedSink(Protocol):
    """What a feed drives. ``value`` is None for a delete or purge marker."""

    @property
    def applied_revision(self) -> int: ...

    def apply_entry(self, key: str, value: bytes | None, revision: int) -> None: ...

    def reconcile(self, present: dict[str, int], high_water: int) -> None: ...

    def reset(self) -> None: ...

    def on_freshness(self, bucket_revision: int, lag: int, staleness: float) -> None: ...

    def on_resync(self, reason: str) -> None: ...


class BucketFeed:
    def __init__(self, kv: KeyValue, sink: FeedSink, name: str, check_interval: float = 0.5,
                 stall_after: float = 1.0, op_timeout: float = 2.0) -> None:
        self.kv = kv
        self.sink = sink
        self.name = name
        self.check_interval = check_interval
        self.stall_after = stall_after
        self.op_timeout = op_timeout
        self.ready = asyncio.Event()
        self.resyncs = 0
        self._resync = asyncio.Event()
        self._reason = "start"
        self._tasks: list[asyncio.Task[None]] = []
        self._watcher: Any = None
        self._caught_up_at = time.monotonic()
        self._behind: tuple[float, int] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        """Start feeding; returns once the first snapshot is applied."""
        self._tasks = [asyncio.create_task(self._run(), name=f"feed-{self.name}"),
                       asyncio.create_task(self._monitor(), name=f"feed-{self.name}-monitor")]
        for task in self._tasks:
            task.add_done_callback(self._crashed)
        try:
            async with asyncio.timeout(timeout):
                await self.ready.wait()
        except BaseException:
            await self.stop()
            raise

    def _crashed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("kvfeed.crashed", feed=self.name, error=repr(task.exception()))

    async def stop(self) -> None:
        for task in self._tasks:
            # asyncio.wait_for inside libraries can swallow a cancel (3.11): insist.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
        self._tasks = []
        await self._stop_watcher()

    def request_resync(self, reason: str) -> None:
        """Re-list at the next opportunity (called on reconnect, stall, or by hand)."""
        self._reason = reason
        self._resync.set()

    async def _stop_watcher(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.op_timeout):
                    await watcher.stop()

    async def _run(self) -> None:
        backoff = 0.02
        while True:
            reason, self._reason = self._reason, "watch_ended"
            self._resync.clear()
            try:
                await self._relist(reason)
                backoff = 0.02
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("kvfeed.relist_failed", feed=self.name, error=repr(exc))
                await self._stop_watcher()
                self._reason = "retry"
                with contextlib.suppress(TimeoutError):
                    # sleep-ok: backoff while the server is unreachable, cut short by a resync
                    async with asyncio.timeout(backoff):
                        await self._resync.wait()
                backoff = min(backoff * 2, 1.0)

    async def _relist(self, reason: str) -> None:
        await self._stop_watcher()
        async with asyncio.timeout(self.op_timeout):
            status = await self.kv.status()
        start_seq = int(status.stream_info.state.last_seq)
        if start_seq < self.sink.applied_revision:
            log.warning("kvfeed.bucket_regressed", feed=self.name,
                        bucket_revision=start_seq, applied=self.sink.applied_revision)
            self.sink.reset()
        async with asyncio.timeout(self.op_timeout):
            self._watcher = await self.kv.watchall()
        present: dict[str, int] = {}
        high_water = start_seq
        while True:
            async with asyncio.timeout(self.op_timeout):
                entry = await self._watcher.updates(timeout=None)
            if entry is None:
                break
            if isinstance(entry, StopIterSentinel):
                raise RuntimeError("watch stopped during the snapshot")
            present[entry.key] = entry.revision
            high_water = max(high_water, entry.revision)
            self._apply(entry)
        self.resyncs += 1
        self.sink.reconcile(present, high_water)
        if reason != "start":
            self.sink.on_resync(reason)
            log.info("kvfeed.resynced", feed=self.name, reason=reason,
                     keys=len(present), revision=high_water)
        self.ready.set()

    async def _follow(self) -> None:
        watcher = self._watcher
        resync = asyncio.create_task(self._resync.wait())
        try:
            while True:
                nxt = asyncio.ensure_future(watcher.updates(timeout=None))
                done, _ = await asyncio.wait({nxt, resync}, return_when=asyncio.FIRST_COMPLETED)
                if resync in done:
                    nxt.cancel()
                    return
                entry = nxt.result()
                if isinstance(entry, StopIterSentinel):
                    return
                if entry is not None:
                    self._apply(entry)
        finally:
            resync.cancel()

    def _apply(self, entry: Any) -> None:
        deleted = entry.operation in (KV_DEL, KV_PURGE)
        self.sink.apply_entry(entry.key, None if deleted else entry.value, int(entry.revision))

    async def _monitor(self) -> None:
        """Freshness metrics, and re-list when the bucket runs ahead without us."""
        while True:
            # sleep-ok: periodic freshness check of the bucket
            await asyncio.sleep(self.check_interval)
            now = time.monotonic()
            try:
                async with asyncio.timeout(self.op_timeout):
                    status = await self.kv.status()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.sink.on_freshness(-1, -1, now - self._caught_up_at)
                continue
            last = int(status.stream_info.state.last_seq)
            applied = self.sink.applied_revision
            if last < applied:
                self.request_resync("regressed")
            elif applied >= last:
                self._caught_up_at = now
                self._behind = None
            elif self._behind is None or applied >= self._behind[1]:
                self._behind = (now, last)  # behind, but (re)started making progress
            elif now - self._behind[0] >= self.stall_after:
                self._behind = None
                self.request_resync("stalled")
            self.sink.on_freshness(last, max(0, last - applied), now - self._caught_up_at)


class KvMirror:
    """``key -> (value, revision)`` for one bucket, kept current by a ``BucketFeed``.

    Reads cost no round trip (admission checks over 100 bidders, the auction sweeper);
    ``sync()`` waits until the mirror has applied everything the stream held when it was
    called (one round trip), so a read after it is at least as new as any write
    acknowledged before it. Decisions are still made with CAS on the key, never on the
    mirror alone. Entries are applied idempotently: a watch may deliver one twice, or an
    older one late.
    """

    def __init__(self, kv: KeyValue, name: str, check_interval: float = 0.5,
                 stall_after: float = 1.0) -> None:
        self.kv = kv
        self.name = name
        self.values: dict[str, tuple[bytes, int]] = {}
        self._known: dict[str, int] = {}  # last revision per key, deletions included
        self._applied = 0
        self._changed = asyncio.Event()
        self.feed = BucketFeed(kv, self, name, check_interval, stall_after)

    async def start(self, timeout: float = 10.0) -> None:
        """Returns once the bucket's current entries are applied."""
        await self.feed.start(timeout)

    async def stop(self) -> None:
        await self.feed.stop()

    def notify_reconnected(self) -> None:
        """Call after the connection reconnected: the watch may be dead, re-list."""
        self.feed.request_resync("reconnected")

    def get(self, key: str) -> tuple[bytes, int] | None:
        return self.values.get(key)

    async def sync(self, timeout: float = 2.0) -> bool:
        """Wait until everything in the stream now is applied; False on timeout (and the
        feed re-lists: a mirror that does not catch up may be following a dead watch)."""
        async with asyncio.timeout(self.feed.op_timeout):
            status = await self.kv.status()
        target = int(status.stream_info.state.last_seq)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._applied < target:
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                log.warning("kvfeed.mirror_behind", feed=self.name, have=self._applied,
                            want=target)
                self.feed.request_resync("stalled")
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True

    # -- FeedSink -------------------------------------------------------------------

    @property
    def applied_revision(self) -> int:
        return self._applied

    def apply_entry(self, key: str, value: bytes | None, revision: int) -> None:
        if revision > self._known.get(key, 0):
            self._known[key] = revision
            if value is None:
                self.values.pop(key, None)
            else:
                self.values[key] = (value, revision)
        self._advance(revision)

    def reconcile(self, present: dict[str, int], high_water: int) -> None:
        """After a re-list: drop what the bucket no longer holds."""
        for key in [k for k, rev in self._known.items() if k not in present and rev <= high_water]:
            self._known.pop(key, None)
            self.values.pop(key, None)
        self._advance(high_water)

    def reset(self) -> None:
        self.values.clear()
        self._known.clear()
        self._applied = 0

    def on_freshness(self, bucket_revision: int, lag: int, staleness: float) -> None:
        return None

    def on_resync(self, reason: str) -> None:
        return None

    def _advance(self, revision: int) -> None:
        if revision > self._applied:
            self._applied = revision
        self._changed.set()
