"""A tiny, safe arithmetic language for cross-variable constraints.

Constraints must be declarative and serializable, so they are strings such as
``"batch_size * workers"``; we never ``eval`` them. The source is parsed with ``ast`` and
only a whitelist is accepted: numbers, strings and booleans as constants, variable names,
``+ - * / // %``, unary ``- + not``, and calls to ``min``, ``max``, ``abs``. No attribute
access, subscripts, power (``**`` can be made to run for ever) or other calls. Size is
bounded so that a hostile definition cannot make evaluation expensive.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

MAX_SOURCE = 256
MAX_NODES = 64

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: operator.not_,
}
_CALLS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "abs": abs}
_ALLOWED = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load, ast.Call,
    *_BINOPS, *_UNARY,
)


class Expression:
    """A parsed, checked expression; ``names`` are the variables it reads."""

    __slots__ = ("_tree", "names", "source")

    def __init__(self, source: str) -> None:
        if len(source) > MAX_SOURCE:
            raise ValueError(f"expression longer than {MAX_SOURCE} characters")
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except SyntaxError as exc:
            raise ValueError(f"invalid expression {source!r}: {exc.msg}") from None
        nodes = list(ast.walk(tree))
        if len(nodes) > MAX_NODES:
            raise ValueError(f"expression {source!r} has more than {MAX_NODES} nodes")
        callees = {id(n.func) for n in nodes if isinstance(n, ast.Call)}
        names: set[str] = set()
        for node in nodes:
            if not isinstance(node, _ALLOWED):
                raise ValueError(f"{type(node).__name__} is not allowed in {source!r}")
            if isinstance(node, ast.Constant) and (
                not isinstance(node.value, bool | int | float | str)
            ):
                raise ValueError(f"constant {node.value!r} is not allowed in {source!r}")
            if isinstance(node, ast.Call):
                if not (isinstance(node.func, ast.Name) and node.func.id in _CALLS) or (
                    node.keywords
                ):
                    raise ValueError(f"only min/max/abs calls are allowed in {source!r}")
            elif isinstance(node, ast.Name) and id(node) not in callees:
                names.add(node.id)
        self.source = source
        self.names = frozenset(names)
        self._tree = tree

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        """Evaluate against variable values; raises ``ValueError`` on any failure."""
        try:
            value = _eval(self._tree.body, env)
        except (ArithmeticError, TypeError, KeyError) as exc:
            raise ValueError(f"{self.source!r}: {type(exc).__name__}: {exc}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{self.source!r} is not finite")
        return value

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def _eval(node: ast.expr, env: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, env))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _CALLS[node.func.id](*(_eval(a, env) for a in node.args))
    raise TypeError(f"unsupported node {type(node).__name__}")
