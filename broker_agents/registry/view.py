"""The local read model of the registry: the agents bucket mirrored into an ``AgentIndex``.

Reads (lookup, list, count, find, query) never leave the process. A ``BucketFeed`` keeps
the index current and re-lists on reconnect or stall; watchers receive ``Change``
records (added / updated / removed) as the index applies them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog
from nats.js.kv import KeyValue

from broker_agents.core.errors import BrokerError
from broker_agents.core.registry.index import AgentIndex, Change, Delete, Put
from broker_agents.core.registry.query import Criterion, parse_criteria
from broker_agents.core.registry.record import AgentRecord, Health, NodeRecord
from broker_agents.kv import open_bucket
from broker_agents.kvfeed import (
    CHECK_INTERVAL,
    RELIST_BUDGET,
    STALL_AFTER,
    BucketFeed,
    catch_up_bound,
)
from broker_agents.kvmirror import KvMirror
from broker_agents.kvskip import FOREIGN, SkippedRecord, Unusable, record_skipped
from broker_agents.registry import metrics
from broker_agents.registry.store import decode_agent, decode_node
from broker_agents.subjects import Subjects

log = structlog.get_logger()

Listener = Callable[[Change], None]

# What a CI machine whose two cores are loaded by other processes adds to the timers'
# own figures (scheduling delays of the check, the relist and the sampling probe).
LOADED_MACHINE_MARGIN = 2.0


def convergence_bound(max_reconnect_wait: float = 2.0, check_interval: float = CHECK_INTERVAL,
                      stall_after: float = STALL_AFTER) -> float:
    """Seconds after the final heal within which every node's view equals the bucket (the
    figure in the README's registry section; the chaos checker enforces it).

    The slower of the two ways a view can have fallen behind, plus the loaded-machine
    margin: a dead watch on a live connection (``catch_up_bound``: the check that starts
    the stall clock, the one past the threshold, one re-list: 2 x 0.5 + 1.0 + 1.0 s), or
    a connection that was cut (nats-py reconnects within ``max_reconnect_wait``, the node's
    backoff cap, and the reconnect re-lists at once: 2.0 + 1.0 s). Defaults: 5.0 s.
    """
    return (max(catch_up_bound(check_interval, stall_after),
                max_reconnect_wait + RELIST_BUDGET) + LOADED_MACHINE_MARGIN)


class _Waiter:
    __slots__ = ("future", "predicate")

    def __init__(self, predicate: Callable[[], bool], future: asyncio.Future[None]) -> None:
        self.predicate = predicate
        self.future = future


class ChangeStream:
    """An async iterator of ``Change`` records; close it (or use ``async with``) to stop."""

    def __init__(self, view: LocalView) -> None:
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue()
        self._unsubscribe = view.subscribe(self._queue.put_nowait)
        self._closed = False

    def __aiter__(self) -> ChangeStream:
        return self

    async def __anext__(self) -> Change:
        change = await self._queue.get() if not self._closed else None
        if change is None:
            raise StopAsyncIteration
        return change

    async def get(self, timeout: float | None = None) -> Change:
        """The next change, waiting at most ``timeout`` seconds."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._unsubscribe()
            self._queue.put_nowait(None)

    async def __aenter__(self) -> ChangeStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class LocalView:
    """In-memory replica of the agents bucket with indexes; answers reads locally."""

    def __init__(self, kv: KeyValue, name: str = "agents",
                 check_interval: float = CHECK_INTERVAL, stall_after: float = STALL_AFTER,
                 ) -> None:
        self.name = name
        self.index = AgentIndex()
        self.skipped: dict[str, SkippedRecord] = {}  # key -> why its value is not used
        self.feed = BucketFeed(kv, self, name, check_interval, stall_after)
        self.last_update_at: float | None = None
        self.bucket_revision = 0
        self.lag = 0
        self.staleness = 0.0
        self._listeners: list[Listener] = []
        self._waiters: list[_Waiter] = []
        # labelled children looked up once: ``labels()`` per entry was a tenth of a bulk
        # load's apply time
        self._revision_gauge = metrics.VIEW_REVISION.labels(name)
        self._duplicates = metrics.VIEW_DUPLICATES.labels(name)
        self._agents_gauge = {h: metrics.AGENTS.labels(name, h.value) for h in Health}

    @classmethod
    async def open(cls, nc: Any, subjects: Subjects | None = None, name: str | None = None,
                   timeout: float = 10.0, **kwargs: Any) -> LocalView:
        """Bind (creating if needed) the agents bucket and start the view."""
        subjects = subjects or Subjects()
        kv = await open_bucket(nc.jetstream(), subjects.bucket("agents"))
        view = cls(kv, name or subjects.bucket("agents"), **kwargs)
        await view.start(timeout)
        return view

    async def start(self, timeout: float = 10.0) -> None:
        await self.feed.start(timeout)

    async def stop(self) -> None:
        await self.feed.stop()
        for waiter in self._waiters:
            waiter.future.cancel()
        self._waiters.clear()

    def notify_reconnected(self) -> None:
        """Call from the connection's reconnected callback: the watch may be dead."""
        self.feed.request_resync("reconnected")

    async def on_reconnected(self) -> None:
        """Coroutine form of ``notify_reconnected`` for nats-py's ``reconnected_cb``."""
        self.notify_reconnected()

    # -- FeedSink -------------------------------------------------------------------

    @property
    def applied_revision(self) -> int:
        return self.index.last_revision

    def apply_entry(self, key: str, value: bytes | None, revision: int) -> None:
        if revision > self.index.known_revision(key):
            self.skipped.pop(key, None)
        if value is None:
            change = self.index.apply(Delete(key, revision))
        else:
            change = self.index.apply(Put(key, self._usable(key, value, revision), revision))
        if change is None:
            if revision <= self.index.last_revision and self.index.known_revision(key) >= revision:
                self._duplicates.inc()
        else:
            self._emit(change)
        self.last_update_at = time.monotonic()
        self._revision_gauge.set(self.index.last_revision)
        if self._waiters:
            self._wake()

    def _usable(self, key: str, value: bytes, revision: int) -> AgentRecord | None:
        """The agent stored under ``key``; None (skipped: counted, logged, remembered in
        ``skipped``) when the value is corrupt or another agent's record. A duplicate
        entry is not decoded again (the index ignores it anyway)."""
        if revision <= self.index.known_revision(key):
            return None
        try:
            record = decode_agent(value)
            if record.agent_id != key:
                raise Unusable(FOREIGN, f"the record of {record.agent_id!r} is under {key!r}")
        except BrokerError as exc:
            self.skipped[key] = record_skipped(self.name, key, revision, exc)
            return None
        return record

    def reconcile(self, present: dict[str, int], high_water: int) -> None:
        for key in [k for k in self.skipped if k not in present]:
            del self.skipped[key]
        for change in self.index.reconcile(present, high_water):
            self._emit(change)
        metrics.VIEW_REVISION.labels(self.name).set(self.index.last_revision)
        self._wake()

    def reset(self) -> None:
        self.skipped.clear()
        for change in self.index.reset():
            self._emit(change)

    def on_freshness(self, bucket_revision: int, lag: int, staleness: float) -> None:
        if bucket_revision >= 0:
            self.bucket_revision, self.lag = bucket_revision, lag
            metrics.VIEW_LAG.labels(self.name).set(lag)
        self.staleness = staleness
        metrics.VIEW_STALENESS.labels(self.name).set(staleness)
        if self.last_update_at is not None:
            metrics.VIEW_SINCE_UPDATE.labels(self.name).set(
                time.monotonic() - self.last_update_at)

    def on_resync(self, reason: str) -> None:
        metrics.VIEW_RESYNCS.labels(self.name, reason).inc()

    def _emit(self, change: Change) -> None:
        by_health = self.index.by_health
        health = change.record.health
        self._agents_gauge[health].set(len(by_health.get(health.value, ())))
        if change.previous is not None and change.previous.health is not health:
            previous = change.previous.health
            self._agents_gauge[previous].set(len(by_health.get(previous.value, ())))
        if not self._listeners:
            return
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception as exc:
                log.error("registry.view.listener_failed", error=repr(exc))

    def _wake(self) -> None:
        if not self._waiters:
            return
        still: list[_Waiter] = []
        for waiter in self._waiters:
            if waiter.future.done():
                continue
            if waiter.predicate():
                waiter.future.set_result(None)
            else:
                still.append(waiter)
        self._waiters = still

    # -- reads ----------------------------------------------------------------------

    def get(self, agent_id: str) -> AgentRecord | None:
        return self.index.records.get(agent_id)

    def revision_of(self, agent_id: str) -> int | None:
        return self.index.revisions.get(agent_id)

    def __len__(self) -> int:
        return len(self.index.records)

    def all_agents(self) -> list[AgentRecord]:
        return [self.index.records[k] for k in sorted(self.index.records)]

    def with_revisions(self) -> list[tuple[AgentRecord, int]]:
        idx = self.index
        return [(idx.records[k], idx.revisions[k]) for k in idx.records]

    def query(self, criteria: Iterable[Criterion | Mapping[str, Any]] | None = None,
              ) -> list[AgentRecord]:
        return self.index.query(parse_criteria(list(criteria or [])))

    def count(self, criteria: Iterable[Criterion | Mapping[str, Any]] | None = None) -> int:
        if not criteria:
            return len(self.index.records)
        return self.index.count(parse_criteria(list(criteria)))

    def find_by_capability(self, capability: str) -> list[AgentRecord]:
        return self._by(self.index.by_capability.get(capability, ()))

    def find_by_node(self, node_id: str) -> list[AgentRecord]:
        return self._by(self.index.by_node.get(node_id, ()))

    def find_by_health(self, health: Health | str) -> list[AgentRecord]:
        return self._by(self.index.by_health.get(str(health), ()))

    def _by(self, ids: Iterable[str]) -> list[AgentRecord]:
        records = self.index.records
        return [records[k] for k in sorted(ids)]

    # -- change notification --------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every change; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)
        return unsubscribe

    def watch(self) -> ChangeStream:
        """Changes from now on: ``async with view.watch() as changes: async for c in changes``."""
        return ChangeStream(self)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds after some applied entry (or already holds)."""
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(_Waiter(predicate, future))
        await asyncio.wait_for(future, timeout)

    async def wait_revision(self, revision: int, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: self.index.last_revision >= revision, timeout)


class NodeView(KvMirror):
    """Mirror of the nodes bucket: node id -> heartbeat record, with its revision."""

    def __init__(self, kv: KeyValue, name: str = "nodes",
                 check_interval: float = CHECK_INTERVAL, stall_after: float = STALL_AFTER,
                 ) -> None:
        super().__init__(kv, name, check_interval, stall_after, check=check_node)

    @classmethod
    async def open(cls, nc: Any, subjects: Subjects | None = None, timeout: float = 10.0,
                   **kwargs: Any) -> NodeView:
        subjects = subjects or Subjects()
        kv = await open_bucket(nc.jetstream(), subjects.bucket("nodes"))
        view = cls(kv, subjects.bucket("nodes"), **kwargs)
        await view.start(timeout)
        return view

    @property
    def nodes(self) -> dict[str, tuple[NodeRecord | None, int]]:
        """node id -> (record, or None when it cannot be decoded; revision)."""
        return {key: (_node_or_none(value), rev) for key, (value, rev) in self.values.items()}

    def revisions(self) -> dict[str, int]:
        return {node_id: rev for node_id, (_, rev) in self.values.items()}

    def on_resync(self, reason: str) -> None:
        metrics.VIEW_RESYNCS.labels(self.name, reason).inc()


def check_node(key: str, value: bytes) -> NodeRecord:
    """The heartbeat stored under ``key``; raises when corrupt or another node's."""
    record = decode_node(value)
    if record.node_id != key:
        raise Unusable(FOREIGN, f"the heartbeat of {record.node_id!r} is under {key!r}")
    return record


def _node_or_none(value: bytes) -> NodeRecord | None:
    try:
        return decode_node(value)
    except BrokerError:
        return None
