"""An OTP-style supervisor in asyncio: strategies, restart types, intensity, backoff.

Every child runs as a task the supervisor owns. A child counts as started only after it
calls ``ready()`` (for agents: once their subscriptions are live). A supervisor is itself a
child, so trees nest; when its restart intensity is exceeded it stops its children and
raises ``SupervisorGaveUp`` to its parent (the node, at the root).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from broker_agents.core.errors import CodedError, ErrorCode
from broker_agents.core.supervision import (
    Backoff,
    RestartIntensity,
    RestartType,
    Strategy,
    affected_children,
    should_restart,
)
from broker_agents.logging import get_logger


class Child(Protocol):
    async def run(self, ready: Callable[[], None]) -> None: ...

    def stop(self) -> None: ...


@dataclass
class ChildSpec:
    id: str
    factory: Callable[[], Child]
    restart: RestartType = RestartType.PERMANENT
    shutdown_timeout: float = 5.0
    start_timeout: float = 10.0


class SupervisorGaveUp(CodedError):
    """Restart intensity exceeded: escalate to the parent."""

    CODE = ErrorCode.RESTART_LIMIT


class ChildStartError(CodedError):
    """A child did not call ``ready()`` in time, or exited before it did."""

    CODE = ErrorCode.START_FAILED


class SupervisorHooks:
    """Override to observe children (the node writes registry state from these)."""

    async def started(self, child_id: str, child: Child, restarts: int) -> None:
        """A child is ready."""

    async def exited(self, child_id: str, error: BaseException | None, restarting: bool) -> None:
        """A child exited on its own (not asked to stop)."""

    async def stopping(self, child_id: str) -> None:
        """The supervisor is about to stop a child."""


@dataclass
class _Running:
    child: Child
    task: asyncio.Task[None]
    stopping: bool = False


@dataclass
class Supervisor:
    name: str
    specs: list[ChildSpec]
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    period: float = 5.0
    backoff: Backoff = field(default_factory=Backoff)
    hooks: SupervisorHooks = field(default_factory=SupervisorHooks)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._intensity = RestartIntensity(self.max_restarts, self.period)
        self._running: dict[str, _Running] = {}
        self._stop = asyncio.Event()
        self._restarts: dict[str, int] = {}
        self.log = get_logger(supervisor=self.name)

    # -- public ----------------------------------------------------------------------

    @property
    def order(self) -> list[str]:
        return [spec.id for spec in self.specs]

    def running(self) -> list[str]:
        return [cid for cid in self.order if cid in self._running]

    def child(self, child_id: str) -> Child | None:
        entry = self._running.get(child_id)
        return entry.child if entry else None

    def restarts(self, child_id: str) -> int:
        return self._restarts.get(child_id, 0)

    def stop(self) -> None:
        self._stop.set()

    async def run(self, ready: Callable[[], None]) -> None:
        try:
            await self._start_with_retries(list(self.order))
            ready()
            await self._supervise()
        finally:
            await self._stop_children(self.running())

    # -- supervision loop ------------------------------------------------------------

    async def _supervise(self) -> None:
        stop_waiter = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                tasks = {entry.task: cid for cid, entry in self._running.items()}
                await asyncio.wait([stop_waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
                if self._stop.is_set():
                    return
                for task, cid in tasks.items():
                    if task.done() and cid in self._running:
                        await self._child_exited(cid, task)
        finally:
            stop_waiter.cancel()

    async def _child_exited(self, cid: str, task: asyncio.Task[None]) -> None:
        del self._running[cid]
        error = None if task.cancelled() else task.exception()
        spec = self._spec(cid)
        restart = should_restart(spec.restart, abnormal=error is not None)
        self.log.warning("child exited", child=cid, error=repr(error) if error else None,
                         restarting=restart)
        await self.hooks.exited(cid, error, restart)
        if not restart:
            if spec.restart is RestartType.TEMPORARY or error is None:
                self.specs = [s for s in self.specs if s.id != cid]
            return
        affected = affected_children(self.strategy, self.order, cid)
        await self._stop_children([c for c in affected if c in self._running])
        await self._start_with_retries(affected, first_is_restart=True)

    async def _start_with_retries(self, ids: list[str], first_is_restart: bool = False) -> None:
        """Start children in order; a failed start is a crash and is retried in order."""
        pending = list(ids)
        restarting = first_is_restart
        while pending:
            if restarting:
                self._give_up_if_too_intense(pending[0])
                delay = self.backoff.delay(self._intensity.recent)
                if delay:
                    await asyncio.sleep(delay)  # deliberate restart backoff, not a sync wait
            try:
                for cid in list(pending):
                    await self._start_child(cid, restarting)
                    pending.remove(cid)
                restarting = True
            except ChildStartError as exc:
                self.log.warning("child failed to start", child=pending[0], error=str(exc))
                restarting = True
                if self._spec(pending[0]).restart is RestartType.TEMPORARY:
                    self.specs = [s for s in self.specs if s.id != pending[0]]
                    pending.pop(0)

    def _give_up_if_too_intense(self, cid: str) -> None:
        if not self._intensity.record(self.clock()):
            msg = (f"supervisor {self.name} gave up: more than {self.max_restarts} restarts "
                   f"in {self.period}s (last: {cid})")
            self.log.error("restart intensity exceeded", child=cid)
            raise SupervisorGaveUp(msg)

    async def _start_child(self, cid: str, is_restart: bool) -> None:
        spec = self._spec(cid)
        child = spec.factory()
        ready = asyncio.Event()
        task = asyncio.create_task(child.run(ready.set), name=f"{self.name}/{cid}")
        waiter = asyncio.ensure_future(ready.wait())
        try:
            await asyncio.wait([task, waiter], timeout=spec.start_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not ready.is_set():
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise ChildStartError(f"{cid} not ready within {spec.start_timeout}s")
            err = None if task.cancelled() else task.exception()
            raise ChildStartError(f"{cid} exited during start: {err!r}")
        if is_restart:
            self._restarts[cid] = self._restarts.get(cid, 0) + 1
        self._running[cid] = _Running(child, task)
        await self.hooks.started(cid, child, self._restarts.get(cid, 0))

    async def _stop_children(self, ids: list[str]) -> None:
        """Stop children in reverse start order, each within its shutdown timeout."""
        for cid in reversed([c for c in self.order if c in ids]):
            entry = self._running.pop(cid, None)
            if entry is None:
                continue
            await self.hooks.stopping(cid)
            entry.child.stop()
            timeout = self._spec(cid).shutdown_timeout
            done, _ = await asyncio.wait([entry.task], timeout=timeout)
            if not done:
                self.log.warning("child did not stop in time; cancelling", child=cid)
                entry.task.cancel()
            results = await asyncio.gather(entry.task, return_exceptions=True)
            if isinstance(results[0], Exception):
                self.log.warning("child failed while stopping", child=cid, error=repr(results[0]))

    def _spec(self, cid: str) -> ChildSpec:
        for spec in self.specs:
            if spec.id == cid:
                return spec
        raise KeyError(cid)

