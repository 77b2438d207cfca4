"""A variable space: a named set of variables plus cross-variable constraints.

``validate_config`` resolves a whole configuration in a fixed order: start from every free
variable's default, overlay the given values (each validated against its own type), compute
composites in dependency order (a composite may read other composites), then check every
constraint. Composites are never given, only computed. The dependency graph is checked when
the space is defined, so a cycle is rejected up front rather than at evaluation time.

``sample`` draws each free variable uniformly (choice weights respected) and keeps the first
draw that passes validation, within a bounded number of attempts.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.variables.constraints import Constraint
from broker_agents.core.variables.errors import invalid, not_found
from broker_agents.core.variables.functions import DEFAULT_REGISTRY, FunctionRegistry, Scalar
from broker_agents.core.variables.types import (
    NAME_PATTERN,
    ChoiceVariable,
    CompositeVariable,
    FloatVariable,
    FreeVariable,
    IntegerVariable,
    Variable,
)

DEFAULT_SAMPLE_ATTEMPTS = 1000
Config = dict[str, Scalar]


class Dimensions(BaseModel):
    """How many free dimensions a space has, by kind (composites are not free)."""

    total: int
    continuous: int
    integer: int
    categorical: int
    composite: int


def _dependency_order(composites: list[CompositeVariable]) -> list[CompositeVariable]:
    """Composites sorted so each comes after the composites it reads; cycles are an error."""
    by_name = {c.name: c for c in composites}
    order: list[CompositeVariable] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(c: CompositeVariable, path: list[str]) -> None:
        if state.get(c.name) == 2:
            return
        if state.get(c.name) == 1:
            cycle = [*path[path.index(c.name):], c.name]
            raise ValueError(f"composite dependency cycle: {' -> '.join(cycle)}")
        state[c.name] = 1
        for dep in c.inputs:
            if dep in by_name:
                visit(by_name[dep], [*path, c.name])
        state[c.name] = 2
        order.append(c)

    for c in composites:
        visit(c, [])
    return order


class VariableSpace(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    variables: list[Variable] = Field(min_length=1)
    constraints: list[Constraint] = Field(default_factory=list)
    description: str = ""

    _by_name: dict[str, Variable] = PrivateAttr()
    _order: list[CompositeVariable] = PrivateAttr()

    @model_validator(mode="after")
    def _check(self) -> VariableSpace:
        by_name: dict[str, Variable] = {}
        for v in self.variables:
            if v.name in by_name:
                raise ValueError(f"duplicate variable {v.name!r}")
            by_name[v.name] = v
        composites = [v for v in self.variables if isinstance(v, CompositeVariable)]
        for c in composites:
            missing = [i for i in c.inputs if i not in by_name]
            if missing:
                raise ValueError(f"composite {c.name!r} reads unknown variables {missing}")
        for k in self.constraints:
            missing = sorted(k.names - by_name.keys())
            if missing:
                raise ValueError(f"constraint {k.text!r} reads unknown variables {missing}")
        self._by_name = by_name
        self._order = _dependency_order(composites)
        return self

    @classmethod
    def parse(cls, data: Any) -> VariableSpace:
        """Build from wire data, turning definition errors into a VALIDATION BrokerError."""
        if isinstance(data, VariableSpace):
            return data
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            errors = [
                {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
            raise BrokerError(
                ErrorCode.VALIDATION, f"invalid variable space: {errors[0]['msg']}",
                {"errors": errors},
            ) from None

    # -- lookup --------------------------------------------------------------------------

    def variable(self, name: str) -> Variable:
        try:
            return self._by_name[name]
        except KeyError:
            raise not_found("variable", name, space=self.name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def free_variables(self) -> list[FreeVariable]:
        return [v for v in self.variables if not isinstance(v, CompositeVariable)]

    @property
    def composites(self) -> list[CompositeVariable]:
        """Composites in dependency (evaluation) order."""
        return list(self._order)

    @property
    def dimensionality(self) -> int:
        """The number of free variables: the dimensions a search or sampler moves in."""
        return len(self.free_variables)

    def dimensions(self) -> Dimensions:
        kinds = [v.kind for v in self.variables]
        return Dimensions(
            total=self.dimensionality, continuous=kinds.count("float"),
            integer=kinds.count("integer"), categorical=kinds.count("choice"),
            composite=kinds.count("composite"),
        )

    def check_functions(self, registry: FunctionRegistry) -> None:
        """Every composite's function must be registered here (checked when defined)."""
        for c in self._order:
            if c.function not in registry:
                raise invalid(c.name, c.function, "function",
                              f"{c.name}: unknown composite function {c.function!r}")

    # -- validation and sampling ---------------------------------------------------------

    def defaults(self) -> Config:
        return {v.name: v.default_value() for v in self.free_variables}

    def validate_config(
        self, values: Mapping[str, Any] | None = None,
        registry: FunctionRegistry = DEFAULT_REGISTRY,
    ) -> Config:
        """The full canonical configuration (free values and composites) or a VALIDATION error.

        Missing free variables take their default; unknown names and values for composites
        are rejected.
        """
        config = self.defaults()
        for name, value in (values or {}).items():
            var = self._by_name.get(name)
            if var is None:
                raise invalid(name, value, "known",
                              f"{name}: no such variable in space {self.name!r}")
            if isinstance(var, CompositeVariable):
                raise invalid(name, value, "computed",
                              f"{name}: a composite variable is computed, it cannot be set")
            config[name] = var.validate_value(value)
        for c in self._order:
            config[c.name] = c.compute([config[i] for i in c.inputs], registry)
        for k in self.constraints:
            k.check(config)
        return {v.name: config[v.name] for v in self.variables}

    def sample(
        self, rng: random.Random, registry: FunctionRegistry = DEFAULT_REGISTRY,
        *, fixed: Mapping[str, Any] | None = None, max_attempts: int = DEFAULT_SAMPLE_ATTEMPTS,
    ) -> Config:
        """A random valid configuration; ``fixed`` values are kept as given."""
        last: BrokerError | None = None
        for _ in range(max_attempts):
            draw: dict[str, Any] = {v.name: v.sample(rng) for v in self.free_variables}
            draw.update(fixed or {})
            try:
                return self.validate_config(draw, registry)
            except BrokerError as exc:
                if exc.code != ErrorCode.VALIDATION:
                    raise
                last = exc
        assert last is not None
        raise BrokerError(
            ErrorCode.VALIDATION,
            f"no valid configuration of space {self.name!r} found in {max_attempts} "
            f"random draws; last failure: {last.message}",
            {"space": self.name, "attempts": max_attempts, "last": last.details,
             "variable": last.details.get("variable"), "value": last.details.get("value"),
             "constraint": last.details.get("constraint")},
        )


__all__ = [
    "ChoiceVariable", "CompositeVariable", "Config", "Dimensions", "FloatVariable",
    "IntegerVariable", "VariableSpace",
]
