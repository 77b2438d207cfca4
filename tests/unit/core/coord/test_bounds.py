"""Upper bounds on coordination requests (pure): every field past its bound is named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_agents.coord.models import BarrierArrival, LeaderRequest, LockRequest
from broker_agents.core.coord.bounds import Bounds, check, check_group, violations
from broker_agents.core.coord.models import PbftRequest, VoteRequest
from broker_agents.core.errors import BrokerError, ErrorCode

B = Bounds(max_participants=5, max_barrier_timeout_ms=1000, max_lease_ttl_ms=2000,
           max_lock_wait_ms=300, max_pbft_timeout_ms=4000)


@given(ttl=st.integers(10, 3_600_000), wait=st.integers(0, 600_000))
def test_lock_ttl_and_wait_are_bounded(ttl: int, wait: int) -> None:
    req = LockRequest(name="l", ttl_ms=ttl, wait_ms=wait)
    named = [v["field"] for v in violations(B, "lock", req)]
    assert named == [f for f, bad in (("ttl_ms", ttl > 2000), ("wait_ms", wait > 300)) if bad]


@given(n=st.integers(1, 20), timeout=st.integers(1, 600_000))
def test_participants_and_pbft_lifetime_are_bounded(n: int, timeout: int) -> None:
    req = PbftRequest(operation="x", participants=[f"r{i}" for i in range(n)],
                      timeout_ms=timeout)
    named = {v["field"] for v in violations(B, "pbft", req)}
    assert named == {f for f, bad in (("timeout_ms", timeout > 4000),
                                      ("participants", n > 5)) if bad}


def test_each_protocol_has_its_own_numbers() -> None:
    barrier = BarrierArrival(barrier_id="b", participants=["a"], participant="a",
                             timeout_ms=5000)
    assert [v["field"] for v in violations(B, "barrier", barrier)] == ["timeout_ms"]
    leader = LeaderRequest(role="r", ttl_ms=9000)
    assert [v["field"] for v in violations(B, "leader", leader)] == ["ttl_ms"]
    vote = VoteRequest(proposal="p", participants=["a"], timeout_ms=600_000)
    assert violations(B, "vote", vote) == []  # a vote's deadline: the model's own bound


def test_refusal_is_a_validation_error_naming_the_fields() -> None:
    with pytest.raises(BrokerError) as exc:
        check(B, "lock", LockRequest(name="l", ttl_ms=3000, wait_ms=400))
    assert exc.value.code == ErrorCode.VALIDATION
    assert [f["field"] for f in exc.value.details["fields"]] == ["ttl_ms", "wait_ms"]
    with pytest.raises(BrokerError) as exc:
        check_group(B, 6)
    assert exc.value.details["fields"][0]["field"] == "capability"
    check_group(B, 5)
