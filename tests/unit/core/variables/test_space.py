"""Variable spaces: whole-configuration validation order, sampling, dimensionality."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.variables.functions import FunctionRegistry
from broker_agents.core.variables.space import VariableSpace

LLM: dict[str, Any] = {
    "name": "llm",
    "variables": [
        {"kind": "float", "name": "temperature", "min": 0.0, "max": 2.0, "precision": 2,
         "default": 0.7},
        {"kind": "integer", "name": "batch", "min": 1, "max": 64, "default": 8},
        {"kind": "integer", "name": "workers", "min": 1, "max": 16, "step": 1, "default": 2},
        {"kind": "choice", "name": "model", "options": ["small", "medium", "large"],
         "weights": [5, 3, 1]},
        # defined before the composite it reads: evaluation must still order them
        {"kind": "composite", "name": "cost", "function": "product",
         "inputs": ["throughput", "temperature"]},
        {"kind": "composite", "name": "throughput", "function": "product",
         "inputs": ["batch", "workers"], "max": 256},
    ],
    "constraints": [
        {"lhs": "batch * workers", "op": "<=", "rhs": 128},
        {"lhs": "temperature", "op": "<=", "rhs": "2.0 - workers / 16"},
    ],
}


@pytest.fixture
def space() -> VariableSpace:
    return VariableSpace.parse(LLM)


def test_defaults_then_values_then_composites_then_constraints(space: VariableSpace) -> None:
    config = space.validate_config({"batch": 16})
    assert config == {"temperature": 0.7, "batch": 16, "workers": 2, "model": "small",
                      "cost": 32 * 0.7, "throughput": 32.0}


def test_composites_are_computed_in_dependency_order_whatever_the_definition_order(
    space: VariableSpace,
) -> None:
    assert [c.name for c in space.composites] == ["throughput", "cost"]


def test_a_value_error_stops_before_composites_and_names_the_variable(
    space: VariableSpace,
) -> None:
    with pytest.raises(BrokerError) as err:
        space.validate_config({"temperature": 3.0})
    assert err.value.details["variable"] == "temperature"
    assert err.value.details["constraint"] == "range"


def test_composite_range_is_checked_before_constraints(space: VariableSpace) -> None:
    with pytest.raises(BrokerError) as err:
        space.validate_config({"batch": 64, "workers": 16})
    assert err.value.details["variable"] == "throughput"


def test_cross_variable_constraint_violation(space: VariableSpace) -> None:
    with pytest.raises(BrokerError) as err:
        space.validate_config({"batch": 64, "workers": 3})
    assert err.value.details["constraint"] == "batch * workers <= 128.0"


@pytest.mark.parametrize("values,constraint", [
    ({"nope": 1}, "known"), ({"throughput": 4.0}, "computed"),
])
def test_unknown_and_computed_names_cannot_be_set(
    space: VariableSpace, values: dict[str, Any], constraint: str
) -> None:
    with pytest.raises(BrokerError) as err:
        space.validate_config(values)
    assert err.value.details["constraint"] == constraint


def test_composite_cycles_are_rejected() -> None:
    data = {"name": "loop", "variables": [
        {"kind": "float", "name": "x", "min": 0, "max": 1},
        {"kind": "composite", "name": "a", "function": "sum", "inputs": ["x", "c"]},
        {"kind": "composite", "name": "b", "function": "sum", "inputs": ["a"]},
        {"kind": "composite", "name": "c", "function": "sum", "inputs": ["b"]},
    ]}
    with pytest.raises(BrokerError) as err:
        VariableSpace.parse(data)
    assert err.value.code == ErrorCode.VALIDATION
    assert "cycle" in err.value.message and "a -> c -> b -> a" in err.value.message


@pytest.mark.parametrize("bad", [
    {"name": "s", "variables": [{"kind": "float", "name": "x", "min": 0, "max": 1}] * 2},
    {"name": "s", "variables": [
        {"kind": "composite", "name": "a", "function": "sum", "inputs": ["ghost"]}]},
    {"name": "s", "variables": [{"kind": "float", "name": "x", "min": 0, "max": 1}],
     "constraints": [{"lhs": "y", "op": "<", "rhs": 1}]},
    {"name": "bad name", "variables": [{"kind": "float", "name": "x", "min": 0, "max": 1}]},
])
def test_malformed_spaces_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(BrokerError):
        VariableSpace.parse(bad)


def test_dimensionality_counts_free_variables_by_kind(space: VariableSpace) -> None:
    assert space.dimensionality == 4
    dims = space.dimensions()
    assert (dims.continuous, dims.integer, dims.categorical, dims.composite) == (1, 2, 1, 2)


def test_check_functions_rejects_unregistered_composite_functions(space: VariableSpace) -> None:
    with pytest.raises(BrokerError) as err:
        space.check_functions(FunctionRegistry(builtins=False))
    assert err.value.details["constraint"] == "function"


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_sampled_configurations_are_always_valid(seed: int) -> None:
    space = VariableSpace.parse(LLM)
    config = space.sample(random.Random(seed))
    free = {v.name: config[v.name] for v in space.free_variables}
    assert space.validate_config(free) == config
    assert config["batch"] * config["workers"] <= 128  # type: ignore[operator]


def test_sampling_is_reproducible_from_the_seed(space: VariableSpace) -> None:
    assert space.sample(random.Random(7)) == space.sample(random.Random(7))


def test_sampling_respects_choice_weights(space: VariableSpace) -> None:
    rng = random.Random(1)
    draws = [space.sample(rng)["model"] for _ in range(900)]
    assert draws.count("small") > draws.count("medium") > draws.count("large")


def test_sampling_keeps_fixed_values(space: VariableSpace) -> None:
    for seed in range(20):
        assert space.sample(random.Random(seed), fixed={"model": "large"})["model"] == "large"


def test_impossible_space_fails_clearly_after_bounded_attempts() -> None:
    space = VariableSpace.parse({"name": "never", "variables": [
        {"kind": "float", "name": "a", "min": 0, "max": 1},
        {"kind": "float", "name": "b", "min": 0, "max": 1},
    ], "constraints": [{"lhs": "a + b", "op": ">", "rhs": 5}]})
    with pytest.raises(BrokerError) as err:
        space.sample(random.Random(0), max_attempts=50)
    assert err.value.code == ErrorCode.VALIDATION
    assert "50" in err.value.message
    assert err.value.details["constraint"] == "a + b > 5.0"
