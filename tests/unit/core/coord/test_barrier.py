"""Barrier: release on the last arrival, or a timeout naming who never came."""

from __future__ import annotations

import pytest

from broker_agents.core.coord.barrier import Arrive, Barrier
from broker_agents.core.errors import BrokerError
from broker_agents.core.machine import Tick


def test_everyone_is_released_when_the_last_arrives() -> None:
    b = Barrier("b", ["a", "b", "c"], timeout_ticks=10)
    assert b.step(Arrive("a")) == [] and b.step(Arrive("b")) == []
    released = b.step(Arrive("c"))
    assert sorted(r.participant for r in released) == ["a", "b", "c"]
    assert all(r.result.released and r.result.missing == [] for r in released)


def test_duplicate_arrivals_do_not_count_twice() -> None:
    b = Barrier("b", ["a", "b"], timeout_ticks=10)
    assert b.step(Arrive("a")) == [] and b.step(Arrive("a")) == []
    assert len(b.step(Arrive("b"))) == 2


def test_timeout_releases_arrived_with_error_naming_the_missing() -> None:
    b = Barrier("b", ["a", "b", "c"], timeout_ticks=3)
    b.step(Arrive("b"))
    assert b.step(Tick(1)) == [] and b.step(Tick(2)) == []
    released = b.step(Tick(3))
    assert [r.participant for r in released] == ["b"]
    res = released[0].result
    assert not res.released and res.missing == ["a", "c"]
    assert res.error is not None and res.error["error"]["code"] == "timeout"
    assert "a, c" in res.error["error"]["message"]
    late = b.step(Arrive("a"))
    assert late[0].result.missing == ["a", "c"]


def test_strangers_cannot_arrive() -> None:
    with pytest.raises(BrokerError):
        Barrier("b", ["a"], 5).step(Arrive("z"))
