"""The restart budget as gauges: the limit per child, and restarts within its window now
(read at scrape time, so an old burst ages out without another restart)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from node.supervisor import ChildSpec, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sample(name: str, agent: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"agent": agent})


async def test_restarts_in_period_follow_the_window_and_the_limit_is_the_budget() -> None:
    clock = Clock()
    specs = [ChildSpec("gauge-a", factory=object),  # type: ignore[arg-type]
             ChildSpec("gauge-b", factory=object, max_restarts=7)]  # type: ignore[arg-type]
    sup = Supervisor("gauges", specs, max_restarts=3, period=10.0, clock=clock)
    assert sample("ba_agent_restart_limit", "gauge-a") == 3
    assert sample("ba_agent_restart_limit", "gauge-b") == 7
    assert sample("ba_agent_restarts_in_period", "gauge-a") == 0
    budget = sup._budgets["gauge-a"]
    budget.record(clock.now)
    clock.now += 4
    budget.record(clock.now)
    assert sample("ba_agent_restarts_in_period", "gauge-a") == 2
    clock.now += 8  # the first restart left the 10 s window; nothing was recorded since
    assert sample("ba_agent_restarts_in_period", "gauge-a") == 1
    assert sample("ba_agent_restarts_in_period", "gauge-b") == 0
