"""The query engine: the issue's cases, operator semantics and criterion parsing."""

from __future__ import annotations

from typing import Any

import pytest

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.registry.index import AgentIndex, Put
from broker_agents.core.registry.query import Op, matches, parse_criteria
from broker_agents.core.registry.record import AgentRecord


def _three() -> list[AgentRecord]:
    spec = [("a1", "healthy", 0.7, 0.1), ("a2", "degraded", 0.2, 0.5),
            ("a3", "healthy", 0.9, 0.9)]
    return [
        AgentRecord(agent_id=aid, name=aid, node_id="n1",
                    capabilities=["inference", "training"], health=health,
                    resources={"memory_available": mem, "cpu_usage": cpu})
        for aid, health, mem, cpu in spec
    ]


def _answers(criteria: list[Any]) -> tuple[list[str], list[str]]:
    """(index answer, brute-force answer) over the three agents."""
    records = _three()
    index = AgentIndex()
    for rev, record in enumerate(records, start=1):
        index.apply(Put(record.agent_id, record, rev))
    parsed = parse_criteria(criteria)
    brute = sorted(r.agent_id for r in records if matches(r, parsed))
    return [r.agent_id for r in index.query(parsed)], brute


CAP = {"field": "capability", "op": "eq", "value": "inference"}
HEALTHY = {"field": "health", "op": "eq", "value": "healthy"}
MEM = {"field": "resources.memory_available", "op": "gte", "value": 0.5}


@pytest.mark.parametrize(("criteria", "expected"), [
    ([CAP], ["a1", "a2", "a3"]),
    ([CAP, HEALTHY], ["a1", "a3"]),
    ([CAP, HEALTHY, MEM], ["a1", "a3"]),
    ([CAP, MEM], ["a1", "a3"]),
    ([{"field": "resources.cpu_usage", "op": "gte", "value": 0.4}], ["a2", "a3"]),
    ([{"field": "resources.cpu_usage", "op": "lt", "value": 0.6}], ["a1", "a2"]),
    ([{"field": "resources.cpu_usage", "op": "gt", "value": 0.8}], ["a3"]),
    ([{"field": "capability", "op": "in", "value": ["inference", "training"]}],
     ["a1", "a2", "a3"]),
])
def test_issue_cases_hold_for_index_and_brute_force(
    criteria: list[Any], expected: list[str],
) -> None:
    indexed, brute = _answers(criteria)
    assert indexed == expected
    assert brute == expected


def test_capability_in_matches_agents_having_either() -> None:
    records = [
        AgentRecord(agent_id="x", name="x", node_id="n", capabilities=["inference"]),
        AgentRecord(agent_id="y", name="y", node_id="n", capabilities=["training"]),
        AgentRecord(agent_id="z", name="z", node_id="n", capabilities=["vision"]),
    ]
    index = AgentIndex()
    for rev, record in enumerate(records, start=1):
        index.apply(Put(record.agent_id, record, rev))
    crit = parse_criteria([{"field": "capabilities", "op": "in",
                            "value": ["inference", "training"]}])
    assert [r.agent_id for r in index.query(crit)] == ["x", "y"]


def test_neq_and_not_in_on_a_list_field_exclude_members() -> None:
    indexed, _ = _answers([{"field": "capability", "op": "neq", "value": "inference"}])
    assert indexed == []
    indexed, _ = _answers([{"field": "health", "op": "not_in", "value": ["degraded"]}])
    assert indexed == ["a1", "a3"]


def test_missing_field_matches_no_operator() -> None:
    record = AgentRecord(agent_id="a", name="a", node_id="n")
    for op, value in [("eq", 1), ("neq", 1), ("not_in", [1]), ("lt", 5)]:
        assert not matches(record, parse_criteria([["metadata.zone", op, value]]))


def test_nested_metadata_paths_are_walked() -> None:
    record = AgentRecord(agent_id="a", name="a", node_id="n",
                         metadata={"zone": "eu", "rack": {"row": 2}})
    assert matches(record, parse_criteria([["metadata.zone", "eq", "eu"],
                                           ["metadata.rack.row", "gte", 2]]))
    assert not matches(record, parse_criteria([["metadata.rack.row", "gt", 2]]))


def test_bool_never_equals_a_number() -> None:
    record = AgentRecord(agent_id="a", name="a", node_id="n", metadata={"flag": True},
                         resources={"gpus": 1.0})
    assert not matches(record, parse_criteria([["metadata.flag", "eq", 1]]))
    assert not matches(record, parse_criteria([["resources.gpus", "eq", True]]))
    assert matches(record, parse_criteria([["metadata.flag", "eq", True]]))


def test_aliases_normalise_fields() -> None:
    crits = parse_criteria([["capability", "eq", "x"], ["id", "eq", "a"], ["node", "eq", "n"]])
    assert [c.field for c in crits] == ["capabilities", "agent_id", "node_id"]
    assert crits[0].op is Op.EQ


@pytest.mark.parametrize(("raw", "needle"), [
    ([{"field": "health", "op": "like", "value": 1}], "unknown op"),
    ([{"field": "colour", "op": "eq", "value": 1}], "unknown field"),
    ([{"field": "resources.cpu", "op": "gt", "value": "high"}], "needs a number"),
    ([{"field": "resources.cpu", "op": "gt", "value": True}], "needs a number"),
    ([{"field": "health", "op": "in", "value": "healthy"}], "needs a list"),
    ([{"field": "health", "op": "eq"}], "missing value"),
    ([{"field": "resources", "op": "eq", "value": 1}], "name a resource"),
    ([42], "must be an object"),
    ("health=healthy", "must be a list"),
])
def test_bad_criteria_raise_validation_errors(raw: Any, needle: str) -> None:
    with pytest.raises(BrokerError) as info:
        parse_criteria(raw)
    assert info.value.code == ErrorCode.VALIDATION
    assert needle in info.value.message
