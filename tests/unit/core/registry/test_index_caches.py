"""The index's query caches (combined set-index rows, scan columns, key order) and the
ordered index's buffered writes never answer from a state a write has changed."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core.registry import ordered as ordered_module
from broker_agents.core.registry.index import AgentIndex, Delete, Entry, Put
from broker_agents.core.registry.ordered import OrderedIndex
from broker_agents.core.registry.query import Criterion, Op, matches, parse_criteria
from broker_agents.core.registry.record import AgentRecord
from tests.unit.core.registry.strategies import RELAXED, agent_records, criteria

KEYS = ["e", "b", "d", "a", "c", "f"]  # not in key order: arrivals break the order


@st.composite
def writes(draw: st.DrawFn) -> list[Entry]:
    entries: list[Entry] = []
    for rev in range(1, draw(st.integers(1, 30)) + 1):
        key = draw(st.sampled_from(KEYS))
        if draw(st.integers(0, 4)) == 0:
            entries.append(Delete(key, rev))
        else:
            entries.append(Put(key, draw(agent_records(agent_id=key)), rev))
    return entries


def _expected(state: dict[str, AgentRecord], crits: list[Criterion]) -> list[str]:
    return sorted(k for k, r in state.items() if matches(r, crits))


@RELAXED
@given(writes(), st.lists(st.lists(criteria(), max_size=3), min_size=1, max_size=4),
       st.integers(1, 5))
def test_queries_between_writes_equal_brute_force(
    entries: list[Entry], queries: list[list[dict[str, Any]]], every: int,
) -> None:
    """Queries warm every cache, writes follow, the same queries must see them."""
    index = AgentIndex()
    state: dict[str, AgentRecord] = {}
    parsed = [parse_criteria(q) for q in queries]
    for n, entry in enumerate(entries, start=1):
        index.apply(entry)
        if isinstance(entry, Put) and entry.record is not None:
            state[entry.key] = entry.record
        else:
            state.pop(entry.key, None)
        if n % every == 0:
            for crits in parsed:
                expected = _expected(state, crits)
                assert index.query_ids(crits) == expected
                assert [r.agent_id for r in index.query(crits)] == expected
                assert index.count(crits) == len(expected)


def test_a_changed_record_leaves_every_cached_combination() -> None:
    index = AgentIndex()
    rec = AgentRecord(agent_id="a", name="a", node_id="n1", capabilities=["x"])
    index.apply(Put("a", rec, 1))
    both = parse_criteria([["capabilities", "eq", "x"], ["node_id", "eq", "n1"]])
    assert index.query_ids(both) == ["a"]
    index.apply(Put("a", rec.model_copy(update={"node_id": "n2"}), 2))
    assert index.query_ids(both) == []
    assert index.query_ids(parse_criteria([["node_id", "eq", "n2"]])) == ["a"]
    index.apply(Delete("a", 3))
    assert index.query_ids(parse_criteria([["node_id", "eq", "n2"]])) == []


def test_scan_column_follows_updates() -> None:
    index = AgentIndex()
    for i, zone in enumerate(["eu", "us", "eu"]):
        index.apply(Put(f"k{2 - i}", AgentRecord(agent_id=f"k{2 - i}", name="n", node_id="n",
                                                  metadata={"zone": zone}), i + 1))
    eu = parse_criteria([["metadata.zone", "eq", "eu"]])
    assert index.query_ids(eu) == ["k0", "k2"]
    index.apply(Put("k1", AgentRecord(agent_id="k1", name="n", node_id="n",
                                      metadata={"zone": ["eu", "ap"]}), 4))
    assert index.query_ids(eu) == ["k0", "k1", "k2"]  # a list member: the slow path
    assert list(index.records) == ["k0", "k1", "k2"]


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5), st.integers(0, 40).map(str)),
                max_size=200), st.integers(0, 70))
def test_ordered_index_buffered_writes_equal_a_sorted_list(
    ops: list[tuple[bool, int, str]], read_every: int,
) -> None:
    """Adds of absent items and removes of present ones, read at any point (merged one
    by one or in one sort), give the sorted list of what is present."""
    ordered = OrderedIndex()
    present: set[tuple[float, str]] = set()
    for n, (add, value, agent_id) in enumerate(ops, start=1):
        item = (float(value), agent_id)
        if add and item not in present:
            ordered.add(value, agent_id)
            present.add(item)
        elif not add and item in present:
            ordered.remove(value, agent_id)
            present.discard(item)
        assert len(ordered) == len(present)
        if read_every and n % read_every == 0:
            assert ordered.items() == sorted(present)
            lo, hi = ordered.bounds(Op.GTE, 3)
            assert ordered.ids(lo, hi) == {a for v, a in present if v >= 3}
    assert ordered.items() == sorted(present)


def test_many_pending_writes_merge_in_one_sort() -> None:
    ordered = OrderedIndex()
    n = ordered_module.MERGE_ONE_BY_ONE * 3
    for i in range(n):
        ordered.add(n - i, f"a{i}")
    ordered.remove(1, f"a{n - 1}")
    assert ordered.items() == sorted((float(n - i), f"a{i}") for i in range(n - 1))


def test_scan_cache_follows_in_place_updates_appends_and_removals() -> None:
    index = AgentIndex()

    def put(key: str, zone: str, rev: int) -> None:
        index.apply(Put(key, AgentRecord(agent_id=key, name="n", node_id="n",
                                         metadata={"zone": zone}), rev))

    for rev, key in enumerate(["a", "b", "c"], start=1):
        put(key, "eu", rev)
    eu = parse_criteria([["metadata.zone", "eq", "eu"]])
    assert index.query_ids(eu) == ["a", "b", "c"]
    put("b", "us", 4)  # in place
    assert index.query_ids(eu) == ["a", "c"]
    put("d", "eu", 5)  # sorts last: appended
    assert index.query_ids(eu) == ["a", "c", "d"]
    put("d", "ap", 6)
    put("b", "eu", 7)
    assert index.query_ids(eu) == ["a", "b", "c"]
    index.apply(Delete("a", 8))
    put("0", "eu", 9)  # out of order
    assert index.query_ids(eu) == ["0", "b", "c"]
    assert index.query_ids(parse_criteria([["metadata.zone", "neq", "eu"]])) == ["d"]
