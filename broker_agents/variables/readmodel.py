"""The local read model: committed values cached in-process, updated by change events.

Reading a value is a dict lookup (no IO). The model subscribes to change events *before*
reading the group's state, so nothing committed in between is missed; every event carries
a space's full values, and one is applied only when its version is newer than the one
held (events arrive from several members, late, twice or out of order -- all harmless).
After a reconnect, and every ``resync_interval`` seconds as a safety net, it re-reads the
state through the group (a linearizable read).

Waiting for a value is event-driven: ``await rm.wait_for(space, min_version=v)`` or with a
predicate; ``rm.listen(cb)`` calls ``cb(change)`` for every newer version applied.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from broker_agents.codec import decode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.variables.functions import Scalar
from broker_agents.logging import get_logger
from broker_agents.raft.client import RaftClient
from broker_agents.subjects import Subjects
from broker_agents.variables.models import SpaceValues, VariableChange

ChangeListener = Callable[[VariableChange], None]
_CHECK_S = 0.25  # how often the owner task looks for a reconnect


class ReadModel:
    def __init__(self, nc: Any, group: str = "variables",
                 subjects: Subjects = Subjects(), *,  # noqa: B008
                 spaces: Iterable[str] | None = None, resync_interval: float = 5.0) -> None:
        self.nc, self.group, self.subjects = nc, group, subjects
        self.only = set(spaces) if spaces is not None else None
        self.resync_interval = resync_interval
        self.raft = RaftClient(nc, group, subjects)
        self._spaces: dict[str, SpaceValues] = {}
        self._listeners: list[ChangeListener] = []
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._subs: list[Any] = []
        self._task: asyncio.Task[None] | None = None
        self.events_applied = 0
        self.events_ignored = 0
        self.resyncs = 0
        self.log = get_logger(component="variables.readmodel", group=group)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> ReadModel:
        if self.only is None:
            self._subs.append(await self.nc.subscribe(self.subjects.variable_changes(),
                                                      cb=self._on_event))
        else:
            for space in sorted(self.only):
                self._subs.append(await self.nc.subscribe(self.subjects.variable_changes(space),
                                                          cb=self._on_event))
        await self.nc.flush()
        await self.resync()
        self._task = asyncio.get_running_loop().create_task(self._maintain(),
                                                            name="variables-readmodel")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []

    async def __aenter__(self) -> ReadModel:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- local reads (no IO) -------------------------------------------------------------

    def spaces(self) -> list[str]:
        return sorted(self._spaces)

    def snapshot(self, space: str) -> SpaceValues:
        try:
            return self._spaces[space]
        except KeyError:
            raise BrokerError(ErrorCode.NOT_FOUND, f"unknown space {space!r}",
                              {"space": space}) from None

    def values(self, space: str) -> dict[str, Scalar]:
        return dict(self.snapshot(space).values)

    def get(self, space: str, name: str) -> Scalar:
        values = self.snapshot(space).values
        if name not in values:
            raise BrokerError(ErrorCode.NOT_FOUND, f"unknown variable {name!r}",
                              {"space": space, "variable": name})
        return values[name]

    def version(self, space: str) -> int:
        held = self._spaces.get(space)
        return held.version if held is not None else 0

    # -- changes -------------------------------------------------------------------------

    def listen(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener(change)`` for each newer version; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def wait_for(self, space: str, *, min_version: int | None = None,
                       predicate: Callable[[SpaceValues], bool] | None = None,
                       timeout: float = 5.0) -> SpaceValues:
        """The space's values once ``version >= min_version`` and ``predicate`` holds."""

        def ok() -> bool:
            held = self._spaces.get(space)
            if held is None:
                return False
            if min_version is not None and held.version < min_version:
                return False
            return predicate is None or predicate(held)

        if not ok():
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiter = (ok, fut)
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(fut, timeout)
            finally:
                self._waiters.remove(waiter)
        return self._spaces[space]

    def offer(self, values: SpaceValues, change: VariableChange | None = None) -> bool:
        """Take ``values`` if newer than what is held; True when taken."""
        if self.only is not None and values.space not in self.only:
            return False
        held = self._spaces.get(values.space)
        if held is not None and held.version >= values.version:
            self.events_ignored += 1
            return False
        self._spaces[values.space] = SpaceValues(space=values.space, version=values.version,
                                                 values=dict(values.values),
                                                 frozen=list(values.frozen))
        self.events_applied += 1
        event = change or VariableChange(**values.model_dump(), op="snapshot", sm_version=0)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self.log.exception("variables.readmodel_listener_failed")
        for check, fut in list(self._waiters):
            if not fut.done() and check():
                fut.set_result(None)
        return True

    async def _on_event(self, msg: Any) -> None:
        try:
            change = VariableChange.model_validate(decode(msg.data, msg.headers))
        except Exception as exc:  # garbage on the subject must not break the cache
            self.log.warning("variables.bad_change_event", error=repr(exc))
            return
        self.offer(change.as_values(), change)

    # -- resync --------------------------------------------------------------------------

    async def resync(self, timeout: float = 10.0) -> None:
        """Re-read every space through the group (a linearizable read) and take what is newer."""
        got = await self.raft.read({"op": "state"}, timeout=timeout)
        for raw in got["spaces"].values():
            self.offer(SpaceValues.model_validate(raw))
        self.resyncs += 1

    async def _maintain(self) -> None:
        loop = asyncio.get_running_loop()
        reconnects = self._reconnects()
        last = loop.time()
        while True:
            await asyncio.sleep(_CHECK_S)  # sleep-ok: watch for reconnects without a callback
            now_reconnects = self._reconnects()
            if now_reconnects == reconnects and loop.time() - last < self.resync_interval:
                continue
            try:
                await self.resync(timeout=max(1.0, self.resync_interval))
                reconnects, last = now_reconnects, loop.time()
            except (BrokerError, TimeoutError) as exc:
                self.log.warning("variables.resync_failed", error=repr(exc))

    def _reconnects(self) -> int:
        stats = getattr(self.nc, "stats", None)
        return int(stats.get("reconnects", 0)) if isinstance(stats, dict) else 0
