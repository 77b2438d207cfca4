"""The plain sink of a ``BucketFeed``: ``key -> (value, revision)`` in a dict, with
``sync()`` to catch up with the bucket before a read that must see every acknowledged
write."""

from __future__ import annotations

import asyncio
import contextlib

from nats.js.kv import KeyValue

from broker_agents.kvfeed import CHECK_INTERVAL, STALL_AFTER, BucketFeed, log
from broker_agents.kvskip import RecordCheck, SkippedRecord, screen


class KvMirror:
    """``key -> (value, revision)`` for one bucket, kept current by a ``BucketFeed``.

    Reads cost no round trip (admission checks over 100 bidders, the auction sweeper);
    ``sync()`` waits until the mirror has applied everything the stream held when it was
    called (one round trip), so a read after it is at least as new as any write
    acknowledged before it. Decisions are still made with CAS on the key, never on the
    mirror alone. Entries are applied idempotently: a watch may deliver one twice, or an
    older one late. With a ``check`` (``kvskip.RecordCheck``), a value it refuses is not
    mirrored: the key reads as absent and ``skipped`` says why (``kvskip``).
    """

    def __init__(self, kv: KeyValue, name: str, check_interval: float = CHECK_INTERVAL,
                 stall_after: float = STALL_AFTER, check: RecordCheck | None = None) -> None:
        self.kv = kv
        self.name = name
        self.check = check
        self.values: dict[str, tuple[bytes, int]] = {}
        self.skipped: dict[str, SkippedRecord] = {}
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
            value, skip = screen(self.name, key, value, revision, self.check)
            self.skipped.pop(key, None)
            self.values.pop(key, None)
            if skip is not None:
                self.skipped[key] = skip
            if value is not None:
                self.values[key] = (value, revision)
        self._advance(revision)

    def reconcile(self, present: dict[str, int], high_water: int) -> None:
        """After a re-list: drop what the bucket no longer holds."""
        for key in [k for k, rev in self._known.items() if k not in present and rev <= high_water]:
            self._known.pop(key, None)
            self.values.pop(key, None)
            self.skipped.pop(key, None)
        self._advance(high_water)

    def reset(self) -> None:
        self.values.clear()
        self.skipped.clear()
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

