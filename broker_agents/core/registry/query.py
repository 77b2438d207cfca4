"""Query criteria over agent records: parsing, and the brute-force reference matcher.

A query is a list of criteria that are AND-ed. A criterion is JSON-friendly:
``{"field": "resources.memory_available", "op": "gte", "value": 0.5}``.

Fields are dot paths. The first part is a record field (``capability`` and ``id`` are
accepted as aliases of ``capabilities`` and ``agent_id``); under ``resources`` the rest of
the path is one resource name; under ``metadata`` (and ``reaped``) the path walks nested
objects. A field that is absent (or null) matches no criterion, whatever the operator.

Operators: ``eq`` (on a list field: the value is a member), ``neq`` (negation of ``eq``),
``in`` (the field, or for a list field any member, is in the value list), ``not_in``
(negation of ``in``), and ``gt`` ``gte`` ``lt`` ``lte`` (numbers only; a non-numeric field
value does not match).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.registry.record import AgentRecord


class Op(StrEnum):
    EQ = "eq"
    NEQ = "neq"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"
    NOT_IN = "not_in"


RANGE_OPS = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE})
ALIASES = {"capability": "capabilities", "id": "agent_id", "node": "node_id"}
ROOTS = frozenset(AgentRecord.model_fields)
_MISSING = object()


@dataclass(frozen=True)
class Criterion:
    """One AND-ed condition; ``field`` is already normalised (aliases resolved)."""

    field: str
    op: Op
    value: Any

    @property
    def root(self) -> str:
        return self.field.split(".", 1)[0]

    @property
    def rest(self) -> str:
        parts = self.field.split(".", 1)
        return parts[1] if len(parts) > 1 else ""

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "op": self.op.value, "value": self.value}


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bad(message: str, index: int, **details: Any) -> BrokerError:
    return BrokerError(ErrorCode.VALIDATION, message, {"criterion": index, **details})


def parse_criterion(raw: Any, index: int = 0) -> Criterion:
    """A ``Criterion`` from ``{"field","op","value"}`` or ``[field, op, value]``."""
    if isinstance(raw, Criterion):
        return raw
    if isinstance(raw, Mapping):
        missing = [k for k in ("field", "op", "value") if k not in raw]
        if missing:
            raise _bad(f"criterion {index} is missing {', '.join(missing)}", index,
                       missing=missing)
        field, op, value = raw["field"], raw["op"], raw["value"]
    elif isinstance(raw, list | tuple) and len(raw) == 3:
        field, op, value = raw
    else:
        raise _bad(f"criterion {index} must be an object with field, op and value", index)
    if not isinstance(field, str) or not field or field.startswith(".") or field.endswith("."):
        raise _bad(f"criterion {index}: field must be a dot path", index, field=field)
    root, _, rest = field.partition(".")
    root = ALIASES.get(root, root)
    if root not in ROOTS:
        raise _bad(f"criterion {index}: unknown field {root!r}", index, field=field,
                   allowed=sorted(ROOTS | set(ALIASES)))
    if root == "resources" and not rest:
        raise _bad(f"criterion {index}: name a resource, e.g. resources.cpu_usage", index,
                   field=field)
    try:
        the_op = Op(op)
    except ValueError:
        raise _bad(f"criterion {index}: unknown op {op!r}", index, op=op,
                   allowed=[o.value for o in Op]) from None
    if the_op in (Op.IN, Op.NOT_IN) and not isinstance(value, list | tuple):
        raise _bad(f"criterion {index}: {the_op.value} needs a list value", index, value=value)
    if the_op in RANGE_OPS and not is_number(value):
        raise _bad(f"criterion {index}: {the_op.value} needs a number", index, value=value)
    if isinstance(value, tuple):
        value = list(value)
    return Criterion(f"{root}.{rest}" if rest else root, the_op, value)


def parse_criteria(raw: Any) -> list[Criterion]:
    """Criteria from a list (or a single criterion object)."""
    if raw is None:
        return []
    if isinstance(raw, Mapping | Criterion):
        raw = [raw]
    if not isinstance(raw, list | tuple):
        raise BrokerError(ErrorCode.VALIDATION, "criteria must be a list of criteria",
                          {"criteria": type(raw).__name__})
    return [parse_criterion(item, i) for i, item in enumerate(raw)]


def _walk(value: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, BaseModel) and part in type(value).model_fields:
            value = getattr(value, part)
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def field_value(record: AgentRecord, field: str) -> Any:
    """The value at ``field``, or the module's missing sentinel (see ``is_missing``)."""
    root, _, rest = field.partition(".")
    value = getattr(record, root, _MISSING)
    if rest:
        if root == "resources":
            return record.resources.get(rest, _MISSING)
        value = _walk(value, rest.split("."))
    return value


def is_missing(value: Any) -> bool:
    return value is _MISSING or value is None


def _same(a: Any, b: Any) -> bool:
    """Equality where a bool only equals a bool (``True != 1`` in a query)."""
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _eq(found: Any, value: Any) -> bool:
    if isinstance(found, list):
        return any(_same(item, value) for item in found)
    return _same(found, value)


def _in(found: Any, values: Iterable[Any]) -> bool:
    return any(_eq(found, v) for v in values)


def _range(op: Op, found: Any, value: float) -> bool:
    if not is_number(found):
        return False
    if op is Op.GT:
        return bool(found > value)
    if op is Op.GTE:
        return bool(found >= value)
    if op is Op.LT:
        return bool(found < value)
    return bool(found <= value)


def holds(op: Op, found: Any, value: Any) -> bool:
    """Whether a present field value satisfies ``op value``."""
    if op is Op.EQ:
        return _eq(found, value)
    if op is Op.NEQ:
        return not _eq(found, value)
    if op is Op.IN:
        return _in(found, value)
    if op is Op.NOT_IN:
        return not _in(found, value)
    return _range(op, found, value)


def matches(record: AgentRecord, criteria: Iterable[Criterion]) -> bool:
    """The reference semantics: every criterion holds for ``record``."""
    for crit in criteria:
        found = field_value(record, crit.field)
        if is_missing(found) or not holds(crit.op, found, crit.value):
            return False
    return True


def compile_criterion(crit: Criterion) -> Callable[[AgentRecord], bool]:
    """A fast predicate equivalent to ``matches(record, [crit])``."""
    op, value = crit.op, crit.value
    if crit.root == "resources":
        name = crit.rest
        if op in RANGE_OPS:
            def resource_range(record: AgentRecord) -> bool:
                found = record.resources.get(name)
                return found is not None and _range(op, found, value)
            return resource_range
    elif crit.root == "health" and op is Op.EQ:
        return lambda record: bool(record.health == value)
    single = (crit,)
    return lambda record: matches(record, single)
