"""Unindexed criteria over every record at C speed: the record's field is read for all
records at once (``map`` of attribute and ``dict.get`` getters), then compared with one
C-level comparison per record and selected with ``itertools.compress``.

Only where that agrees with the reference matcher (``query.matches``): a top-level field,
or one level under ``metadata``/``resources``, whose values are all plain scalars (no
bool, list or mapping, for which the reference has its own rules) compared with a
non-bool scalar. Anything else returns None and the caller evaluates the criterion with
``compile_criterion``, record by record. A plain ``[r for r in records if ...]`` pays an
interpreted loop turn per record; this does not, which is what puts an unindexed scan at
a plain comprehension's speed although it also keeps the result in id order. Results
are parallel lists of keys and records filtered with the same truth values: a tuple
per record would be an allocation per record, and with 50k records held, the garbage
collector runs that allocation triggers walk them all.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Iterable
from functools import partial
from itertools import compress, repeat
from operator import attrgetter
from typing import Any, TypeVar

from broker_agents.core.registry.query import Criterion, Op, is_number
from broker_agents.core.registry.record import Health, Lifecycle

T = TypeVar("T")

_NUMBERS: frozenset[type] = frozenset({int, float})
# Field values whose comparison with a non-bool scalar is exactly the reference's.
_SCALARS: frozenset[type] = _NUMBERS | {str, type(None), Health, Lifecycle}
_NESTED_ROOTS = frozenset({"metadata", "resources"})
# ``found op value`` as ``flip(value, found)``, so that ``partial`` binds the value.
_FLIPPED: dict[Op, Callable[[Any, Any], Any]] = {
    Op.GT: operator.lt, Op.GTE: operator.le, Op.LT: operator.gt, Op.LTE: operator.ge,
}


def _plain(value: Any) -> bool:
    return isinstance(value, str) or is_number(value)


def column(records: Collection[Any], field: str) -> list[Any] | None:
    """The field's value for every record (None where absent), or None when the path
    is deeper than one mapping level."""
    root, _, rest = field.partition(".")
    values: Iterable[Any] = map(attrgetter(root), records)
    if rest:
        if root not in _NESTED_ROOTS or "." in rest:
            return None
        values = map(dict.get, values, repeat(rest))  # both roots are plain dicts
    return list(values)


def kinds_of(values: list[Any]) -> frozenset[type]:
    return frozenset(map(type, values))


def compare(crit: Criterion, values: list[Any], kinds: frozenset[type]) -> list[Any] | None:
    """``crit`` for each of a column's ``values`` (whose types are ``kinds``), or None
    when the fast path does not apply."""
    found = _flags(crit, values, kinds)
    return None if found is None else list(found)


def _flags(crit: Criterion, values: list[Any], kinds: frozenset[type],
           ) -> Iterable[Any] | None:
    if not kinds <= _SCALARS:
        return None
    op, value = crit.op, crit.value
    if op is Op.EQ and _plain(value):
        return map(partial(operator.eq, value), values)  # None never equals a scalar
    if op is Op.NEQ and _plain(value) and type(None) not in kinds:
        return map(partial(operator.ne, value), values)
    if op is Op.IN and all(_plain(v) for v in value):
        return map(frozenset(value).__contains__, values)
    if op is Op.NOT_IN and all(_plain(v) for v in value) and type(None) not in kinds:
        members = frozenset(value)
        return (v not in members for v in values)
    flip = _FLIPPED.get(op)
    if flip is not None and kinds <= _NUMBERS:
        return map(partial(flip, value), values)
    return None


def flags(records: Collection[Any], crit: Criterion) -> list[Any] | None:
    """One truth value per record (same order) for ``crit``; None when the fast path
    does not apply."""
    values = column(records, crit.field)
    if values is None:
        return None
    return compare(crit, values, kinds_of(values))


def keep(items: list[T], truth: list[Any]) -> list[T]:
    """The items whose truth value is true (``compress``: no loop turn per item)."""
    return list(compress(items, truth))
