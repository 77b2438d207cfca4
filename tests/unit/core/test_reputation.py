"""Reputation: decayed weighted mean, decay to neutral, penalties, anti-gaming, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents import codec
from broker_agents.core import reputation as R
from broker_agents.core.errors import BrokerError

DEAL = R.SettledAuction(auction_id="a1", task_id="t1", parties=("buyer", "seller"))


def report(quality: float = 1.0, satisfaction: float = 1.0, *, reporter: str = "buyer",
           subject: str = "seller", task_id: str = "t1", auction_id: str = "a1") -> R.Report:
    return R.Report(reporter=reporter, subject=subject, auction_id=auction_id,
                    task_id=task_id, quality=quality, satisfaction=satisfaction)


def deal(n: int) -> R.SettledAuction:
    return R.SettledAuction(auction_id=f"a{n}", task_id=f"t{n}", parties=("buyer", "seller"))


def test_new_agent_is_neutral_and_a_good_report_raises_the_score() -> None:
    record = R.Reputation(agent="seller")
    assert record.score == 0.5
    record = R.record_report(record, report(1.0, 0.8), DEAL, now=0)
    assert record.score == pytest.approx((0.5 + 0.9) / 2)  # prior weight 1, report weight 1


def test_recent_reports_weigh_more_than_old_ones() -> None:
    policy = R.ReputationPolicy(half_life=10)
    record = R.Reputation(agent="seller")
    record = R.record_report(record, report(0.0, 0.0, task_id="t1", auction_id="a1"),
                             deal(1), now=0, policy=policy)
    record = R.record_report(record, report(1.0, 1.0, task_id="t2", auction_id="a2"),
                             deal(2), now=10, policy=policy)
    assert record.score > 0.5


def test_idle_agent_decays_toward_neutral() -> None:
    policy = R.ReputationPolicy(half_life=10)
    record = R.record_report(R.Reputation(agent="seller"), report(), DEAL, 0, policy)
    high = record.score
    later = R.decay(record, 30, policy)
    much_later = R.decay(later, 300, policy)
    assert high > later.score > much_later.score > 0.5
    assert much_later.score == pytest.approx(0.5, abs=1e-6)


def test_penalties_weigh_as_documented() -> None:
    clean = R.Reputation(agent="seller")
    abandoned = R.record_violation(clean, "buyer", R.Violation.ABANDONED, DEAL, 0)
    fraud = R.record_violation(clean, "buyer", R.Violation.FRAUD, DEAL, 0)
    assert abandoned.score == pytest.approx(0.5 / (1 + 3))
    assert fraud.score == pytest.approx(0.5 / (1 + 10))


def test_self_report_is_rejected() -> None:
    own = R.SettledAuction(auction_id="a1", task_id="t1", parties=("seller", "seller"))
    with pytest.raises(BrokerError, match="self-report") as info:
        R.record_report(R.Reputation(agent="seller"), report(reporter="seller"), own, 0)
    assert info.value.code == "rejected"


def test_report_from_outside_the_settled_auction_is_rejected() -> None:
    with pytest.raises(BrokerError, match="not the counterparty"):
        R.record_report(R.Reputation(agent="seller"), report(reporter="mallory"), DEAL, 0)
    with pytest.raises(BrokerError, match="not the settled one"):
        R.record_report(R.Reputation(agent="seller"), report(task_id="t9"), DEAL, 0)


def test_second_report_for_a_task_is_a_duplicate_error_saying_so() -> None:
    record = R.record_report(R.Reputation(agent="seller"), report(), DEAL, 0)
    with pytest.raises(BrokerError, match="already recorded") as info:
        R.record_report(record, report(0.0, 0.0), DEAL, 1)
    assert info.value.code == "duplicate"


def test_out_of_range_values_are_refused_not_clamped() -> None:
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(BrokerError) as info:
            R.record_report(R.Reputation(agent="seller"), report(quality=bad), DEAL, 0)
        assert info.value.code == "validation_error" and info.value.details["field"] == "quality"


def test_history_and_seen_tasks_are_bounded() -> None:
    policy = R.ReputationPolicy(history=5, seen_limit=7)
    record = R.Reputation(agent="seller")
    for n in range(20):
        record = R.record_report(record, report(task_id=f"t{n}", auction_id=f"a{n}"),
                                 deal(n), n, policy)
    assert len(record.entries) == 5 and len(record.tasks) == 7


def test_gate_and_answer_weight() -> None:
    assert R.is_eligible(None, 0.5) and not R.is_eligible(0.4, 0.5) and R.is_eligible(0.1, None)
    assert R.answer_weight(0.8) == 0.8 and R.answer_weight(0.3, minimum=0.5) == 0.0


def test_record_round_trips_through_the_wire() -> None:
    record = R.record_violation(R.record_report(R.Reputation(agent="seller"), report(), DEAL, 3),
                                "buyer", R.Violation.FRAUD, deal(2), 4)
    for as_json in (False, True):
        assert R.Reputation.model_validate(codec.decode(codec.encode(record, as_json=as_json))) \
            == record


events = st.lists(st.tuples(
    st.sampled_from(["report", "abandoned", "fraud", "decay"]),
    st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(0, 5000),
), max_size=40)


@settings(max_examples=300)
@given(events, st.floats(1.0, 1e4), st.integers(1, 60))
def test_score_stays_in_unit_interval(
    script: list[tuple[str, float, float, int]], half_life: float, history: int
) -> None:
    policy = R.ReputationPolicy(half_life=half_life, history=history)
    record = R.Reputation(agent="seller")
    now = 0
    for n, (kind, q, s, dt) in enumerate(script):
        now += dt
        if kind == "report":
            record = R.record_report(record, report(q, s, task_id=f"t{n}", auction_id=f"a{n}"),
                                     deal(n), now, policy)
        elif kind == "decay":
            record = R.decay(record, now, policy)
        else:
            record = R.record_violation(record, "buyer", R.Violation(
                "abandoned_task" if kind == "abandoned" else "fraud"), deal(n), now, policy)
        assert 0.0 <= record.score <= 1.0
        assert 0.0 <= R.score_at(record, now + dt * 10, policy) <= 1.0


def test_a_task_is_reported_once_per_reporter_so_each_winner_may_report_its_seller() -> None:
    two = R.SettledAuction(auction_id="a1", task_id="t1", parties=("buyer", "seller"))
    other = R.SettledAuction(auction_id="a1", task_id="t1", parties=("buyer2", "seller"))
    record = R.record_report(R.Reputation(agent="seller"), report(), two, 0)
    record = R.record_report(record, report(reporter="buyer2"), other, 0)
    assert len(record.entries) == 2
    with pytest.raises(BrokerError) as err:
        R.record_report(record, report(), two, 0)
    assert err.value.code == "duplicate"


@given(st.integers(min_value=0, max_value=10**7), st.floats(min_value=0.0, max_value=1.0))
def test_needs_decay_exactly_when_decay_moves_the_stored_score(age: int, value: float) -> None:
    record = R.record_report(R.Reputation(agent="seller"), report(value, value), DEAL, 0)
    decayed = R.decay(record, age)
    if R.needs_decay(record, age):
        assert abs(decayed.score - record.score) > 0.001
        assert not R.needs_decay(decayed, age)
    else:
        assert abs(decayed.score - record.score) <= 0.001
