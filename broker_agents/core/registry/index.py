"""The in-memory read model of the agents bucket, with secondary indexes and a planner.

Entries come from a KV watch, which may deliver an entry twice, late, or (after a
re-list) again: ``apply`` keeps the highest revision per key, remembers deletions as
tombstones so a late put cannot resurrect a deleted agent, and returns the visible
change (or ``None`` when the entry changed nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from broker_agents.core.registry.ordered import OrderedIndex
from broker_agents.core.registry.query import (
    RANGE_OPS,
    Criterion,
    Op,
    compile_criterion,
    is_number,
)
from broker_agents.core.registry.record import AgentRecord
from broker_agents.core.registry.scan import ScanCache, flags, keep

# Keys and their records, in id order, as parallel lists (see ``scan``).
Rows = tuple[list[str], list[AgentRecord]]
Part = tuple[str, str]
# At most this many cached combinations; more, and the cache starts afresh.
MAX_CACHED = 4096


@dataclass(frozen=True)
class Put:
    """A value for ``key`` at ``revision``; ``record`` is None when it did not decode."""

    key: str
    record: AgentRecord | None
    revision: int


@dataclass(frozen=True)
class Delete:
    key: str
    revision: int


Entry = Put | Delete


class ChangeKind(StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    REMOVED = "removed"


@dataclass(frozen=True)
class Change:
    """What a watcher sees. For ``removed``, ``record`` is the last known record."""

    kind: ChangeKind
    agent_id: str
    record: AgentRecord
    previous: AgentRecord | None
    revision: int


_SET_FIELDS = ("capabilities", "node_id", "health")


class AgentIndex:
    """Records by id, plus indexes by capability, node, health and numeric resource.

    Answers come in id order without sorting them per query: ``records`` is kept in key
    order (re-sorted in place, once, after keys arrived out of order), and each set
    index's members are cached as id-sorted rows until one of them changes. At 50k
    agents, sorting a query's ids and looking each record up again was most of its cost.
    """

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.records: dict[str, AgentRecord] = {}
        self.revisions: dict[str, int] = {}
        self.tombstones: dict[str, int] = {}
        self.last_revision = 0
        self.by_capability: dict[str, set[str]] = {}
        self.by_node: dict[str, set[str]] = {}
        self.by_health: dict[str, set[str]] = {}
        self.by_resource: dict[str, OrderedIndex] = {}
        self._in_key_order = True  # records' insertion order is key order
        self._max_key = ""  # >= every key in records
        # set-index equalities (field, value) of a query -> the id-sorted rows meeting
        # all of them; and each (field, value) -> the cached combinations it is part of
        self._rows: dict[frozenset[Part], Rows] = {}
        self._rows_with: dict[Part, set[frozenset[Part]]] = {}
        self._scan_cache = ScanCache()

    def __len__(self) -> int:
        return len(self.records)

    def get(self, agent_id: str) -> AgentRecord | None:
        return self.records.get(agent_id)

    def known_revision(self, key: str) -> int:
        return max(self.revisions.get(key, 0), self.tombstones.get(key, 0))

    # -- writes ---------------------------------------------------------------------

    def apply(self, entry: Entry) -> Change | None:
        """Apply one watch entry; stale or duplicate entries are ignored."""
        if entry.revision <= self.known_revision(entry.key):
            return None
        self.last_revision = max(self.last_revision, entry.revision)
        if isinstance(entry, Put) and entry.record is not None:
            return self._put(entry.key, entry.record, entry.revision)
        return self._delete(entry.key, entry.revision)

    def reconcile(self, present: Mapping[str, int], high_water: int) -> list[Change]:
        """After a re-list: drop keys the bucket no longer has (purged while we were away).

        ``present`` maps every key the re-list saw (values and delete markers) to its
        revision; keys we hold at or below ``high_water`` that it did not see are gone.
        """
        gone = [k for k, rev in self.revisions.items() if k not in present and rev <= high_water]
        changes = [c for k in gone if (c := self._delete(k, high_water)) is not None]
        self.last_revision = max(self.last_revision, high_water)
        return changes

    def reset(self) -> list[Change]:
        """Forget everything (the bucket was recreated); report each agent as removed."""
        changes = [c for k in list(self.records) if (c := self._delete(k, 0)) is not None]
        self._clear()
        return changes

    def _put(self, key: str, record: AgentRecord, revision: int) -> Change:
        previous = self.records.get(key)
        if previous is not None:
            self._unindex(key, previous)
        self.tombstones.pop(key, None)
        last = False
        if previous is None:
            if key < self._max_key:
                self._in_key_order = False
            else:
                self._max_key = key
                last = self._in_key_order
        self.records[key] = record
        self._scan_cache.put(key, record, last)
        self.revisions[key] = revision
        self._index(key, record)
        kind = ChangeKind.ADDED if previous is None else ChangeKind.UPDATED
        return Change(kind, key, record, previous, revision)

    def _delete(self, key: str, revision: int) -> Change | None:
        self.tombstones[key] = max(revision, self.tombstones.get(key, 0))
        self.revisions.pop(key, None)
        previous = self.records.pop(key, None)
        if previous is None:
            return None
        self._scan_cache.drop()
        self._unindex(key, previous)
        return Change(ChangeKind.REMOVED, key, previous, previous, revision)

    def _index(self, key: str, record: AgentRecord) -> None:
        self._forget_rows(record)
        for cap in record.capabilities:
            self.by_capability.setdefault(cap, set()).add(key)
        self.by_node.setdefault(record.node_id, set()).add(key)
        self.by_health.setdefault(record.health.value, set()).add(key)
        for name, value in record.resources.items():
            self.by_resource.setdefault(name, OrderedIndex()).add(value, key)

    def _forget_rows(self, record: AgentRecord) -> None:
        """Drop the cached rows of every combination ``record`` is (or was) part of."""
        if not self._rows:
            return
        for part in (("node_id", record.node_id), ("health", record.health.value),
                     *(("capabilities", cap) for cap in record.capabilities)):
            for combo in self._rows_with.pop(part, ()):
                self._rows.pop(combo, None)

    def _unindex(self, key: str, record: AgentRecord) -> None:
        self._forget_rows(record)
        for cap in record.capabilities:
            _discard(self.by_capability, cap, key)
        _discard(self.by_node, record.node_id, key)
        _discard(self.by_health, record.health.value, key)
        for name, value in record.resources.items():
            ordered = self.by_resource.get(name)
            if ordered is not None:
                ordered.remove(value, key)
                if not len(ordered):
                    del self.by_resource[name]

    # -- reads ----------------------------------------------------------------------

    def _set_index(self, crit: Criterion) -> dict[str, set[str]] | None:
        if crit.field == "capabilities":
            return self.by_capability
        if crit.field == "node_id":
            return self.by_node
        if crit.field == "health":
            return self.by_health
        return None

    def _estimate(self, crit: Criterion) -> tuple[int, int, int] | None:
        """(estimated size, lo, hi) when an index can produce this criterion's candidates."""
        index = self._set_index(crit)
        if index is not None:
            if crit.op is Op.EQ:
                key = crit.value if isinstance(crit.value, str) else None
                return len(index.get(key, ())) if key is not None else 0, 0, 0
            if crit.op is Op.IN:
                keys = {v for v in crit.value if isinstance(v, str)}
                return sum(len(index.get(k, ())) for k in keys), 0, 0
            return None
        if crit.field == "agent_id" and crit.op is Op.EQ:
            return int(isinstance(crit.value, str) and crit.value in self.records), 0, 0
        if crit.root == "resources" and (crit.op in RANGE_OPS or crit.op is Op.EQ):
            if not is_number(crit.value):
                return (0, 0, 0) if crit.op is Op.EQ else None
            ordered = self.by_resource.get(crit.rest)
            if ordered is None:
                return 0, 0, 0
            lo, hi = ordered.bounds(crit.op, crit.value)
            return hi - lo, lo, hi
        return None

    def _produce(self, crit: Criterion, lo: int, hi: int) -> set[str]:
        index = self._set_index(crit)
        if index is not None:
            if crit.op is Op.EQ:
                return set(index.get(crit.value, ())) if isinstance(crit.value, str) else set()
            found: set[str] = set()
            for key in {v for v in crit.value if isinstance(v, str)}:
                found |= index.get(key, set())
            return found
        if crit.field == "agent_id":
            return {crit.value} if isinstance(crit.value, str) and crit.value in self.records \
                else set()
        ordered = self.by_resource.get(crit.rest)
        return ordered.ids(lo, hi) if ordered is not None else set()

    def _equal_rows(self, parts: list[Part]) -> Rows:
        """The id-sorted rows whose record is in every set-index value of ``parts``
        (the first is the smallest); cached until one of those values changes."""
        combo = frozenset(parts)
        rows = self._rows.get(combo)
        if rows is not None:
            return rows
        sets = [self._set_for(field).get(value, set()) for field, value in parts]
        ids = sets[0].intersection(*sets[1:]) if len(sets) > 1 else sets[0]
        keys = sorted(ids)
        rows = keys, list(map(self.records.__getitem__, keys))
        if len(self._rows) >= MAX_CACHED:
            self._rows.clear()
            self._rows_with.clear()
        self._rows[combo] = rows
        for part in combo:
            self._rows_with.setdefault(part, set()).add(combo)
        return rows

    def _set_for(self, field: str) -> dict[str, set[str]]:
        return {"capabilities": self.by_capability, "node_id": self.by_node,
                "health": self.by_health}[field]

    def _key_ordered(self) -> dict[str, AgentRecord]:
        """``records``, re-sorted in place first if keys arrived out of order."""
        records = self.records
        if not self._in_key_order:
            ordered = sorted(records.items())
            records.clear()
            records.update(ordered)
            self._in_key_order = True
            self._max_key = ordered[-1][0] if ordered else ""
            self._scan_cache.drop()
        return records

    def _scan(self, crits: list[Criterion]) -> Rows:
        """Every record, filtered: the first criterion the vectorised scan takes at C
        speed (over its cached column), the others record by record."""
        cache = self._scan_cache
        cache.fill(self._key_ordered())
        assert cache.keys is not None
        for i, crit in enumerate(crits):
            truth = cache.truth(crit)
            if truth is not None:
                rows = keep(cache.keys, truth), keep(cache.records, truth)
                return _filtered(rows, [], crits[:i] + crits[i + 1:])
        return _filtered((list(cache.keys), list(cache.records)), [], crits)

    def _select(self, criteria: Iterable[Criterion]) -> Rows:
        """Keys and records matching every criterion, in id order; starts from the most
        selective index."""
        crits = list(criteria)
        planned = [(est, i, crit) for i, crit in enumerate(crits)
                   if (est := self._estimate(crit)) is not None]
        if not planned:
            return self._scan(crits)
        planned.sort(key=lambda p: p[0][0])
        (_, lo, hi), first, driver = planned[0]
        driver_index = self._set_index(driver)
        used = {first}
        members: list[set[str]] = []
        for _, i, crit in planned[1:]:
            index = self._set_index(crit)
            if index is not None and crit.op is Op.EQ:
                members.append(index.get(crit.value, set())
                               if isinstance(crit.value, str) else set())
                used.add(i)
        rest = [c for i, c in enumerate(crits) if i not in used]
        if driver_index is not None and driver.op is Op.EQ:
            equal = [driver, *(c for _, i, c in planned[1:]
                               if i in used and i != first)]
            if not all(isinstance(c.value, str) for c in equal):
                return [], []
            return _filtered(self._equal_rows([(c.field, c.value) for c in equal]), [], rest)
        ids = self._produce(driver, lo, hi)
        for found in members:
            if not ids:
                break
            ids &= found
        keys = sorted(ids)
        return _filtered((keys, list(map(self.records.__getitem__, keys))), [], rest)

    def query_ids(self, criteria: Iterable[Criterion]) -> list[str]:
        """Ids matching every criterion, sorted."""
        return list(self._select(criteria)[0])

    def query(self, criteria: Iterable[Criterion]) -> list[AgentRecord]:
        """Records matching every criterion, in id order."""
        return list(self._select(criteria)[1])

    def count(self, criteria: Iterable[Criterion]) -> int:
        return len(self._select(criteria)[0])


def _filtered(rows: Rows, members: list[set[str]], rest: list[Criterion]) -> Rows:
    """The rows whose key is in every ``members`` set and whose record meets ``rest``."""
    keys, records = rows
    truth: list[Any] | None
    for found in members:
        if not keys:
            break
        truth = list(map(found.__contains__, keys))
        keys, records = keep(keys, truth), keep(records, truth)
    for crit in rest:
        if not keys:
            break
        truth = flags(records, crit)
        if truth is None:
            truth = list(map(compile_criterion(crit), records))
        keys, records = keep(keys, truth), keep(records, truth)
    return keys, records


def _discard(index: dict[str, set[str]], key: str, agent_id: str) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(agent_id)
        if not members:
            del index[key]
