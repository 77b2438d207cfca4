"""Publishes a member's applied changes on ``<p>.events.variables.<space>``.

Every member of the group runs one (the engine agent attaches it on each member node), so
an event goes out as soon as the *first* member applies the entry -- usually the leader --
and a leader crash between commit and publish cannot lose it: the followers publish too.
Readers deduplicate by version. Events are queued by the state machine's listener (inside
``apply``, which must not block) and sent, in apply order, by one owner task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from broker_agents.codec import encode
from broker_agents.logging import get_logger
from broker_agents.subjects import Subjects
from broker_agents.variables import metrics
from broker_agents.variables.models import VariableChange
from broker_agents.variables.raft_adapter import VariablesRaftAdapter

MAX_QUEUED = 10_000  # events are full states: dropping old ones loses no final value


class ChangePublisher:
    def __init__(self, nc: Any, sm: VariablesRaftAdapter, subjects: Subjects = Subjects(),  # noqa: B008
                 *, member_id: str | None = None, max_queued: int = MAX_QUEUED) -> None:
        self.nc, self.sm, self.subjects, self.member_id = nc, sm, subjects, member_id
        self._queue: deque[VariableChange] = deque()
        self._max = max_queued
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.log = get_logger(component="variables.publisher", member=member_id)

    def _on_change(self, change: VariableChange) -> None:
        if len(self._queue) >= self._max:
            self._queue.popleft()
            metrics.EVENTS_DROPPED.inc()
        self._queue.append(change)
        self._wake.set()

    async def start(self) -> None:
        self.sm.add_listener(self._on_change)
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"variables-publisher-{self.member_id}")

    async def stop(self) -> None:
        self.sm.remove_listener(self._on_change)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                change = self._queue.popleft()
                if self.member_id is not None:
                    change = change.model_copy(update={"member": self.member_id})
                try:
                    await self.nc.publish(self.subjects.variable_changes(change.space),
                                          encode(change))
                    self.published += 1
                except Exception as exc:  # NATS down: readers resync from the group later
                    metrics.EVENTS_DROPPED.inc()
                    self.log.warning("variables.publish_failed", error=repr(exc))
