"""The token bucket: never more than burst + rate * elapsed, and honest retry hints."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core.quota import TokenBucket


def test_a_burst_passes_then_the_rate_holds() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=3)
    assert [bucket.take(0.0) for _ in range(3)] == [0, 0, 0]
    assert bucket.take(0.0) == 100  # one token every 100 ms
    assert bucket.take(0.05) == 50
    assert bucket.take(0.1) == 0


def test_rate_zero_is_unlimited() -> None:
    bucket = TokenBucket(rate_per_s=0, burst=1)
    assert all(bucket.take(0.0) == 0 for _ in range(10_000))


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate_per_s=-1, burst=1)
    with pytest.raises(ValueError):
        TokenBucket(rate_per_s=1, burst=0)


@given(st.floats(0.5, 1000), st.integers(1, 50),
       st.lists(st.floats(0, 0.5, allow_nan=False), min_size=1, max_size=300))
def test_never_more_than_burst_plus_rate_times_elapsed(
        rate: float, burst: int, gaps: list[float]) -> None:
    bucket = TokenBucket(rate_per_s=rate, burst=burst)
    now, granted = 0.0, 0
    for gap in gaps:
        now += gap
        wait_ms = bucket.take(now)
        if wait_ms == 0:
            granted += 1
        else:
            # the hint is honest: by then a token is there
            probe = TokenBucket(rate_per_s=rate, burst=burst)
            probe._tokens, probe._updated_s = bucket.tokens, now
            assert probe.take(now + wait_ms / 1000) == 0
        assert granted <= burst + rate * now + 1e-6


@given(st.floats(0.5, 1000), st.integers(1, 50), st.floats(0, 100))
def test_a_quiet_spell_refills_to_burst_and_no_more(rate: float, burst: int,
                                                    quiet: float) -> None:
    bucket = TokenBucket(rate_per_s=rate, burst=burst)
    while bucket.take(0.0) == 0:
        pass
    passed = 0
    while bucket.take(quiet) == 0:
        passed += 1
    assert passed == min(burst, int(rate * quiet + 1e-9)) or abs(
        passed - min(burst, rate * quiet)) <= 1
