"""An operator's set wins: the engine holds a variable an operator set for
``operator_hold_s`` of the driver's clock, then adapts it again (or, with 0, overrides at
once and says so)."""

from __future__ import annotations

import random

from broker_agents.core.variables.adaptation.engine import AdaptationEngine
from broker_agents.core.variables.adaptation.feedback import Feedback
from broker_agents.core.variables.adaptation.records import EngineConfig
from broker_agents.core.variables.space import VariableSpace

SPACE = VariableSpace.parse({"name": "q", "variables": [
    {"kind": "float", "name": "x", "min": 0, "max": 1, "default": 0.5},
    {"kind": "float", "name": "y", "min": 0, "max": 1, "default": 0.5},
]})


def engine(hold_s: float) -> AdaptationEngine:
    e = AdaptationEngine(SPACE, {"x": 0.5, "y": 0.5}, random.Random(1),
                         EngineConfig(operator_hold_s=hold_s, learning_rate=0.2))
    assert e.start().proposal is not None
    return e


def feed(e: AdaptationEngine) -> Feedback:
    return Feedback(space="q", trial=e.trial, reward=1.0)


def test_a_variable_an_operator_set_is_left_out_of_proposals_until_the_hold_ends() -> None:
    e = engine(hold_s=60)
    out = e.sync({"x": 0.9, "y": 0.5}, (), reset=True, operator={"x"}, now=100.0)
    assert out is not None and out.proposal is not None
    assert "x" not in out.proposal.values and out.proposal.config["x"] == 0.9
    assert "y" in out.proposal.values  # the others keep adapting
    assert out.explanation.held == {"x": 160.0} and "operator set x" in out.explanation.reason
    for now in (110.0, 130.0, 159.9):  # every trial while held runs the operator's value
        step = e.observe(feed(e), now=now)
        if step.proposal is not None:
            assert "x" not in step.proposal.values and step.proposal.config["x"] == 0.9
    ended = e.observe(feed(e), now=160.0)
    assert ended.explanation.action == "restart" and "hold on x ended" in ended.explanation.reason
    assert ended.proposal is not None and "x" in ended.proposal.values
    assert e.holds == {}


def test_a_new_set_re_arms_the_hold() -> None:
    e = engine(hold_s=60)
    e.sync({"x": 0.9, "y": 0.5}, (), reset=True, operator={"x"}, now=100.0)
    e.sync({"x": 0.8, "y": 0.5}, (), reset=True, operator={"x"}, now=150.0)
    assert e.holds == {"x": 210.0}
    step = e.observe(feed(e), now=200.0)
    assert step.proposal is None or step.proposal.config["x"] == 0.8


def test_when_every_variable_is_held_feedback_says_so_and_nothing_is_proposed() -> None:
    e = engine(hold_s=60)
    out = e.sync({"x": 0.9, "y": 0.1}, (), reset=True, operator={"x", "y"}, now=0.0)
    assert out is not None and out.proposal is None
    ignored = e.observe(Feedback(space="q", trial=None, reward=1.0), now=1.0)
    assert ignored.proposal is None and "held for the operator: x, y" in ignored.explanation.reason


def test_hold_zero_overrides_at_once_and_explains_why() -> None:
    e = engine(hold_s=0)
    out = e.sync({"x": 0.9, "y": 0.5}, (), reset=True, operator={"x"}, now=100.0)
    assert out is not None and out.proposal is not None and "x" in out.proposal.values
    assert "operator_hold_s = 0" in out.explanation.reason and e.holds == {}
