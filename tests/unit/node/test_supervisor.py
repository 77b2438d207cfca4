"""The supervisor against fake children: strategies, restart types, restart budgets, order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from broker_agents.core.supervision import Backoff, OnExhausted, RestartType, Strategy
from node.supervisor import GAVE_UP, ChildSpec, Supervisor, SupervisorGaveUp, SupervisorHooks


@dataclass
class Journal:
    events: list[tuple[str, str]] = field(default_factory=list)
    live: dict[str, FakeChild] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, kind: str, cid: str) -> None:
        self.events.append((kind, cid))
        self.changed.set()

    def count(self, kind: str, cid: str) -> int:
        return self.events.count((kind, cid))

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


class FakeChild:
    def __init__(self, cid: str, journal: Journal, fail_start: bool = False) -> None:
        self.cid = cid
        self.journal = journal
        self.fail_start = fail_start
        self._exit: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future())

    async def run(self, ready: Callable[[], None]) -> None:
        if self.fail_start:
            raise RuntimeError("cannot start")
        self.journal.add("start", self.cid)
        self.journal.live[self.cid] = self
        ready()
        try:
            exc = await self._exit
        finally:
            self.journal.live.pop(self.cid, None)
            self.journal.add("stop", self.cid)
        if exc is not None:
            raise exc

    def stop(self) -> None:
        if not self._exit.done():
            self._exit.set_result(None)

    def crash(self) -> None:
        self._exit.set_result(RuntimeError(f"{self.cid} crashed"))

    def exit_normally(self) -> None:
        self._exit.set_result(None)


class JournalHooks(SupervisorHooks):
    """What the supervisor itself observed (tests wait on these, not on the children)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def started(self, child_id: str, child: object, restarts: int) -> None:
        self.journal.add("supervised", child_id)

    async def exited(self, child_id: str, error: BaseException | None, restarting: bool) -> None:
        self.journal.add("exited", child_id)

    async def gave_up(self, child_id: str, error: BaseException | None) -> None:
        self.journal.add("gave_up", child_id)


def make(journal: Journal, ids: list[str], restart: RestartType = RestartType.PERMANENT,
         **kwargs: object) -> Supervisor:
    specs = [ChildSpec(cid, lambda cid=cid: FakeChild(cid, journal), restart) for cid in ids]
    kwargs.setdefault("hooks", JournalHooks(journal))
    return Supervisor("test", specs, backoff=Backoff(initial=0.0), **kwargs)  # type: ignore[arg-type]


async def started(sup: Supervisor) -> asyncio.Task[None]:
    ready = asyncio.Event()
    task = asyncio.create_task(sup.run(ready.set))
    async with asyncio.timeout(5):
        await ready.wait()
    return task


async def test_children_start_in_order_and_stop_in_reverse() -> None:
    journal = Journal()
    sup = make(journal, ["a", "b", "c"])
    task = await started(sup)
    sup.stop()
    await task
    assert [e for e in journal.events if e[0] == "start"] == [("start", c) for c in "abc"]
    assert [e for e in journal.events if e[0] == "stop"] == [("stop", c) for c in "cba"]


async def test_one_for_one_restarts_only_the_crashed_child() -> None:
    journal = Journal()
    sup = make(journal, ["a", "b", "c"], strategy=Strategy.ONE_FOR_ONE)
    task = await started(sup)
    journal.live["b"].crash()
    await journal.until(lambda: journal.count("supervised", "b") == 2)
    assert journal.count("start", "a") == 1 and journal.count("start", "c") == 1
    assert sup.restarts("b") == 1
    sup.stop()
    await task


async def test_one_for_all_restarts_every_child() -> None:
    journal = Journal()
    sup = make(journal, ["a", "b", "c"], strategy=Strategy.ONE_FOR_ALL)
    task = await started(sup)
    journal.live["b"].crash()
    await journal.until(lambda: all(journal.count("supervised", c) == 2 for c in "abc"))
    sup.stop()
    await task


async def test_rest_for_one_restarts_the_child_and_those_after_it() -> None:
    journal = Journal()
    sup = make(journal, ["a", "b", "c"], strategy=Strategy.REST_FOR_ONE)
    task = await started(sup)
    journal.live["b"].crash()
    await journal.until(lambda: journal.count("supervised", "c") == 2)
    assert journal.count("start", "a") == 1 and journal.count("start", "b") == 2
    sup.stop()
    await task


async def test_transient_child_is_restarted_after_crash_but_not_after_normal_exit() -> None:
    journal = Journal()
    sup = make(journal, ["t"], restart=RestartType.TRANSIENT)
    task = await started(sup)
    journal.live["t"].crash()
    await journal.until(lambda: journal.count("supervised", "t") == 2)
    journal.live["t"].exit_normally()
    await journal.until(lambda: journal.count("exited", "t") == 2)
    assert sup.running() == []
    sup.stop()
    await task
    assert journal.count("start", "t") == 2


async def test_temporary_child_is_never_restarted() -> None:
    journal = Journal()
    sup = make(journal, ["tmp", "keep"], restart=RestartType.TEMPORARY)
    task = await started(sup)
    journal.live["tmp"].crash()
    await journal.until(lambda: journal.count("exited", "tmp") == 1)
    assert sup.running() == ["keep"]
    sup.stop()
    await task
    assert journal.count("start", "tmp") == 1


async def test_permanent_child_is_restarted_even_after_a_normal_exit() -> None:
    journal = Journal()
    sup = make(journal, ["p"])
    task = await started(sup)
    journal.live["p"].exit_normally()
    await journal.until(lambda: journal.count("supervised", "p") == 2)
    sup.stop()
    await task


async def test_under_stop_node_a_used_up_budget_stops_children_and_escalates() -> None:
    journal = Journal()
    exits: list[tuple[str, bool]] = []

    class Hooks(JournalHooks):
        async def exited(self, child_id: str, error: BaseException | None,
                         restarting: bool) -> None:
            exits.append((child_id, restarting))

    sup = make(journal, ["a", "b"], max_restarts=2, period=60.0, hooks=Hooks(journal),
               on_exhausted=OnExhausted.STOP_NODE)
    task = await started(sup)
    for n in (1, 2):
        journal.live["b"].crash()
        await journal.until(lambda n=n: journal.count("supervised", "b") == n + 1)
    journal.live["b"].crash()
    with pytest.raises(SupervisorGaveUp, match="more than 2 restarts"):
        async with asyncio.timeout(5):
            await task
    assert journal.live == {}
    assert len(exits) == 3


async def test_under_stop_node_a_child_that_never_starts_fails_the_startup() -> None:
    journal = Journal()
    spec = ChildSpec("bad", lambda: FakeChild("bad", journal, fail_start=True))
    sup = Supervisor("test", [spec], max_restarts=3, period=60.0, backoff=Backoff(0.0),
                     on_exhausted=OnExhausted.STOP_NODE)
    with pytest.raises(SupervisorGaveUp):
        async with asyncio.timeout(5):
            await sup.run(lambda: None)


async def test_nested_supervisor_escalation_is_a_crash_of_the_parent_child() -> None:
    journal = Journal()
    inner_sups: list[Supervisor] = []

    def inner() -> Supervisor:
        sup = make(journal, ["leaf"], max_restarts=0, period=60.0,
                   on_exhausted=OnExhausted.STOP_NODE)
        inner_sups.append(sup)
        return sup

    parent = Supervisor("parent", [ChildSpec("inner", inner)], max_restarts=5, period=60.0,
                        backoff=Backoff(0.0), hooks=JournalHooks(journal))
    task = await started(parent)
    journal.live["leaf"].crash()
    await journal.until(lambda: journal.count("supervised", "inner") == 2)
    assert len(inner_sups) == 2 and parent.restarts("inner") == 1
    parent.stop()
    await task


def gave_up_count(cid: str) -> float:
    return GAVE_UP.labels(cid)._value.get()


async def test_a_used_up_budget_gives_up_that_child_only_by_default() -> None:
    journal = Journal()
    sup = make(journal, ["a", "bad", "c"], max_restarts=2, period=60.0)
    before = gave_up_count("bad")
    task = await started(sup)
    for n in (1, 2):
        journal.live["bad"].crash()
        await journal.until(lambda n=n: journal.count("supervised", "bad") == n + 1)
    journal.live["bad"].crash()
    await journal.until(lambda: journal.count("gave_up", "bad") == 1)
    assert sup.running() == ["a", "c"] and "bad" not in sup.order
    assert "more than 2 restarts" in sup.failed["bad"]
    assert gave_up_count("bad") == before + 1
    assert not task.done()
    journal.live["c"].crash()  # the others keep their own budgets
    await journal.until(lambda: journal.count("supervised", "c") == 2)
    sup.stop()
    await task
    assert journal.count("start", "a") == 1


async def test_budgets_are_per_child_not_shared() -> None:
    journal = Journal()
    sup = make(journal, ["a", "b"], max_restarts=2, period=60.0,
               on_exhausted=OnExhausted.STOP_NODE)
    task = await started(sup)
    for n in (1, 2):  # four restarts in all, two each: within every child's budget
        for cid in ("a", "b"):
            journal.live[cid].crash()
            await journal.until(lambda n=n, cid=cid: journal.count("supervised", cid) == n + 1)
    assert not task.done() and sup.failed == {}
    sup.stop()
    await task


async def test_a_spec_may_escalate_where_the_supervisor_would_not() -> None:
    journal = Journal()
    specs = [ChildSpec("calm", lambda: FakeChild("calm", journal)),
             ChildSpec("vital", lambda: FakeChild("vital", journal), max_restarts=0,
                       on_exhausted=OnExhausted.STOP_NODE)]
    sup = Supervisor("test", specs, max_restarts=5, period=60.0, backoff=Backoff(0.0),
                     hooks=JournalHooks(journal))
    task = await started(sup)
    journal.live["vital"].crash()
    with pytest.raises(SupervisorGaveUp, match="vital"):
        async with asyncio.timeout(5):
            await task
    assert journal.live == {}


async def test_a_child_that_never_starts_is_given_up_and_the_others_start() -> None:
    journal = Journal()
    specs = [ChildSpec("bad", lambda: FakeChild("bad", journal, fail_start=True)),
             ChildSpec("good", lambda: FakeChild("good", journal))]
    sup = Supervisor("test", specs, max_restarts=3, period=60.0, backoff=Backoff(0.0),
                     hooks=JournalHooks(journal))
    task = await started(sup)
    assert sup.running() == ["good"] and journal.count("gave_up", "bad") == 1
    assert "bad" in sup.failed
    sup.stop()
    await task


async def test_one_for_all_gives_up_the_crashing_child_without_restarting_the_rest() -> None:
    journal = Journal()
    sup = make(journal, ["a", "b", "c"], strategy=Strategy.ONE_FOR_ALL, max_restarts=1,
               period=60.0)
    task = await started(sup)
    journal.live["b"].crash()
    await journal.until(lambda: all(journal.count("supervised", c) == 2 for c in "abc"))
    journal.live["b"].crash()
    await journal.until(lambda: journal.count("gave_up", "b") == 1)
    assert sup.running() == ["a", "c"]
    assert journal.count("start", "a") == 2 and journal.count("start", "c") == 2
    sup.stop()
    await task


class StubbornChild:
    """Never ready (``ready_at_start=False``) or deaf to ``stop``: only a cancel ends it."""

    def __init__(self, ready_at_start: bool) -> None:
        self.ready_at_start = ready_at_start
        self.running = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def run(self, ready: Callable[[], None]) -> None:
        if self.ready_at_start:
            ready()
        self.running.set()
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    def stop(self) -> None:
        pass


@pytest.mark.parametrize("ready_at_start", [False, True], ids=["starting", "stopping"])
async def test_a_supervisor_cancelled_mid_start_or_mid_stop_leaves_no_child_running(
        ready_at_start: bool) -> None:
    """A node's deadline cancels its supervisor while a child starts, or while it waits
    for one that ignores ``stop``: the child is cancelled too, never left behind."""
    child = StubbornChild(ready_at_start)
    spec = ChildSpec("x", lambda: child, RestartType.PERMANENT, start_timeout=60,
                     shutdown_timeout=60)
    sup = Supervisor("test", [spec], backoff=Backoff(initial=0.0))
    task = asyncio.create_task(sup.run(lambda: None))
    async with asyncio.timeout(5):
        await child.running.wait()
    if ready_at_start:
        sup.stop()
        await asyncio.sleep(0)  # sleep-ok: one turn, so the supervisor is stopping it
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(5):
        await child.cancelled.wait()
