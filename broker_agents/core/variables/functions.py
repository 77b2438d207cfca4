"""Named functions for composite variables.

A variable definition must cross the wire, so it cannot carry a lambda: a composite names
its function (``"function": "product"``) and every node resolves the name in its own
``FunctionRegistry``. All replicas of a variable group must register the same functions
under the same names (and the functions must be deterministic and pure), otherwise replicas
could compute different composite values from the same committed inputs.

A function takes the input values in the order of the composite's ``inputs`` and returns a
scalar; raising ``ArithmeticError``/``TypeError``/``ValueError`` counts as a validation
failure of the composite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence

from broker_agents.core.errors import BrokerError, ErrorCode

Scalar = bool | int | float | str
CompositeFn = Callable[[Sequence[Scalar]], Scalar]


def _numbers(args: Sequence[Scalar]) -> list[float]:
    out: list[float] = []
    for a in args:
        if isinstance(a, bool) or not isinstance(a, int | float):
            raise TypeError(f"expected a number, got {a!r}")
        out.append(float(a))
    return out


def _sum(args: Sequence[Scalar]) -> Scalar:
    return math.fsum(_numbers(args))


def _product(args: Sequence[Scalar]) -> Scalar:
    return math.prod(_numbers(args))


def _mean(args: Sequence[Scalar]) -> Scalar:
    nums = _numbers(args)
    return math.fsum(nums) / len(nums)


def _min(args: Sequence[Scalar]) -> Scalar:
    return min(_numbers(args))


def _max(args: Sequence[Scalar]) -> Scalar:
    return max(_numbers(args))


def _difference(args: Sequence[Scalar]) -> Scalar:
    a, b = _numbers(args)
    return a - b


def _ratio(args: Sequence[Scalar]) -> Scalar:
    a, b = _numbers(args)
    return a / b


BUILTIN_FUNCTIONS: Mapping[str, CompositeFn] = {
    "sum": _sum,
    "product": _product,
    "mean": _mean,
    "min": _min,
    "max": _max,
    "difference": _difference,
    "ratio": _ratio,
}


class FunctionRegistry:
    """Name -> composite function. Starts with the built-ins unless told otherwise."""

    def __init__(
        self, functions: Mapping[str, CompositeFn] | None = None, *, builtins: bool = True
    ) -> None:
        self._fns: dict[str, CompositeFn] = dict(BUILTIN_FUNCTIONS) if builtins else {}
        for name, fn in (functions or {}).items():
            self.register(name, fn)

    def register(self, name: str, fn: CompositeFn) -> None:
        if name in self._fns:
            raise BrokerError(
                ErrorCode.ALREADY_EXISTS, f"function {name!r} already registered",
                {"function": name},
            )
        self._fns[name] = fn

    def get(self, name: str) -> CompositeFn:
        try:
            return self._fns[name]
        except KeyError:
            raise BrokerError(
                ErrorCode.NOT_FOUND, f"unknown composite function {name!r}", {"function": name}
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._fns

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._fns))


DEFAULT_REGISTRY = FunctionRegistry()
