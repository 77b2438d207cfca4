"""Dynamic children of the supervisor (what a handover uses): added children are
supervised like the others, removed ones stop gracefully, a failed add is forgotten."""

from __future__ import annotations

import pytest

from node.supervisor import ChildSpec, ChildStartError
from tests.unit.node.test_supervisor import FakeChild, Journal, JournalHooks, make, started


class StoppingHooks(JournalHooks):
    async def stopping(self, child_id: str) -> None:
        self.journal.add("stopping", child_id)


async def test_an_added_child_runs_is_restarted_and_stops_with_the_others() -> None:
    journal = Journal()
    sup = make(journal, ["a"])
    task = await started(sup)
    await sup.add_child(ChildSpec("b", lambda: FakeChild("b", journal)))
    assert sup.running() == ["a", "b"] and journal.count("supervised", "b") == 1
    journal.live["b"].crash()  # the loop was waiting before b existed: it must see b
    await journal.until(lambda: journal.count("supervised", "b") == 2)
    assert sup.restarts("b") == 1
    with pytest.raises(ChildStartError):  # one id, one child
        await sup.add_child(ChildSpec("b", lambda: FakeChild("b", journal)))
    sup.stop()
    await task
    assert journal.count("stop", "b") == 2 and journal.count("stop", "a") == 1


async def test_removing_a_child_stops_it_without_the_stopping_hook_when_asked() -> None:
    journal = Journal()
    sup = make(journal, ["a", "b", "c"], hooks=StoppingHooks(journal))
    task = await started(sup)
    assert await sup.remove_child("b", notify=False)
    assert journal.count("stop", "b") == 1 and journal.count("stopping", "b") == 0
    assert sup.order == ["a", "c"] and sup.spec("b") is None
    assert await sup.remove_child("c")  # notified: the node deregisters it
    assert journal.count("stopping", "c") == 1
    assert not await sup.remove_child("nope")
    sup.stop()
    await task
    assert journal.count("exited", "b") == 0  # a removal is not an exit


async def test_a_child_that_cannot_start_is_not_kept() -> None:
    journal = Journal()
    sup = make(journal, ["a"])
    task = await started(sup)
    with pytest.raises(ChildStartError):
        await sup.add_child(ChildSpec("x", lambda: FakeChild("x", journal, fail_start=True)))
    assert sup.spec("x") is None and sup.running() == ["a"]
    sup.stop()
    await task
    with pytest.raises(ChildStartError):  # stopping: nothing new starts
        await sup.add_child(ChildSpec("y", lambda: FakeChild("y", journal)))
