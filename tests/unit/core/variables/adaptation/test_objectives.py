"""The four strategies' objectives turn feedback into a score to maximise."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from broker_agents.core.errors import BrokerError
from broker_agents.core.variables.adaptation.cost import CostObjective
from broker_agents.core.variables.adaptation.feedback import Feedback, PerformanceObjective
from broker_agents.core.variables.adaptation.load import LoadObjective
from broker_agents.core.variables.adaptation.quality import QualityObjective


def fb(**kw: float) -> Feedback:
    return Feedback(space="s", **kw)


def test_performance_maximises_reward_minus_weighted_latency() -> None:
    assert PerformanceObjective().score(fb(reward=2.0)) == 2.0
    assert PerformanceObjective(latency_weight=0.5).score(fb(reward=2.0, latency=2.0)) == 1.0


def test_cost_prefers_cheaper_and_penalises_reward_below_the_floor() -> None:
    obj = CostObjective(reward_floor=0.8, penalty=10.0)
    assert obj.score(fb(cost=1.0, reward=0.9)) > obj.score(fb(cost=2.0, reward=0.9))
    assert obj.score(fb(cost=1.0, reward=0.7)) == pytest.approx(-2.0)
    assert CostObjective().score(fb(cost=3.0)) == -3.0


def test_load_peaks_at_the_target_latency() -> None:
    obj = LoadObjective(target_latency=0.1)
    assert obj.score(fb(latency=0.1)) == 0.0
    assert obj.score(fb(latency=0.05)) == pytest.approx(obj.score(fb(latency=0.15)))
    assert obj.score(fb(latency=0.15)) < 0


def test_quality_within_a_latency_budget() -> None:
    obj = QualityObjective(latency_budget=1.0, penalty=2.0)
    assert obj.score(fb(quality=0.9, latency=0.5)) == 0.9
    assert obj.score(fb(quality=0.9, latency=1.5)) == pytest.approx(-0.1)


@pytest.mark.parametrize("objective,feedback,missing", [
    (PerformanceObjective(), fb(latency=1.0), "reward"),
    (CostObjective(), fb(reward=1.0), "cost"),
    (LoadObjective(target_latency=1.0), fb(cost=1.0), "latency"),
    (QualityObjective(), fb(reward=1.0), "quality"),
])
def test_missing_metric_is_a_validation_error_naming_it(
    objective: PerformanceObjective, feedback: Feedback, missing: str
) -> None:
    with pytest.raises(BrokerError) as err:
        objective.score(feedback)
    assert err.value.details["variable"] == missing


def test_feedback_rejects_non_finite_and_negative_costs() -> None:
    with pytest.raises(ValidationError):
        Feedback(space="s", reward=float("nan"))
    with pytest.raises(ValidationError):
        Feedback(space="s", cost=-1.0)
