"""Typed variable definitions: float, integer, choice and composite.

Definitions are pydantic models (discriminated by ``kind``) so they can cross the wire and
live in the replicated state. Each knows how to validate a value (returning the canonical
value that is stored, e.g. a float rounded to its precision), give its default, draw a
uniform sample from an injected ``random.Random``, and, for numeric types, map values to
and from the unit interval the adaptation strategies work in.

A composite is computed from other variables by a function named in a ``FunctionRegistry``
(see ``functions.py`` for why it is a name and not a callable) and then validated against
its own optional range.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker_agents.core.errors import BrokerError
from broker_agents.core.variables.errors import invalid
from broker_agents.core.variables.functions import FunctionRegistry, Scalar

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
VarName = Annotated[str, Field(pattern=NAME_PATTERN)]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(x: float) -> str:
    return repr(x)


def _check_default(var: FloatVariable | IntegerVariable | ChoiceVariable, default: Any) -> None:
    try:
        var.validate_value(default)
    except BrokerError as exc:
        raise ValueError(f"default: {exc.message}") from None


class _Base(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: VarName
    description: str = ""


class FloatVariable(_Base):
    """A real number in ``[min, max]``; ``precision`` decimal places (values are rounded)."""

    kind: Literal["float"] = "float"
    min: float = Field(allow_inf_nan=False)
    max: float = Field(allow_inf_nan=False)
    precision: int | None = Field(default=None, ge=0, le=12)
    default: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> FloatVariable:
        if self.min > self.max:
            raise ValueError(f"{self.name}: min {self.min} > max {self.max}")
        if self.default is not None:
            _check_default(self, self.default)
        return self

    def _round(self, x: float) -> float:
        return x if self.precision is None else round(x, self.precision)

    def validate_value(self, value: Any) -> float:
        if not _is_number(value) or not math.isfinite(value):
            raise invalid(self.name, value, "type",
                          f"{self.name}: value {value!r} is not a finite number")
        x = float(value)
        if not self.min <= x <= self.max:
            raise invalid(
                self.name, value, "range",
                f"{self.name}: value {_fmt(x)} is outside the range "
                f"{_fmt(self.min)}..{_fmt(self.max)}",
                min=self.min, max=self.max,
            )
        return min(max(self._round(x), self.min), self.max)

    def default_value(self) -> float:
        if self.default is not None:
            return self.validate_value(self.default)
        return self.from_unit(0.5)

    def sample(self, rng: random.Random) -> float:
        return self.from_unit(rng.random())

    def to_unit(self, value: float) -> float:
        span = self.max - self.min
        return 0.0 if span == 0 else (float(value) - self.min) / span

    def from_unit(self, u: float) -> float:
        x = self.min + min(max(u, 0.0), 1.0) * (self.max - self.min)
        return min(max(self._round(x), self.min), self.max)

    def unit_step(self) -> float:
        """The smallest distinguishable move in unit coordinates (0 when continuous)."""
        span = self.max - self.min
        if self.precision is None or span == 0:
            return 0.0
        return float(10.0 ** -self.precision) / span


class IntegerVariable(_Base):
    """An integer in ``[min, max]`` on the grid ``min + k*step``."""

    kind: Literal["integer"] = "integer"
    min: int
    max: int
    step: int = Field(default=1, gt=0)
    default: int | None = None

    @model_validator(mode="after")
    def _check(self) -> IntegerVariable:
        if self.min > self.max:
            raise ValueError(f"{self.name}: min {self.min} > max {self.max}")
        if self.default is not None:
            _check_default(self, self.default)
        return self

    @property
    def top(self) -> int:
        """The largest value on the grid."""
        return self.min + (self.max - self.min) // self.step * self.step

    def validate_value(self, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(self.name, value, "type",
                          f"{self.name}: value {value!r} is not an integer")
        if not self.min <= value <= self.max:
            raise invalid(
                self.name, value, "range",
                f"{self.name}: value {value} is outside the range {self.min}..{self.max}",
                min=self.min, max=self.max,
            )
        if (value - self.min) % self.step:
            raise invalid(
                self.name, value, "step",
                f"{self.name}: value {value} is not on the grid {self.min} + k*{self.step}",
                min=self.min, step=self.step,
            )
        return value

    def default_value(self) -> int:
        if self.default is not None:
            return self.default
        return self.from_unit(0.5)

    def sample(self, rng: random.Random) -> int:
        return self.min + rng.randrange((self.top - self.min) // self.step + 1) * self.step

    def to_unit(self, value: float) -> float:
        span = self.top - self.min
        return 0.0 if span == 0 else (value - self.min) / span

    def from_unit(self, u: float) -> int:
        span = self.top - self.min
        k = round(min(max(u, 0.0), 1.0) * span / self.step)
        return self.min + k * self.step

    def unit_step(self) -> float:
        span = self.top - self.min
        return 0.0 if span == 0 else self.step / span


def _canon(value: object) -> tuple[str, object]:
    """Equality key for choice options: numbers compare numerically, bools are not numbers."""
    if isinstance(value, bool):
        return ("b", value)
    if _is_number(value):
        return ("n", float(value))  # type: ignore[arg-type]
    return (type(value).__name__, value)


class ChoiceVariable(_Base):
    """One of ``options``; optional ``weights`` bias random sampling (not validation)."""

    kind: Literal["choice"] = "choice"
    options: list[Scalar] = Field(min_length=1)
    weights: list[float] | None = None
    default: Scalar | None = None

    @model_validator(mode="after")
    def _check(self) -> ChoiceVariable:
        keys = [_canon(o) for o in self.options]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{self.name}: duplicate options")
        if any(isinstance(o, float) and not math.isfinite(o) for o in self.options):
            raise ValueError(f"{self.name}: options must be finite")
        if self.weights is not None:
            if len(self.weights) != len(self.options):
                raise ValueError(f"{self.name}: {len(self.weights)} weights for "
                                 f"{len(self.options)} options")
            if any(not (w >= 0 and math.isfinite(w)) for w in self.weights) or not any(
                self.weights
            ):
                raise ValueError(f"{self.name}: weights must be >= 0 and not all 0")
        if self.default is not None:
            _check_default(self, self.default)
        return self

    def index(self, value: Any) -> int:
        key = _canon(value)
        for i, option in enumerate(self.options):
            if _canon(option) == key:
                return i
        raise invalid(
            self.name, value, "options",
            f"{self.name}: value {value!r} is not one of the options {self.options!r}",
            options=list(self.options),
        )

    def validate_value(self, value: Any) -> Scalar:
        return self.options[self.index(value)]

    def default_value(self) -> Scalar:
        return self.options[0] if self.default is None else self.validate_value(self.default)

    def sample(self, rng: random.Random) -> Scalar:
        if self.weights is None:
            return self.options[rng.randrange(len(self.options))]
        return rng.choices(self.options, weights=self.weights, k=1)[0]


class CompositeVariable(_Base):
    """Computed as ``function(*inputs)``; the result must be a scalar in its optional range."""

    kind: Literal["composite"] = "composite"
    function: str = Field(min_length=1)
    inputs: list[VarName] = Field(min_length=1)
    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> CompositeVariable:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"{self.name}: min {self.min} > max {self.max}")
        if self.name in self.inputs:
            raise ValueError(f"{self.name}: a composite cannot depend on itself")
        return self

    def compute(self, args: Sequence[Scalar], registry: FunctionRegistry) -> Scalar:
        fn = registry.get(self.function)
        try:
            result = fn(list(args))
        except BrokerError:
            raise
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise invalid(
                self.name, list(args), "function",
                f"{self.name}: {self.function}{tuple(args)!r} failed: {exc}",
                function=self.function,
            ) from None
        return self.validate_value(result)

    def validate_value(self, value: Any) -> Scalar:
        if not isinstance(value, bool | int | float | str):
            raise invalid(self.name, repr(value), "type",
                          f"{self.name}: computed value {value!r} is not a scalar")
        if isinstance(value, float) and not math.isfinite(value):
            raise invalid(self.name, repr(value), "type",
                          f"{self.name}: computed value {value!r} is not finite")
        if self.min is None and self.max is None:
            return value
        if not _is_number(value):
            raise invalid(self.name, value, "type",
                          f"{self.name}: computed value {value!r} is not a number")
        lo = -math.inf if self.min is None else self.min
        hi = math.inf if self.max is None else self.max
        if not lo <= value <= hi:  # type: ignore[operator]
            raise invalid(
                self.name, value, "range",
                f"{self.name}: computed value {value!r} is outside the range "
                f"{self.min}..{self.max}",
                min=self.min, max=self.max,
            )
        return value


Variable = Annotated[
    FloatVariable | IntegerVariable | ChoiceVariable | CompositeVariable,
    Field(discriminator="kind"),
]
NumericVariable = FloatVariable | IntegerVariable
FreeVariable = FloatVariable | IntegerVariable | ChoiceVariable
