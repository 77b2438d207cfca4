"""Momentum update and the SPSA gradient estimate."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core.variables.adaptation.bounds import apply_bounds
from broker_agents.core.variables.adaptation.gradient import SpsaOptimizer, momentum_step


def test_momentum_step_is_exactly_the_documented_formula() -> None:
    # g' = m*g + (1-m)*grad = 0.5*1 + 0.5*3 = 2.0 ; v' = m*v + lr*g' = 0.5*2 + 0.1*2 = 1.2
    assert momentum_step(g=1.0, v=2.0, grad=3.0, lr=0.1, m=0.5) == pytest.approx((2.0, 1.2))
    assert momentum_step(g=0.0, v=0.0, grad=-4.0, lr=0.25, m=0.0) == (-4.0, -1.0)


@given(u=st.floats(0.2, 0.8), grads=st.lists(st.floats(-1, 1), min_size=1, max_size=5))
def test_optimizer_adds_v_prime_to_the_value(u: float, grads: list[float]) -> None:
    opt = SpsaOptimizer({"x": u}, learning_rate=0.01, momentum=0.3, perturbation=0.1,
                        bounds="clamp")
    g = v = 0.0
    value = u
    for grad in grads:
        g = 0.3 * g + (1 - 0.3) * grad
        v = 0.3 * v + 0.01 * g
        value += v
        step = opt.step({"x": grad})
        assert step.after["x"] == pytest.approx(value)
        assert step.g["x"] == pytest.approx(g) and step.v["x"] == pytest.approx(v)


def test_spsa_estimate_is_exact_for_a_line_in_one_dimension() -> None:
    opt = SpsaOptimizer({"x": 0.5}, learning_rate=0.01, momentum=0.5, perturbation=0.1,
                        bounds="clamp")
    plus, minus = opt.probes(opt.draw(random.Random(3)))
    f = lambda u: 3.0 * u + 1.0  # noqa: E731
    grad = opt.estimate(plus, minus, f(plus["x"]), f(minus["x"]))
    assert grad["x"] == pytest.approx(3.0)


def test_spsa_estimate_is_unbiased_across_random_perturbations() -> None:
    rng = random.Random(11)
    opt = SpsaOptimizer({"a": 0.5, "b": 0.5, "c": 0.5}, learning_rate=0.01, momentum=0.5,
                        perturbation=0.05, bounds="clamp")
    slope = {"a": 2.0, "b": -1.0, "c": 0.5}
    total = dict.fromkeys(slope, 0.0)
    n = 4000
    for _ in range(n):
        plus, minus = opt.probes(opt.draw(rng))
        yp = sum(slope[k] * plus[k] for k in slope)
        ym = sum(slope[k] * minus[k] for k in slope)
        for k, v in opt.estimate(plus, minus, yp, ym).items():
            total[k] += v / n
    for k in slope:
        assert total[k] == pytest.approx(slope[k], abs=0.15)


def test_probe_points_are_clamped_and_snapped_and_at_least_one_grid_step() -> None:
    opt = SpsaOptimizer({"n": 0.98}, learning_rate=0.01, momentum=0.5, perturbation=0.01,
                        bounds="clamp", snap={"n": lambda u: round(u * 4) / 4},
                        min_perturbation={"n": 0.25})
    plus, minus = opt.probes({"n": 1})
    assert (plus["n"], minus["n"]) == (1.0, 0.75)


@pytest.mark.parametrize("mode,u,expected", [
    ("clamp", 1.3, (1.0, "clamped")), ("clamp", -0.2, (0.0, "clamped")),
    ("wrap", 1.25, (0.25, "wrapped")), ("wrap", -0.25, (0.75, "wrapped")),
    ("reject", 1.1, (None, "rejected")), ("reject", 0.4, (0.4, None)),
])
def test_bounds_modes(mode: str, u: float, expected: tuple[float | None, str | None]) -> None:
    assert apply_bounds(u, mode) == expected  # type: ignore[arg-type]


def test_reject_keeps_the_value_and_zeroes_the_velocity() -> None:
    opt = SpsaOptimizer({"x": 0.95}, learning_rate=1.0, momentum=0.0, perturbation=0.1,
                        bounds="reject")
    step = opt.step({"x": 1.0})
    assert step.after == {"x": 0.95} and step.v == {"x": 0.0}
    assert step.bounds == {"x": "rejected"}


@pytest.mark.parametrize("kwargs", [
    {"momentum": 1.0}, {"momentum": -0.1}, {"learning_rate": 0.0}, {"perturbation": 0.9},
])
def test_bad_optimizer_settings_are_refused(kwargs: dict[str, float]) -> None:
    args = {"learning_rate": 0.1, "momentum": 0.5, "perturbation": 0.1, **kwargs}
    with pytest.raises(ValueError):
        SpsaOptimizer({"x": 0.5}, bounds="clamp", **args)  # type: ignore[arg-type]
