"""The cluster-wide feature decision: requested AND announced by every registered node."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core import features
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.features import (
    BASE_FEATURE,
    check_enable,
    effective,
    lacking,
    register_feature,
    states,
    supported_features,
)

names = st.sampled_from(["a", "b", "c", "demo-next"])
clusters = st.dictionaries(st.sampled_from(["n1", "n2", "n3"]),
                           st.frozensets(names), max_size=3)


@given(name=names, requested=st.booleans(), announced=clusters)
def test_effective_exactly_when_requested_and_every_node_announces(
        name: str, requested: bool, announced: dict[str, frozenset[str]]) -> None:
    want = requested and bool(announced) and all(name in f for f in announced.values())
    assert effective(name, requested, announced) is want


@given(name=names, announced=clusters)
def test_a_node_without_the_feature_turns_it_off_the_moment_it_registers(
        name: str, announced: dict[str, frozenset[str]]) -> None:
    rolled_back = {**announced, "n9": frozenset()}
    assert effective(name, True, rolled_back) is False
    assert "n9" in lacking(name, rolled_back)


def test_enable_is_refused_naming_the_nodes_that_lack_it() -> None:
    with pytest.raises(BrokerError) as info:
        check_enable("demo-next", {"n1": {"demo-next"}, "n2": set(), "n3": {"x"}})
    err = info.value
    assert err.code is ErrorCode.FEATURE_UNSUPPORTED
    assert err.details["lacking"] == ["n2", "n3"]
    assert "n2" in err.message and "n3" in err.message
    check_enable("demo-next", {"n1": {"demo-next"}, "n2": {"demo-next"}})


def test_enable_is_refused_with_no_node_registered() -> None:
    with pytest.raises(BrokerError) as info:
        check_enable("demo-next", {})
    assert info.value.code is ErrorCode.FEATURE_UNSUPPORTED


@pytest.mark.parametrize("bad", ["", "has space", "a.b", "x" * 65, "*", ">"])
def test_a_feature_name_is_a_token(bad: str) -> None:
    with pytest.raises(BrokerError) as info:
        register_feature(bad)
    assert info.value.code is ErrorCode.VALIDATION


def test_a_build_extends_its_supported_set() -> None:
    assert BASE_FEATURE in supported_features()
    try:
        register_feature("unit-test-feature")
        assert "unit-test-feature" in supported_features()
        assert list(supported_features()) == sorted(supported_features())
    finally:
        features.SUPPORTED_FEATURES.discard("unit-test-feature")


def test_states_list_requested_and_announced_features() -> None:
    rows = {s.name: s for s in states({"x": True, "y": False},
                                      {"n1": {"x", "z"}, "n2": {"x"}})}
    assert set(rows) == {"x", "y", "z"}
    assert rows["x"].effective and rows["x"].supported_by == ["n1", "n2"]
    assert not rows["y"].effective and rows["y"].lacking == ["n1", "n2"]
    assert not rows["z"].requested and rows["z"].lacking == ["n2"]
