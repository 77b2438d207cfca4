"""The feed's freshness check compares the stream's answer with what was applied before
the call: entries applied while the answer was in flight are no regressed stream."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from broker_agents.kvmirror import KvMirror


class _StatusOnly:
    """A bucket whose status call answers ``last_seq``; with ``racing``, the mirror
    applies newer entries while each answer is in flight (a bulk load)."""

    def __init__(self, racing: bool) -> None:
        self.racing = racing
        self.mirror: KvMirror | None = None
        self.calls = 0
        self.enough = asyncio.Event()

    async def status(self) -> Any:
        assert self.mirror is not None
        self.calls += 1
        if self.calls >= 30:
            self.enough.set()
        last = self.mirror.applied_revision + (1 if self.racing else -1)
        if self.racing:  # the answer is sent now; the watch delivers past it meanwhile
            for _ in range(3):
                rev = self.mirror.applied_revision + 1
                self.mirror.apply_entry(f"k{rev}", b"v", rev)
        state = SimpleNamespace(last_seq=last, messages=last)
        return SimpleNamespace(stream_info=SimpleNamespace(state=state))


async def _checks(racing: bool) -> KvMirror:
    kv = _StatusOnly(racing)
    mirror = KvMirror(kv, "test", check_interval=0.01, stall_after=0.05)  # type: ignore[arg-type]
    kv.mirror = mirror
    mirror.apply_entry("k1", b"v", 1)
    mirror.apply_entry("k2", b"v", 2)
    mirror.feed.ready.set()
    monitor = asyncio.create_task(mirror.feed._monitor())
    try:
        await asyncio.wait_for(kv.enough.wait(), 10)
    finally:
        monitor.cancel()
        with pytest.raises(asyncio.CancelledError):
            await monitor
    return mirror


async def test_entries_applied_during_the_status_call_are_not_a_regression() -> None:
    mirror = await _checks(racing=True)
    assert not mirror.feed._resync.is_set(), mirror.feed._reason


async def test_a_stream_answering_below_what_was_applied_is_still_regressed() -> None:
    mirror = await _checks(racing=False)
    assert mirror.feed._resync.is_set()
    assert mirror.feed._reason == "regressed"
