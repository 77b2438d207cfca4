"""Declarative cross-variable constraints: ``{"lhs": "a", "op": "<=", "rhs": "b"}``.

``lhs`` and ``rhs`` are each a number or an expression over variable names (see
``expressions.py``), so ``{"lhs": "batch_size * workers", "op": "<=", "rhs": 512}`` works;
a string constant is written quoted: ``{"lhs": "model", "op": "!=", "rhs": "'large'"}``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr, model_validator

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.variables.expressions import Expression

Op = Literal["<", "<=", "==", "!=", ">=", ">"]
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, "<=": operator.le, "==": operator.eq,
    "!=": operator.ne, ">=": operator.ge, ">": operator.gt,
}


class Constraint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lhs: str | float
    op: Op
    rhs: str | float
    description: str = ""

    _sides: tuple[Expression | float, Expression | float] = PrivateAttr()

    @model_validator(mode="after")
    def _parse(self) -> Constraint:
        def side(x: str | float) -> Expression | float:
            return Expression(x) if isinstance(x, str) else x

        self._sides = (side(self.lhs), side(self.rhs))
        if not self.names:
            raise ValueError(f"constraint {self.text} does not mention any variable")
        return self

    @property
    def names(self) -> frozenset[str]:
        out: set[str] = set()
        for s in self._sides:
            if isinstance(s, Expression):
                out |= s.names
        return frozenset(out)

    @property
    def text(self) -> str:
        return f"{self.lhs} {self.op} {self.rhs}"

    def check(self, env: Mapping[str, Any]) -> None:
        """Raise a VALIDATION error naming the variables, their values and the constraint."""
        values = {n: env.get(n) for n in sorted(self.names)}
        details: dict[str, Any] = {
            "variable": ",".join(values), "value": values, "constraint": self.text,
        }
        try:
            lhs, rhs = (s.evaluate(env) if isinstance(s, Expression) else s for s in self._sides)
            ok = bool(_OPS[self.op](lhs, rhs))
        except (ValueError, TypeError) as exc:
            raise BrokerError(
                ErrorCode.VALIDATION, f"constraint {self.text} cannot be evaluated: {exc}", details
            ) from None
        if not ok:
            shown = ", ".join(f"{n}={v!r}" for n, v in values.items())
            raise BrokerError(
                ErrorCode.VALIDATION,
                f"constraint {self.text} violated ({shown}: {lhs!r} {self.op} {rhs!r} is false)",
                details,
            )
