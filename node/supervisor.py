"""An OTP-style supervisor in asyncio: strategies, restart types, restart budgets, backoff.

Every child runs as a task the supervisor owns. A child counts as started only after it
calls ``ready()`` (for agents: once their subscriptions are live). Each child has its own
restart budget (``max_restarts`` in ``period`` seconds, its spec's or the supervisor's), so
input that keeps crashing one agent uses up that agent's budget only. When a budget is
used up, ``on_exhausted`` decides: ``stop_agent`` (the default) gives that child up (it is
stopped, reported through ``hooks.gave_up``, counted in ``ba_agent_gave_up_total`` and
listed in ``failed``) while its siblings run on; ``stop_node`` stops every child and
raises ``SupervisorGaveUp`` to the parent (the node, at the root), as OTP does. A
supervisor is itself a child, so trees nest. A spec built ``refused`` (its agent id is
held by another live node) is never started and is listed in ``failed`` with why.

Children can also come and go while the supervisor runs (``add_child``, ``remove_child``):
a node that takes over an agent from a draining node adds it, and the draining node
removes the agents it handed over (``node/drain.py``). Dynamic children restart like the
others; strategies spanning siblings see them in the order they were added.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import Counter, Gauge

from broker_agents.core.errors import CodedError, ErrorCode
from broker_agents.core.supervision import (
    Backoff,
    OnExhausted,
    RestartIntensity,
    RestartType,
    Strategy,
    affected_children,
    should_restart,
)
from broker_agents.logging import get_logger

GAVE_UP = Counter("ba_agent_gave_up_total",
                  "Agents (children) given up after using up their restart budget", ["agent"])
# The restart budget beside ba_agent_restarts_total, so an alert can see a child near its
# limit before it is given up (restarts in the window / limit).
RESTART_LIMIT = Gauge("ba_agent_restart_limit",
                      "Restarts a child may make within its period before it is given up",
                      ["agent"])
RESTARTS_IN_PERIOD = Gauge("ba_agent_restarts_in_period",
                           "Restarts a child made within its budget's period (now)", ["agent"])


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
    max_restarts: int | None = None  # this child's restart budget (None: the supervisor's)
    period: float | None = None
    on_exhausted: OnExhausted | None = None
    refused: str | None = None  # why this child may not run (its id is held elsewhere)


class SupervisorGaveUp(CodedError):
    """A child used up its restart budget under ``stop_node``: escalate to the parent."""

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

    async def gave_up(self, child_id: str, error: BaseException | None) -> None:
        """A child used up its restart budget and will not run again (``stop_agent``)."""


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
    on_exhausted: OnExhausted = OnExhausted.STOP_AGENT

    def __post_init__(self) -> None:
        self.failed: dict[str, str] = {s.id: s.refused for s in self.specs if s.refused}
        """Children given up, with why, and refused ones (the node's readiness lists them)."""
        self.specs = [s for s in self.specs if not s.refused]
        self._budgets = {spec.id: self._budget_of(spec) for spec in self.specs}
        for cid, budget in self._budgets.items():
            RESTART_LIMIT.labels(cid).set(budget.max_restarts)
            RESTARTS_IN_PERIOD.labels(cid).set_function(self._in_period(budget))
        self._running: dict[str, _Running] = {}
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()  # wakes the loop: a child was added
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

    def spec(self, child_id: str) -> ChildSpec | None:
        return next((s for s in self.specs if s.id == child_id), None)

    async def add_child(self, spec: ChildSpec) -> None:
        """Start one more child now (``ChildStartError`` if it does not become ready: it
        is then forgotten, not retried), and supervise it like the others."""
        if self._stop.is_set():
            raise ChildStartError(f"supervisor {self.name} is stopping", {"child": spec.id})
        if self.spec(spec.id) is not None:
            raise ChildStartError(f"a child {spec.id!r} exists already", {"child": spec.id})
        self.specs.append(spec)
        self.failed.pop(spec.id, None)
        budget = self._budgets[spec.id] = self._budget_of(spec)
        RESTART_LIMIT.labels(spec.id).set(budget.max_restarts)
        RESTARTS_IN_PERIOD.labels(spec.id).set_function(self._in_period(budget))
        try:
            await self._start_child(spec.id, False)
        except BaseException:
            self._forget(spec.id)
            raise
        self._changed.set()

    async def remove_child(self, child_id: str, *, notify: bool = True) -> bool:
        """Stop a child gracefully (its subscriptions drain, in-flight work finishes, within
        its shutdown timeout) and forget it. ``notify=False`` skips ``hooks.stopping``: the
        caller does the bookkeeping (an agent handed over keeps its registry record, now
        the new host's). False if there was no such child."""
        if self.spec(child_id) is None:
            return False
        await self._stop_children([child_id], notify=notify)
        self._forget(child_id)
        return True

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
                self._changed.clear()
                changed = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait([stop_waiter, changed, *tasks],
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                if self._stop.is_set():
                    return
                for task, cid in tasks.items():
                    entry = self._running.get(cid)
                    # not a task a restart (one_for_all, rest_for_one) already replaced
                    if task.done() and entry is not None and entry.task is task:
                        await self._child_exited(cid, task)
        finally:
            stop_waiter.cancel()

    async def _child_exited(self, cid: str, task: asyncio.Task[None]) -> None:
        del self._running[cid]
        error = None if task.cancelled() else task.exception()
        spec = self._spec(cid)
        restart = should_restart(spec.restart, abnormal=error is not None)
        exhausted = restart and not self._budgets[cid].allows(self.clock())
        self.log.warning("child exited", child=cid, error=repr(error) if error else None,
                         restarting=restart and not exhausted)
        await self.hooks.exited(cid, error, restart and not exhausted)
        if exhausted:
            await self._exhausted(cid, error)
            return
        if not restart:
            if spec.restart is RestartType.TEMPORARY or error is None:
                self._forget(cid)
            return
        affected = affected_children(self.strategy, self.order, cid)
        await self._stop_children([c for c in affected if c in self._running])
        await self._start_with_retries(affected, cause=cid)

    async def _start_with_retries(self, ids: list[str], cause: str | None = None) -> None:
        """Start children in order; a failed start is a crash and is retried in order.

        ``cause``: the child whose crash makes this a restart (its budget pays for the
        first attempt); each retry after a failed start is paid by the child that failed.
        """
        pending = list(ids)
        payer = cause
        last_error: BaseException | None = None
        while pending:
            if payer is not None:
                budget = self._budgets[payer]
                if not budget.record(self.clock()):
                    await self._exhausted(payer, last_error)
                    pending = [c for c in pending if c != payer]
                    payer = None
                    continue
                delay = self.backoff.delay(budget.recent)
                if delay:
                    await asyncio.sleep(delay)  # deliberate restart backoff, not a sync wait
            try:
                for cid in list(pending):
                    await self._start_child(cid, cid == payer or cause is not None)
                    pending.remove(cid)
            except ChildStartError as exc:
                failed, last_error = pending[0], exc
                self.log.warning("child failed to start", child=failed, error=str(exc))
                payer = failed
                if self._spec(failed).restart is RestartType.TEMPORARY:
                    self._forget(failed)
                    pending.pop(0)
                    payer = None  # never restarted; the others did not fail

    async def _exhausted(self, cid: str, error: BaseException | None) -> None:
        """``cid`` used up its restart budget: give it up, or escalate under stop_node."""
        spec = self._spec(cid)
        budget = self._budgets[cid]
        why = (f"{cid} used up its restart budget: more than {budget.max_restarts} "
               f"restarts in {budget.period}s")
        if (spec.on_exhausted or self.on_exhausted) is OnExhausted.STOP_NODE:
            self.log.error("restart budget used up; escalating (on_exhausted = stop_node)",
                           child=cid)
            raise SupervisorGaveUp(f"supervisor {self.name} gave up: {why}")
        self.log.error("restart budget used up; child given up, its siblings run on",
                       child=cid, error=repr(error) if error else None)
        self._forget(cid)
        self.failed[cid] = why
        GAVE_UP.labels(cid).inc()
        await self.hooks.gave_up(cid, error)

    def _in_period(self, budget: RestartIntensity) -> Callable[[], float]:
        """Restarts within the budget's window at scrape time (``recent`` only shrinks
        at the next restart, so it would show an old burst forever)."""
        def count() -> float:
            now = self.clock()
            return float(sum(1 for t in budget._times if now - t <= budget.period))
        return count

    def _forget(self, cid: str) -> None:
        self.specs = [s for s in self.specs if s.id != cid]

    def _budget_of(self, spec: ChildSpec) -> RestartIntensity:
        return RestartIntensity(
            self.max_restarts if spec.max_restarts is None else spec.max_restarts,
            self.period if spec.period is None else spec.period)

    async def _start_child(self, cid: str, is_restart: bool) -> None:
        spec = self._spec(cid)
        child = spec.factory()
        ready = asyncio.Event()
        task = asyncio.create_task(child.run(ready.set), name=f"{self.name}/{cid}")
        waiter = asyncio.ensure_future(ready.wait())
        try:
            await asyncio.wait([task, waiter], timeout=spec.start_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled mid-start (a node's deadline): the child goes too
            task.cancel()
            raise
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

    async def _stop_children(self, ids: list[str], notify: bool = True) -> None:
        """Stop children in reverse start order, each within its shutdown timeout. Cancelled
        meanwhile (a node's deadline), it cancels the child it was stopping and those
        still to stop: no child outlives its supervisor."""
        for cid in reversed([c for c in self.order if c in ids]):
            entry = self._running.pop(cid, None)
            if entry is None:
                continue
            try:
                await self._stop_child(cid, entry, notify)
            except BaseException:
                entry.task.cancel()
                for rest in [c for c in ids if c in self._running]:
                    self._running.pop(rest).task.cancel()
                raise

    async def _stop_child(self, cid: str, entry: _Running, notify: bool) -> None:
        if notify:
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

