from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core.supervision import (
    Backoff,
    RestartIntensity,
    RestartType,
    Strategy,
    affected_children,
    should_restart,
)


def test_restart_types_follow_otp() -> None:
    assert should_restart(RestartType.PERMANENT, abnormal=False)
    assert should_restart(RestartType.PERMANENT, abnormal=True)
    assert should_restart(RestartType.TRANSIENT, abnormal=True)
    assert not should_restart(RestartType.TRANSIENT, abnormal=False)
    assert not should_restart(RestartType.TEMPORARY, abnormal=True)


def test_strategies_pick_the_children_otp_restarts() -> None:
    order = ["a", "b", "c", "d"]
    assert affected_children(Strategy.ONE_FOR_ONE, order, "b") == ["b"]
    assert affected_children(Strategy.ONE_FOR_ALL, order, "b") == order
    assert affected_children(Strategy.REST_FOR_ONE, order, "b") == ["b", "c", "d"]


def test_intensity_allows_max_restarts_then_gives_up_within_period() -> None:
    intensity = RestartIntensity(max_restarts=3, period=5.0)
    assert all(intensity.record(t) for t in (0.0, 1.0, 2.0))
    assert not intensity.record(3.0)


def test_intensity_forgets_restarts_older_than_the_period() -> None:
    intensity = RestartIntensity(max_restarts=2, period=1.0)
    assert intensity.record(0.0) and intensity.record(0.5)
    assert intensity.record(1.4)
    assert intensity.recent == 2


@given(st.lists(st.floats(0, 1000, allow_nan=False), max_size=50), st.integers(0, 10))
def test_intensity_never_exceeds_max_within_any_period(gaps: list[float], limit: int) -> None:
    intensity = RestartIntensity(max_restarts=limit, period=10.0)
    now = 0.0
    for gap in gaps:
        now += gap
        allowed = intensity.record(now)
        in_window = intensity.recent
        assert allowed == (in_window <= limit)


@given(st.integers(0, 64))
def test_backoff_grows_exponentially_and_is_capped(n: int) -> None:
    backoff = Backoff(initial=0.01, maximum=1.0)
    assert 0.0 <= backoff.delay(n) <= 1.0
    assert backoff.delay(n + 1) >= backoff.delay(n)


@given(st.lists(st.floats(0, 100, allow_nan=False), max_size=40), st.integers(0, 6))
def test_allows_predicts_what_record_decides(gaps: list[float], limit: int) -> None:
    intensity = RestartIntensity(max_restarts=limit, period=10.0)
    now = 0.0
    for gap in gaps:
        now += gap
        predicted = intensity.allows(now)
        assert intensity.record(now) == predicted
