"""Cross-variable constraints and the safe expression language they are written in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.variables.constraints import Constraint
from broker_agents.core.variables.expressions import Expression


def test_violated_constraint_names_variables_values_and_rule() -> None:
    c = Constraint(lhs="batch * workers", op="<=", rhs=64)
    c.check({"batch": 8, "workers": 8})
    with pytest.raises(BrokerError) as err:
        c.check({"batch": 16, "workers": 8})
    assert err.value.code == ErrorCode.VALIDATION
    assert err.value.details["variable"] == "batch,workers"
    assert err.value.details["value"] == {"batch": 16, "workers": 8}
    assert err.value.details["constraint"] == "batch * workers <= 64.0"
    assert "violated" in err.value.message


def test_string_comparisons_use_quoted_constants() -> None:
    c = Constraint(lhs="model", op="!=", rhs="'large'")
    c.check({"model": "small"})
    with pytest.raises(BrokerError):
        c.check({"model": "large"})


def test_arithmetic_on_a_string_is_a_validation_error_not_a_crash() -> None:
    with pytest.raises(BrokerError) as err:
        Constraint(lhs="model * 2", op=">", rhs=1).check({"model": "x"})
    assert err.value.code == ErrorCode.VALIDATION
    with pytest.raises(BrokerError):
        Constraint(lhs="a / b", op=">", rhs=1).check({"a": 1, "b": 0})


@pytest.mark.parametrize("source", [
    "__import__('os')", "a.__class__", "a[0]", "a ** 99999", "lambda: 1", "open('x')",
    "[a]", "a if b else c", "min(a, key=b)", "a" * 300, "+".join(["a"] * 70), "a <",
])
def test_unsafe_or_oversized_expressions_are_refused(source: str) -> None:
    with pytest.raises(ValueError):
        Expression(source)
    with pytest.raises(ValidationError):
        Constraint(lhs=source, op="<", rhs=1)


def test_constraint_must_mention_a_variable() -> None:
    with pytest.raises(ValidationError):
        Constraint(lhs=1, op="<", rhs=2)


def test_called_function_names_are_not_variables() -> None:
    assert Expression("max(a, abs(b)) - min(c, 1)").names == {"a", "b", "c"}


@given(a=st.integers(-10**6, 10**6), b=st.integers(-10**6, 10**6), c=st.integers(1, 1000))
def test_expression_agrees_with_python_arithmetic(a: int, b: int, c: int) -> None:
    expr = Expression("max(a, b) - abs(a - b) * 2 + a // c - b % c + -a")
    assert expr.evaluate({"a": a, "b": b, "c": c}) == (
        max(a, b) - abs(a - b) * 2 + a // c - b % c + -a
    )
