"""Refusals are counted always and logged at a bounded rate."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from broker_agents.raft.refusals import LogThrottle, Refusals


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))

    info = warning


def test_a_flood_costs_a_few_lines_per_window_and_says_how_many_it_left_out() -> None:
    clock, log = Clock(), Lines()
    refusals = Refusals("tg", log, LogThrottle(window=10.0, burst=3, clock=clock))
    before = REGISTRY.get_sample_value("ba_raft_rejected_messages_total",
                                       {"group": "tg", "reason": "term_jump"}) or 0.0
    for _ in range(1000):
        refusals.peer("term_jump", src="b")
    assert len(log.lines) == 3
    assert REGISTRY.get_sample_value("ba_raft_rejected_messages_total",
                                     {"group": "tg", "reason": "term_jump"}) == before + 1000
    refusals.peer("not_member", src="x")  # another reason has its own budget
    assert len(log.lines) == 4
    clock.now = 10.0
    refusals.peer("term_jump", src="b")
    assert log.lines[-1] == ("raft.peer_message_refused",
                             {"reason": "term_jump", "suppressed": 997, "src": "b"})


def test_refused_requests_are_counted_by_code() -> None:
    log = Lines()
    refusals = Refusals("tg2", log)
    refusals.request("validation_error", reason="integer_out_of_range")
    assert REGISTRY.get_sample_value("ba_raft_refused_proposals_total",
                                     {"group": "tg2", "code": "validation_error"}) == 1.0
    assert log.lines == [("raft.request_refused", {"code": "validation_error", "suppressed": 0,
                                                   "reason": "integer_out_of_range"})]
