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


def value_of(record: Any, field: str) -> Any:
    """One record's entry of ``column(..., field)`` (a path ``column`` accepts)."""
    root, _, rest = field.partition(".")
    found = getattr(record, root)
    return found.get(rest) if rest else found


class ScanCache:
    """Every key and record in key order, and the columns of the fields scanned, kept
    across writes: an update rewrites its position, a key that sorts last is appended,
    anything else (a removal, a key out of order) drops the cache. Rebuilding the
    column after every write cost the first scan after it 1.7x a plain comprehension."""

    MAX_COLUMNS = 16

    def __init__(self) -> None:
        self.keys: list[str] | None = None
        self.records: list[Any] = []
        self._pos: dict[str, int] = {}
        self._columns: dict[str, tuple[list[Any], frozenset[type]]] = {}

    def drop(self) -> None:
        if self.keys is not None:
            self.keys = None
            self.records = []
            self._pos = {}
            self._columns = {}

    def fill(self, ordered: dict[str, Any]) -> None:
        """Start from ``ordered`` (key -> record, in key order) unless already filled."""
        if self.keys is None:
            self.keys, self.records = list(ordered), list(ordered.values())
            self._pos = {k: i for i, k in enumerate(self.keys)}

    def put(self, key: str, record: Any, last: bool) -> None:
        """``key`` now holds ``record``; ``last``: a new key that sorts after all."""
        if self.keys is None:
            return
        pos = self._pos.get(key)
        if pos is None:
            if not last:
                self.drop()
                return
            pos = self._pos[key] = len(self.keys)
            self.keys.append(key)
            self.records.append(record)
            for col, _ in self._columns.values():
                col.append(None)
        self.records[pos] = record
        for field, (col, kinds) in self._columns.items():
            found = col[pos] = value_of(record, field)
            if type(found) not in kinds:
                self._columns[field] = col, kinds | {type(found)}

    def truth(self, crit: Criterion) -> list[Any] | None:
        """``crit`` for every cached record (fast path only), or None."""
        cached = self._columns.get(crit.field)
        if cached is None:
            found = column(self.records, crit.field)
            if found is None:
                return None
            if len(self._columns) >= self.MAX_COLUMNS:
                self._columns.clear()
            cached = self._columns[crit.field] = found, kinds_of(found)
        return compare(crit, *cached)
