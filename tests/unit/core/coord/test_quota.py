"""Per-requester quotas (pure): one requester's flood never refuses another, in-flight
and rate limits hold under any schedule, and a refusal takes nothing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core.coord.quota import INFLIGHT, RATE, Quota, Quotas

Q = Quota(inflight=3, rate_per_s=2.0, burst=4)

# A schedule: (requester, admit or release, seconds since the previous event).
events = st.lists(st.tuples(st.sampled_from(["alice", "mallory"]), st.booleans(),
                            st.floats(0, 2, allow_nan=False)), max_size=200)


@settings(max_examples=300)
@given(schedule=events)
def test_limits_hold_and_refusals_take_nothing(schedule: list[tuple[str, bool, float]]
                                               ) -> None:
    quotas = Quotas(Q)
    now = 0.0
    running = {"alice": 0, "mallory": 0}
    admitted_at: dict[str, list[float]] = {"alice": [], "mallory": []}
    for who, admit, gap in schedule:
        now += gap
        if admit:
            refusal = quotas.admit(who, "vote", now)
            if refusal is None:
                running[who] += 1
                admitted_at[who].append(now)
            elif refusal.reason == INFLIGHT:
                assert running[who] == Q.inflight
            else:
                assert refusal.reason == RATE and refusal.retry_after_ms > 0
        elif running[who]:
            quotas.release(who, "vote")
            running[who] -= 1
        assert running[who] <= Q.inflight
        assert quotas.inflight(who, "vote") == running[who]
    for times in admitted_at.values():  # token bucket: burst + rate x elapsed in any window
        for i, start in enumerate(times):
            for j in range(i, len(times)):
                assert j - i + 1 <= Q.burst + Q.rate_per_s * (times[j] - start) + 1e-6


@settings(max_examples=200)
@given(flood=st.integers(0, 500), gap=st.floats(0, 0.01, allow_nan=False))
def test_a_flood_from_one_requester_never_refuses_another(flood: int, gap: float) -> None:
    quotas = Quotas(Q)
    now = 0.0
    for _ in range(flood):
        now += gap
        quotas.admit("mallory", "barrier", now)
    assert quotas.admit("alice", "barrier", now) is None
    assert quotas.admit("mallory", "vote", now) is None  # per protocol, too


def test_refusals_say_when_to_retry_and_tokens_come_back() -> None:
    quotas = Quotas(Quota(inflight=10, rate_per_s=2.0, burst=1))
    assert quotas.admit("a", "lock", 0.0) is None
    refusal = quotas.admit("a", "lock", 0.1)
    assert refusal is not None and refusal.reason == RATE and refusal.retry_after_ms == 400
    assert quotas.admit("a", "lock", 0.5) is None


def test_per_protocol_quotas_override_the_default() -> None:
    quotas = Quotas(Q, {"barrier": Quota(inflight=1, rate_per_s=100, burst=100)})
    assert quotas.admit("a", "barrier", 0) is None
    refusal = quotas.admit("a", "barrier", 0)
    assert refusal is not None and refusal.reason == INFLIGHT and refusal.limit == 1
    assert quotas.admit("a", "vote", 0) is None


def test_idle_requesters_are_forgotten_past_the_bound_busy_ones_kept() -> None:
    quotas = Quotas(Q, max_keys=3)
    assert quotas.admit("busy", "vote", 0) is None
    for i in range(10):
        assert quotas.admit(f"idle-{i}", "vote", 0) is None
        quotas.release(f"idle-{i}", "vote")
    assert len(quotas) <= 3 and quotas.inflight("busy", "vote") == 1


def test_a_quota_must_allow_something() -> None:
    with pytest.raises(ValueError):
        Quota(inflight=0, rate_per_s=1, burst=1)
