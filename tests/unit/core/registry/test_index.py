"""The read model: idempotent apply, reconcile after re-list, and index == brute force."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core.registry.index import AgentIndex, ChangeKind, Delete, Entry, Put
from broker_agents.core.registry.ordered import OrderedIndex
from broker_agents.core.registry.query import Op, matches, parse_criteria
from broker_agents.core.registry.record import AgentRecord, Health
from tests.unit.core.registry.strategies import RELAXED, agent_records, criteria


def _rec(agent_id: str, **kw: Any) -> AgentRecord:
    return AgentRecord(agent_id=agent_id, name=agent_id, node_id=kw.pop("node_id", "n1"), **kw)


def _check_indexes(index: AgentIndex) -> None:
    """Every secondary index agrees with the records dict."""
    for cap, ids in index.by_capability.items():
        assert ids == {k for k, r in index.records.items() if cap in r.capabilities}
    for node, ids in index.by_node.items():
        assert ids == {k for k, r in index.records.items() if r.node_id == node}
    for health, ids in index.by_health.items():
        assert ids == {k for k, r in index.records.items() if r.health.value == health}
    for name, ordered in index.by_resource.items():
        expect = sorted((r.resources[name], k) for k, r in index.records.items()
                        if name in r.resources)
        assert ordered.items() == expect
    assert all(ids for ids in index.by_capability.values())


def test_put_then_update_then_delete_reports_changes() -> None:
    index = AgentIndex()
    added = index.apply(Put("a", _rec("a"), 1))
    updated = index.apply(Put("a", _rec("a", health=Health.DEGRADED), 2))
    removed = index.apply(Delete("a", 3))
    assert added is not None and added.kind is ChangeKind.ADDED
    assert updated is not None and updated.kind is ChangeKind.UPDATED
    assert updated.previous == _rec("a")
    assert removed is not None and removed.kind is ChangeKind.REMOVED
    assert removed.record.health is Health.DEGRADED
    assert len(index) == 0 and index.last_revision == 3


def test_entry_applied_twice_is_harmless() -> None:
    index = AgentIndex()
    entry = Put("a", _rec("a", capabilities=["x"], resources={"m": 1.0}), 5)
    assert index.apply(entry) is not None
    assert index.apply(entry) is None
    assert index.by_capability == {"x": {"a"}}
    assert index.by_resource["m"].items() == [(1.0, "a")]


def test_out_of_date_put_after_delete_does_not_resurrect() -> None:
    index = AgentIndex()
    index.apply(Put("a", _rec("a"), 1))
    index.apply(Delete("a", 4))
    assert index.apply(Put("a", _rec("a"), 3)) is None
    assert index.get("a") is None
    assert index.apply(Put("a", _rec("a"), 6)) is not None


def test_undecodable_value_removes_the_agent() -> None:
    index = AgentIndex()
    index.apply(Put("a", _rec("a"), 1))
    change = index.apply(Put("a", None, 2))
    assert change is not None and change.kind is ChangeKind.REMOVED
    assert index.get("a") is None


def test_reconcile_drops_keys_absent_from_the_relist_only_up_to_high_water() -> None:
    index = AgentIndex()
    for rev, key in enumerate(["a", "b", "c"], start=1):
        index.apply(Put(key, _rec(key), rev))
    index.apply(Put("d", _rec("d"), 10))
    changes = index.reconcile({"a": 1}, high_water=5)
    assert sorted(c.agent_id for c in changes) == ["b", "c"]
    assert sorted(index.records) == ["a", "d"]
    assert index.apply(Put("b", _rec("b"), 2)) is None


def test_reset_forgets_everything() -> None:
    index = AgentIndex()
    index.apply(Put("a", _rec("a"), 7))
    assert [c.kind for c in index.reset()] == [ChangeKind.REMOVED]
    assert index.last_revision == 0 and index.apply(Put("a", _rec("a"), 1)) is not None


def test_ordered_index_bounds() -> None:
    ordered = OrderedIndex()
    for i, value in enumerate([0.1, 0.5, 0.5, 0.9]):
        ordered.add(value, f"a{i}")
    assert ordered.ids(*ordered.bounds(Op.EQ, 0.5)) == {"a1", "a2"}
    assert ordered.ids(*ordered.bounds(Op.GT, 0.5)) == {"a3"}
    assert ordered.ids(*ordered.bounds(Op.LTE, 0.5)) == {"a0", "a1", "a2"}
    ordered.remove(0.5, "a1")
    assert ordered.ids(*ordered.bounds(Op.GTE, 0.5)) == {"a2", "a3"}


@st.composite
def histories(draw: st.DrawFn) -> list[Entry]:
    """Writes to a few keys, then delivered with duplicates and some reordering."""
    keys = ["a", "b", "c", "d", "e"]
    entries: list[Entry] = []
    for rev in range(1, draw(st.integers(1, 40)) + 1):
        key = draw(st.sampled_from(keys))
        if draw(st.integers(0, 4)) == 0:
            entries.append(Delete(key, rev))
        else:
            entries.append(Put(key, draw(agent_records(agent_id=key)), rev))
    rng = random.Random(draw(st.integers(0, 2**32)))
    delivered = list(entries)
    for _ in range(len(entries) // 3):
        delivered.insert(rng.randrange(len(delivered) + 1), rng.choice(entries))
    return delivered


def _final_state(entries: list[Entry]) -> dict[str, AgentRecord]:
    latest: dict[str, Entry] = {}
    for entry in sorted(entries, key=lambda e: e.revision):
        latest[entry.key] = entry
    return {k: e.record for k, e in latest.items() if isinstance(e, Put) and e.record}


@RELAXED
@given(histories())
def test_in_order_delivery_with_duplicates_converges_to_the_latest_values(
    entries: list[Entry],
) -> None:
    index = AgentIndex()
    for entry in sorted(entries, key=lambda e: e.revision):
        index.apply(entry)
    assert index.records == _final_state(entries)
    _check_indexes(index)


@RELAXED
@given(histories())
def test_any_delivery_order_converges_and_keeps_indexes_consistent(
    entries: list[Entry],
) -> None:
    index = AgentIndex()
    for entry in entries:
        index.apply(entry)
        _check_indexes(index)
    assert index.records == _final_state(entries)
    assert index.last_revision == max(e.revision for e in entries)


@RELAXED
@given(st.lists(agent_records(), max_size=30), st.lists(criteria(), max_size=4))
def test_index_answers_equal_brute_force(
    records: list[AgentRecord], raw: list[dict[str, Any]],
) -> None:
    index = AgentIndex()
    unique = {r.agent_id: r for r in records}
    for rev, record in enumerate(unique.values(), start=1):
        index.apply(Put(record.agent_id, record, rev))
    crits = parse_criteria(raw)
    expected = sorted(k for k, r in unique.items() if matches(r, crits))
    assert index.query_ids(crits) == expected
    assert index.count(crits) == len(expected)
