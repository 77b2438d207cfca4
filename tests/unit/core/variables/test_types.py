"""Variable types: each validation failure names the variable, the value and the constraint."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.variables.functions import FunctionRegistry
from broker_agents.core.variables.types import (
    ChoiceVariable,
    CompositeVariable,
    FloatVariable,
    IntegerVariable,
)

TEMPERATURE = FloatVariable(name="temperature", min=0.0, max=2.0)


def test_temperature_3_is_outside_the_range_0_to_2() -> None:
    with pytest.raises(BrokerError) as err:
        TEMPERATURE.validate_value(3.0)
    assert err.value.code == ErrorCode.VALIDATION
    assert "outside the range" in err.value.message
    assert "temperature" in err.value.message and "3.0" in err.value.message
    assert err.value.details["variable"] == "temperature"
    assert err.value.details["value"] == 3.0
    assert err.value.details["constraint"] == "range"
    assert (err.value.details["min"], err.value.details["max"]) == (0.0, 2.0)
    assert err.value.to_payload()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("bad", ["hot", True, None, float("nan"), float("inf")])
def test_float_rejects_non_numbers_naming_the_type_constraint(bad: object) -> None:
    with pytest.raises(BrokerError) as err:
        TEMPERATURE.validate_value(bad)
    assert err.value.details["constraint"] == "type"
    assert err.value.details["variable"] == "temperature"


def test_float_rounds_to_its_precision() -> None:
    var = FloatVariable(name="t", min=0, max=1, precision=2)
    assert var.validate_value(0.12345) == 0.12
    assert var.validate_value(1) == 1.0 and isinstance(var.validate_value(1), float)


def test_integer_checks_range_and_step() -> None:
    var = IntegerVariable(name="batch", min=8, max=64, step=8)
    assert var.validate_value(16) == 16
    assert var.validate_value(16.0) == 16
    for value, constraint in [(12, "step"), (72, "range"), (0, "range"), (1.5, "type"),
                              (True, "type")]:
        with pytest.raises(BrokerError) as err:
            var.validate_value(value)
        assert err.value.details == {**err.value.details, "variable": "batch",
                                     "value": value, "constraint": constraint}


def test_choice_accepts_only_its_options_and_bools_are_not_numbers() -> None:
    var = ChoiceVariable(name="model", options=["small", "large", 1])
    assert var.validate_value("large") == "large"
    assert var.validate_value(1.0) == 1
    for bad in ["medium", True]:
        with pytest.raises(BrokerError) as err:
            var.validate_value(bad)
        assert err.value.details["constraint"] == "options"


@pytest.mark.parametrize("kwargs", [
    {"kind": "float", "min": 2.0, "max": 1.0},
    {"kind": "float", "min": 0.0, "max": 1.0, "default": 5.0},
    {"kind": "integer", "min": 0, "max": 10, "step": 0},
    {"kind": "choice", "options": []},
    {"kind": "choice", "options": ["a", "a"]},
    {"kind": "choice", "options": ["a", "b"], "weights": [1.0]},
    {"kind": "choice", "options": ["a", "b"], "weights": [0.0, 0.0]},
    {"kind": "composite", "function": "sum", "inputs": ["x", "x_self"], "name": "x_self"},
])
def test_bad_definitions_are_rejected(kwargs: dict[str, object]) -> None:
    from broker_agents.core.variables.space import VariableSpace

    var = {"name": "x", **kwargs}
    with pytest.raises(ValidationError):
        VariableSpace.model_validate({"name": "s", "variables": [var]})


def test_composite_computes_through_a_named_function_and_checks_its_range() -> None:
    var = CompositeVariable(name="tokens", function="product", inputs=["a", "b"], max=100)
    reg = FunctionRegistry()
    assert var.compute([4, 5], reg) == 20
    with pytest.raises(BrokerError) as err:
        var.compute([40, 5], reg)
    assert err.value.details["variable"] == "tokens"
    assert err.value.details["constraint"] == "range"


def test_composite_function_failure_is_a_validation_error_naming_the_composite() -> None:
    var = CompositeVariable(name="r", function="ratio", inputs=["a", "b"])
    with pytest.raises(BrokerError) as err:
        var.compute([1, 0], FunctionRegistry())
    assert err.value.code == ErrorCode.VALIDATION
    assert err.value.details["variable"] == "r"
    assert err.value.details["constraint"] == "function"


def test_registry_resolves_user_functions_and_refuses_duplicates() -> None:
    reg = FunctionRegistry({"double": lambda args: 2 * float(args[0])})
    var = CompositeVariable(name="d", function="double", inputs=["a"])
    assert var.compute([3], reg) == 6.0
    with pytest.raises(BrokerError) as err:
        reg.register("double", lambda args: 0)
    assert err.value.code == ErrorCode.ALREADY_EXISTS
    with pytest.raises(BrokerError) as err:
        CompositeVariable(name="z", function="nope", inputs=["a"]).compute([1], reg)
    assert err.value.code == ErrorCode.NOT_FOUND


@given(lo=st.floats(-1e6, 1e6), width=st.floats(0, 1e6), seed=st.integers(0, 2**32))
def test_float_samples_validate(lo: float, width: float, seed: int) -> None:
    var = FloatVariable(name="x", min=lo, max=lo + width, precision=3)
    value = var.sample(random.Random(seed))
    assert var.validate_value(value) == value


@given(lo=st.integers(-1000, 1000), width=st.integers(0, 1000), step=st.integers(1, 50),
       u=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_integer_samples_and_unit_round_trips_stay_on_the_grid(
    lo: int, width: int, step: int, u: float, seed: int
) -> None:
    var = IntegerVariable(name="n", min=lo, max=lo + width, step=step)
    assert var.validate_value(var.sample(random.Random(seed))) is not None
    x = var.from_unit(u)
    assert var.validate_value(x) == x
    assert var.from_unit(var.to_unit(x)) == x


def test_definitions_round_trip_through_json() -> None:
    from broker_agents.core.variables.space import VariableSpace

    space = VariableSpace.model_validate({"name": "s", "variables": [
        TEMPERATURE.model_dump(),
        {"kind": "choice", "name": "m", "options": ["a", 2, 2.5, True], "weights": [1, 1, 1, 1]},
        {"kind": "integer", "name": "n", "min": 0, "max": 9, "step": 3, "default": 3},
        {"kind": "composite", "name": "c", "function": "sum", "inputs": ["temperature", "n"]},
    ]})
    again = VariableSpace.model_validate_json(space.model_dump_json())
    assert again == space
    assert again.variable("m").options == ["a", 2, 2.5, True]  # type: ignore[union-attr]
