"""The auto selector says what it picked and why."""

from __future__ import annotations

import pytest

from broker_agents.core.coord.models import AutoRequest, FaultModel
from broker_agents.core.coord.selector import select_protocol
from broker_agents.core.errors import BrokerError


def auto(n: int, **kw: object) -> AutoRequest:
    return AutoRequest(proposal="p", participants=[f"a{i}" for i in range(n)], **kw)  # type: ignore[arg-type]


def test_byzantine_picks_pbft_with_f() -> None:
    s = select_protocol(auto(7, fault_model=FaultModel.BYZANTINE))
    assert s.protocol == "pbft" and s.params["f"] == 2 and "byzantine" in s.reason


def test_byzantine_with_three_is_too_few() -> None:
    with pytest.raises(BrokerError) as ei:
        select_protocol(auto(3, fault_model=FaultModel.BYZANTINE))
    assert ei.value.code == "too_few_participants"
    assert ei.value.details == {"needed": 4, "have": 3, "f": 1}


def test_small_crash_group_votes_flat() -> None:
    s = select_protocol(auto(10))
    assert s.protocol == "vote" and "10 participants" in s.reason


def test_large_crash_group_goes_hierarchical_unless_budget_is_tight() -> None:
    assert select_protocol(auto(200)).protocol == "hierarchical"
    tight = select_protocol(auto(200, latency_budget_ms=1))
    assert tight.protocol == "vote" and "budget" in tight.reason


def test_capability_selection_needs_group_size() -> None:
    with pytest.raises(ValueError, match="group_size"):
        AutoRequest(proposal="p", capability="x")
    assert select_protocol(AutoRequest(proposal="p", capability="x", group_size=80)).protocol \
        == "hierarchical"
