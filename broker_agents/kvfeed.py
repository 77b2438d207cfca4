"""The one local KV mirror mechanism: a bucket's entries flow into a sink; snapshot, live
updates, re-list.

nats-py watches die silently around reconnects and a listing may end early (its marker
before its entries, or a replica behind), so the feed trusts neither; the decisions are
the pure ``core/feedwatch.py``. It re-lists after a reconnect of its connection
(``reconnected``), when a status call every ``check_interval`` shows the watch behind or
the stream silent for ``stall_after`` (``stalled``, ``unreachable``), when the stream stays
below what was applied (``regressed``) and when the watch ends (``watch_ended``). A listing
short of the stream's state is listed again (``kvfeed.listing_refused``), never reconciled
to. Each re-list is a ``kvfeed.resynced`` line and ``ba_kvfeed_resyncs_total{feed,reason}``;
the catch-up bound that follows from the timers is ``catch_up_bound()``. A value the sink
cannot use is skipped (``kvskip``), never allowed to stop the feed.

``BucketFeed`` drives any ``FeedSink`` (the registry's agent index is one; ``kvmirror``'s
``KvMirror`` is the plain one).
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Protocol

import structlog
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue, StopIterSentinel
from prometheus_client import Counter

from broker_agents.core.errors import CodedError, ErrorCode
from broker_agents.core.feedwatch import (
    REGRESSED,
    Checked,
    CheckFailed,
    FeedWatch,
    Relisted,
    RelistStarted,
    StreamMark,
    listing_complete,
)
from broker_agents.kvskip import SINK_ERROR, record_skipped

log = structlog.get_logger()

CHECK_INTERVAL = 0.5
STALL_AFTER = 1.0
OP_TIMEOUT = 2.0
RELIST_BUDGET = 1.0  # one re-list (status, watch, snapshot) and one refused listing's retry

RESYNCS = Counter("ba_kvfeed_resyncs_total", "Re-lists of a bucket by a local mirror",
                  ["feed", "reason"])
LISTINGS_REFUSED = Counter("ba_kvfeed_listings_refused_total",
                           "Listings short of the stream's state, listed again", ["feed"])
RELIST_FAILURES = Counter("ba_kvfeed_relist_failures_total",
                          "Re-list attempts that failed and were retried", ["feed"])
CHECK_FAILURES = Counter("ba_kvfeed_check_failures_total",
                         "Freshness checks whose status call failed or timed out", ["feed"])


def catch_up_bound(check_interval: float = CHECK_INTERVAL, stall_after: float = STALL_AFTER,
                   relist: float = RELIST_BUDGET) -> float:
    """Seconds after the stream answers again (a heal) within which a mirror has applied
    all it held: the check that starts the stall clock (up to one interval late), the
    first check past the threshold (one more), one re-list."""
    return 2 * check_interval + stall_after + relist


class RelistRefused(CodedError):
    """A listing fell short of the stream, or the stream answered below what was applied
    (a replica behind, not believed until it lasts): list again."""

    CODE = ErrorCode.UNAVAILABLE


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
    """Feeds a bucket into a ``FeedSink``; see the module docstring for when it re-lists."""

    def __init__(self, kv: KeyValue, sink: FeedSink, name: str,
                 check_interval: float = CHECK_INTERVAL, stall_after: float = STALL_AFTER,
                 op_timeout: float = OP_TIMEOUT, connection: Any = None) -> None:
        self.kv = kv
        self.sink = sink
        self.name = name
        self.check_interval = check_interval
        self.stall_after = stall_after
        self.op_timeout = op_timeout
        self.ready = asyncio.Event()
        self.resyncs = 0
        self.freshness = FeedWatch(stall_after, time.monotonic())
        # the connection whose reconnects re-list (nats-py keeps a count in its stats)
        self._nc = connection if connection is not None else getattr(
            getattr(kv, "_js", None), "_nc", None)
        self._resync = asyncio.Event()
        self._reason = "start"
        self._tasks: list[asyncio.Task[None]] = []
        self._watcher: Any = None
        self._listed_at_reconnects = self._reconnects()

    def catch_up_bound(self) -> float:
        return catch_up_bound(self.check_interval, self.stall_after)

    async def start(self, timeout: float = 10.0) -> None:
        """Start feeding; returns once the first complete listing is applied."""
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

    def _reconnects(self) -> int:
        stats = getattr(self._nc, "stats", None)
        return int(stats.get("reconnects", 0)) if isinstance(stats, dict) else 0

    async def _stop_watcher(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.op_timeout):
                    await watcher.stop()

    async def _run(self) -> None:
        attempt = 0
        while True:
            reason = self._reason
            self._resync.clear()
            try:
                await self._relist(reason, attempt)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                RELIST_FAILURES.labels(self.name).inc()
                log.warning("kvfeed.relist_failed", feed=self.name, reason=reason,
                            attempt=attempt, error=repr(exc))
                await self._stop_watcher()
                if not self._resync.is_set():
                    self._reason = reason  # retried as what it was
                with contextlib.suppress(TimeoutError):
                    # sleep-ok: retry pause while the stream is unreachable or a listing
                    # fell short; a new resync request cuts it short
                    async with asyncio.timeout(min(0.02 * 2 ** attempt, self.check_interval)):
                        await self._resync.wait()
                continue
            attempt = 0
            self._reason = "watch_ended"
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("kvfeed.watch_failed", feed=self.name, error=repr(exc))

    async def _stream_mark(self, timeout: float) -> StreamMark:
        async with asyncio.timeout(timeout):
            status = await self.kv.status()
        state = status.stream_info.state
        return StreamMark(int(state.last_seq), int(state.messages))

    async def _relist(self, reason: str, attempt: int) -> None:
        """List the bucket afresh and reconcile the sink to it, if the listing is whole."""
        started = time.monotonic()
        self.freshness.step(RelistStarted(started))
        await self._stop_watcher()
        self._listed_at_reconnects = self._reconnects()
        mark = await self._stream_mark(self.op_timeout)
        applied = self.sink.applied_revision
        if mark.last_seq < applied:
            if reason != REGRESSED:
                raise RelistRefused("the stream answered below what the feed applied",
                                   {"stream": mark.last_seq, "applied": applied})
            log.warning("kvfeed.bucket_regressed", feed=self.name,
                        bucket_revision=mark.last_seq, applied=applied)
            self.sink.reset()
        async with asyncio.timeout(self.op_timeout):
            self._watcher = await self.kv.watchall()
        present: dict[str, int] = {}
        seen = 0
        while True:
            async with asyncio.timeout(self.op_timeout):
                entry = await self._watcher.updates(timeout=None)
            if entry is None:
                break
            if isinstance(entry, StopIterSentinel):
                raise RuntimeError("watch stopped during the snapshot")
            present[entry.key] = entry.revision
            seen = max(seen, int(entry.revision))
            self._apply(entry)
        if not listing_complete(mark, len(present), seen):
            LISTINGS_REFUSED.labels(self.name).inc()
            log.warning("kvfeed.listing_refused", feed=self.name, reason=reason,
                        keys=len(present), revision=seen, stream_last=mark.last_seq,
                        stream_messages=mark.messages)
            raise RelistRefused("the listing fell short of the stream",
                               {"keys": len(present), "revision": seen,
                                "stream_last": mark.last_seq,
                                "stream_messages": mark.messages})
        high_water = max(seen, mark.last_seq)
        self.resyncs += 1
        self.sink.reconcile(present, high_water)
        self.freshness.step(Relisted(time.monotonic()))
        RESYNCS.labels(self.name, reason).inc()
        if reason != "start":
            self.sink.on_resync(reason)
            log.info("kvfeed.resynced", feed=self.name, reason=reason, keys=len(present),
                     revision=high_water, attempts=attempt + 1,
                     took=round(time.monotonic() - started, 3))
        self.ready.set()

    async def _follow(self) -> None:
        """Apply the watch's entries until it ends or a re-list is asked for.

        One reader task drains the watch's queue, so a burst is applied in one go (an
        ``await`` on a non-empty queue does not suspend); a task per entry applied one
        entry per loop turn, fell behind a bulk load and was re-listed as stalled."""
        reader = asyncio.create_task(self._drain(self._watcher))
        resync = asyncio.create_task(self._resync.wait())
        try:
            await asyncio.wait({reader, resync}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                reader.result()  # the watch ended (or failed: raised to ``_run``)
        finally:
            reader.cancel()
            resync.cancel()

    async def _drain(self, watcher: Any) -> None:
        while True:
            entry = await watcher.updates(timeout=None)
            if isinstance(entry, StopIterSentinel):
                return
            if entry is not None:
                self._apply(entry)

    def _apply(self, entry: Any) -> None:
        """A value the sink fails on reads as absent (ending the watch re-lists forever)."""
        deleted = entry.operation in (KV_DEL, KV_PURGE)
        key, revision = entry.key, int(entry.revision)
        try:
            self.sink.apply_entry(key, None if deleted else entry.value, revision)
        except Exception as exc:
            if deleted:
                raise
            record_skipped(self.name, key, revision, exc, SINK_ERROR)
            self.sink.apply_entry(key, None, revision)

    async def _monitor(self) -> None:
        """Every ``check_interval``: a reconnect re-lists; otherwise compare what was
        applied with the stream's last sequence and let ``FeedWatch`` decide."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at = max(next_at + self.check_interval, loop.time())
            # sleep-ok: the freshness check period
            await asyncio.sleep(next_at - loop.time())
            if not self.ready.is_set():
                continue  # the first listing is still being retried
            if self._reconnects() > self._listed_at_reconnects:
                self._listed_at_reconnects = self._reconnects()
                log.info("kvfeed.resync_requested", feed=self.name, reason="reconnected")
                self.request_resync("reconnected")
            # What was applied before the call, not after: entries keep arriving while
            # the answer is in flight, and under a bulk load the view had applied past
            # the stream's answer at every check, which read as a regressed stream for
            # a second: the view was reset (every agent reported removed) and re-listed.
            applied = self.sink.applied_revision
            try:
                mark = await self._stream_mark(min(self.op_timeout, self.stall_after))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                CHECK_FAILURES.labels(self.name).inc()
                log.debug("kvfeed.check_failed", feed=self.name, error=repr(exc))
                effects = self.freshness.step(CheckFailed(time.monotonic()))
                last = lag = -1
            else:
                effects = self.freshness.step(Checked(time.monotonic(), mark.last_seq, applied))
                last, lag = mark.last_seq, max(0, mark.last_seq - applied)
            for resync in effects:
                log.warning("kvfeed.resync_requested", feed=self.name, reason=resync.reason,
                            behind_for=resync.behind_for, lag=resync.lag)
                self.request_resync(resync.reason)
            self.sink.on_freshness(last, lag, time.monotonic() - self.freshness.caught_up_at)
