"""The replicated variable state machine: versions, history, freezing, snapshots."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core.variables.commands import (
    DefineSpace,
    Freeze,
    SetValues,
    Unfreeze,
)
from broker_agents.core.variables.functions import FunctionRegistry
from broker_agents.core.variables.space import VariableSpace
from broker_agents.core.variables.statemachine import VariableStateMachine

SPACE = VariableSpace.parse({
    "name": "llm",
    "variables": [
        {"kind": "float", "name": "temperature", "min": 0.0, "max": 2.0, "default": 0.7},
        {"kind": "integer", "name": "batch", "min": 1, "max": 64, "default": 8},
        {"kind": "choice", "name": "model", "options": ["small", "large"]},
        {"kind": "composite", "name": "load", "function": "product",
         "inputs": ["batch", "temperature"]},
    ],
    "constraints": [{"lhs": "batch", "op": "<=", "rhs": "64 - temperature * 10"}],
})


@pytest.fixture
def sm() -> VariableStateMachine:
    machine = VariableStateMachine(history_limit=5)
    assert machine.apply(DefineSpace(space=SPACE)).ok
    return machine


def test_define_sets_defaults_and_computes_composites(sm: VariableStateMachine) -> None:
    assert sm.values("llm") == {"temperature": 0.7, "batch": 8, "model": "small",
                                "load": pytest.approx(5.6)}
    assert sm.get("llm", "batch").version == 1


def test_set_validates_against_the_type_and_changes_nothing_on_error(
    sm: VariableStateMachine,
) -> None:
    before = sm.snapshot()
    result = sm.apply(SetValues(space="llm", values={"temperature": 3.0}))
    assert not result.ok
    assert result.error is not None
    assert result.error["code"] == "validation_error"
    assert result.error["details"]["variable"] == "temperature"
    assert "outside the range" in result.error["message"]
    assert sm.snapshot() == before


def test_set_checks_the_merged_configuration_against_constraints(
    sm: VariableStateMachine,
) -> None:
    assert sm.apply(SetValues(space="llm", values={"batch": 50})).ok
    result = sm.apply(SetValues(space="llm", values={"temperature": 2.0}))
    assert not result.ok and "batch" in result.error["details"]["variable"]  # type: ignore[index]


def test_versions_increase_and_name_the_last_change(sm: VariableStateMachine) -> None:
    r1 = sm.apply(SetValues(space="llm", values={"batch": 9}))
    r2 = sm.apply(SetValues(space="llm", values={"temperature": 1.0}))
    assert r1.version < r2.version
    assert sm.get("llm", "batch").version == r1.version
    assert sm.get("llm", "temperature").version == r2.version
    assert sm.get("llm", "load").version == r2.version
    assert r2.changed == {"temperature": 1.0, "load": 9.0}


def test_a_set_that_changes_nothing_does_not_bump_the_version(sm: VariableStateMachine) -> None:
    v = sm.version
    result = sm.apply(SetValues(space="llm", values={"batch": 8}))
    assert result.ok and result.changed == {} and sm.version == v


def test_history_is_bounded_and_newest_last(sm: VariableStateMachine) -> None:
    for b in range(10, 30):
        sm.apply(SetValues(space="llm", values={"batch": b}, actor="op", reason="tune"))
    history = sm.history("llm", "batch")
    assert [h.value for h in history] == [25, 26, 27, 28, 29]
    assert [h.version for h in history] == sorted(h.version for h in history)
    assert history[-1].actor == "op" and history[-1].reason == "tune"


def test_frozen_variable_refuses_changes_until_unfrozen(sm: VariableStateMachine) -> None:
    assert sm.apply(Freeze(space="llm", variable="batch")).ok
    result = sm.apply(SetValues(space="llm", values={"batch": 9, "temperature": 0.1}))
    assert not result.ok and result.error["details"]["constraint"] == "frozen"  # type: ignore[index]
    assert sm.values("llm")["temperature"] == 0.7  # the whole command is refused
    assert sm.apply(SetValues(space="llm", values={"batch": 8, "temperature": 0.1})).ok
    assert sm.apply(Unfreeze(space="llm", variable="batch")).ok
    assert sm.apply(SetValues(space="llm", values={"batch": 9})).ok


def test_composites_cannot_be_set_or_frozen(sm: VariableStateMachine) -> None:
    assert not sm.apply(SetValues(space="llm", values={"load": 1.0})).ok
    assert not sm.apply(Freeze(space="llm", variable="load")).ok


def test_compare_and_set_refuses_a_stale_expected_version(sm: VariableStateMachine) -> None:
    v = sm.space_version("llm")
    assert sm.apply(SetValues(space="llm", values={"batch": 2}, expected_version=v)).ok
    stale = sm.apply(SetValues(space="llm", values={"batch": 3}, expected_version=v))
    assert not stale.ok and stale.error["code"] == "conflict"  # type: ignore[index]


def test_a_repeated_command_id_is_applied_once(sm: VariableStateMachine) -> None:
    cmd = SetValues(space="llm", values={"batch": 12}, command_id="c1")
    first = sm.apply(cmd)
    sm.apply(SetValues(space="llm", values={"batch": 13}))
    again = sm.apply(cmd)
    assert again.duplicate and again.version == first.version
    assert sm.values("llm")["batch"] == 13


def test_commands_arrive_as_dicts_or_json_and_garbage_is_an_error_result() -> None:
    sm = VariableStateMachine()
    assert sm.apply({"op": "define_space", "space": SPACE.model_dump()}).ok
    assert sm.apply(json.dumps({"op": "set", "space": "llm", "values": {"batch": 4}})).ok
    assert sm.values("llm")["batch"] == 4
    for garbage in [b"\xff\x00", {"op": "drop_table"}, {"op": "set", "space": "llm"}, b"[]"]:
        result = sm.apply(garbage)
        assert not result.ok and result.error["code"] == "malformed"  # type: ignore[index]
    assert sm.apply(SetValues(space="nope", values={"a": 1})).error["code"] == "not_found"  # type: ignore[index]


def test_define_refuses_unknown_composite_functions() -> None:
    sm = VariableStateMachine(FunctionRegistry(builtins=False))
    result = sm.apply(DefineSpace(space=SPACE))
    assert not result.ok and sm.spaces() == []


def test_redefinition_keeps_values_that_still_validate(sm: VariableStateMachine) -> None:
    sm.apply(SetValues(space="llm", values={"batch": 20, "model": "large"}))
    data = SPACE.model_dump()
    data["variables"] = [v for v in data["variables"] if v["name"] != "model"]
    data["variables"].append({"kind": "integer", "name": "workers", "min": 1, "max": 4})
    result = sm.apply(DefineSpace(space=VariableSpace.parse(data)))
    assert result.ok
    assert sm.values("llm")["batch"] == 20
    assert "model" not in sm.values("llm") and sm.values("llm")["workers"] == 3
    data["variables"][1] = {"kind": "integer", "name": "batch", "min": 1, "max": 10}
    assert not sm.apply(DefineSpace(space=VariableSpace.parse(data))).ok


def _random_commands(seed: int, n: int) -> list[Any]:
    rng = random.Random(seed)
    cmds: list[Any] = [DefineSpace(space=SPACE)]
    for i in range(n):
        kind = rng.random()
        if kind < 0.6:
            cmds.append(SetValues(space="llm", values={
                rng.choice(["temperature", "batch", "model", "load", "ghost"]):
                    rng.choice([rng.uniform(-1, 3), rng.randint(-5, 70), "small", "large"])
            }, command_id=f"c{rng.randint(0, n)}"))
        elif kind < 0.8:
            cmds.append(Freeze(space="llm", variable=rng.choice(["temperature", "batch"])))
        else:
            cmds.append(Unfreeze(space="llm", variable=rng.choice(["temperature", "batch"])))
        if i % 17 == 0:
            cmds.append(b"garbage")
    return cmds


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), cut=st.integers(0, 80))
def test_snapshot_restore_round_trip_then_same_future(seed: int, cut: int) -> None:
    cmds = _random_commands(seed, 80)
    a = VariableStateMachine(history_limit=4)
    for c in cmds[:cut]:
        a.apply(c)
    b = VariableStateMachine(history_limit=4)
    b.restore(a.snapshot())
    assert b.snapshot() == a.snapshot()
    for c in cmds[cut:]:
        assert a.apply(c) == b.apply(c)
    assert a.snapshot() == b.snapshot()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_versions_only_increase_history_bounded_values_always_valid(seed: int) -> None:
    sm = VariableStateMachine(history_limit=3)
    last = 0
    for c in _random_commands(seed, 60):
        result = sm.apply(c)
        assert sm.version >= last
        assert result.duplicate or result.version == sm.version
        last = sm.version
        if "llm" in sm.spaces():
            values = sm.values("llm")
            free = {v.name: values[v.name] for v in SPACE.free_variables}
            assert SPACE.validate_config(free) == values
            for name in values:
                hist = sm.history("llm", name)
                assert 1 <= len(hist) <= 3
                assert hist[-1].value == values[name]
                assert [h.version for h in hist] == sorted({h.version for h in hist})


def test_restore_rejects_a_corrupt_snapshot_and_keeps_state(sm: VariableStateMachine) -> None:
    from broker_agents.core.errors import BrokerError

    before = sm.snapshot()
    with pytest.raises(BrokerError):
        sm.restore(b"{not json")
    assert sm.snapshot() == before
