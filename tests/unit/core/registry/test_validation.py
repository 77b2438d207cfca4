"""Record validation: errors name the fields, the values and what is allowed."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.registry.record import AgentRecord, Health, Lifecycle
from broker_agents.core.registry.validation import validate_agent, validate_node
from tests.unit.core.registry.strategies import RELAXED

GOOD: dict[str, Any] = {"agent_id": "a1", "name": "alpha", "node_id": "n1"}


def _error(data: Any) -> BrokerError:
    with pytest.raises(BrokerError) as info:
        validate_agent(data)
    assert info.value.code == ErrorCode.VALIDATION
    return info.value


def test_minimal_record_gets_defaults() -> None:
    record = validate_agent(GOOD)
    assert record.health is Health.HEALTHY and record.state is Lifecycle.STARTING
    assert record.capabilities == [] and record.resources == {} and record.public_key is None


def test_missing_required_fields_are_listed_together() -> None:
    err = _error({"capabilities": ["x"]})
    assert err.details["missing"] == ["agent_id", "name", "node_id"]
    assert "missing required fields: agent_id, name, node_id" in err.message


def test_null_required_field_counts_as_missing() -> None:
    err = _error({**GOOD, "node_id": None})
    assert err.details["missing"] == ["node_id"]
    assert err.details["errors"] == []


def test_invalid_health_names_value_and_allowed_values() -> None:
    err = _error({**GOOD, "health": "sick"})
    assert err.details["field"] == "health"
    assert err.details["value"] == "sick"
    assert err.details["allowed"] == ["healthy", "degraded", "unhealthy"]
    assert "'sick'" in err.message and "healthy, degraded, unhealthy" in err.message


def test_invalid_state_names_allowed_states() -> None:
    err = _error({**GOOD, "state": "zombie"})
    assert err.details["allowed"] == [s.value for s in Lifecycle]


def test_missing_and_other_errors_are_reported_together() -> None:
    err = _error({"agent_id": "a b", "name": "n", "health": "ok"})
    assert err.details["missing"] == ["node_id"]
    fields = {p["field"] for p in err.details["errors"]}
    assert fields == {"agent_id", "health"}


@pytest.mark.parametrize("resources", [{"m": "lots"}, {"m": True}, {"m": math.nan},
                                       {"m": math.inf}, {"a.b": 1.0}, {"": 1.0}])
def test_resources_must_be_finite_numbers_with_plain_names(resources: dict[str, Any]) -> None:
    err = _error({**GOOD, "resources": resources})
    assert err.details["field"] == "resources"


def test_capabilities_are_tokens_and_deduplicated() -> None:
    assert validate_agent({**GOOD, "capabilities": ["a", "b", "a"]}).capabilities == ["a", "b"]
    err = _error({**GOOD, "capabilities": ["has space"]})
    assert err.details["field"].startswith("capabilities")


def test_unknown_fields_are_kept_and_newer_versions_refused() -> None:
    """Records are versioned (core.versioning): a newer node's field survives, a schema
    this build cannot read is refused with ``unsupported_version``."""
    record = validate_agent({**GOOD, "colour": "blue"})
    assert record.model_dump()["colour"] == "blue"
    with pytest.raises(BrokerError) as info:
        validate_agent({**GOOD, "v": 99})
    err = info.value
    assert err.code is ErrorCode.UNSUPPORTED_VERSION
    assert err.details == {"field": "v", "found": 99, "readable": 1}


def test_non_mapping_is_rejected() -> None:
    assert "must be an object" in _error(["a"]).message


def test_node_record_requires_node_id_and_heartbeat() -> None:
    with pytest.raises(BrokerError) as info:
        validate_node({})
    assert info.value.details["missing"] == ["node_id", "last_heartbeat"]


_token = st.text("abcXYZ019_-", min_size=1, max_size=8)
_any = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=5),
                 st.booleans(), st.lists(st.integers(), max_size=2))


@RELAXED
@given(st.dictionaries(st.sampled_from(
    ["agent_id", "name", "node_id", "health", "state", "capabilities", "resources",
     "registered_at", "public_key", "bogus"]), _any, max_size=8))
def test_validator_accepts_or_raises_validation_error_never_anything_else(
    data: dict[str, Any],
) -> None:
    try:
        record = validate_agent(data)
    except BrokerError as err:
        assert err.code == ErrorCode.VALIDATION
        missing = [k for k in ("agent_id", "name", "node_id") if data.get(k) is None]
        assert err.details.get("missing", []) == missing
        assert err.message
    else:
        assert isinstance(record, AgentRecord)


@RELAXED
@given(_token, _token, _token, st.sampled_from(list(Health)),
       st.dictionaries(_token, st.floats(allow_nan=False, allow_infinity=False), max_size=3))
def test_valid_records_round_trip_through_their_json_form(
    agent_id: str, name: str, node_id: str, health: Health, resources: dict[str, float],
) -> None:
    record = validate_agent({"agent_id": agent_id, "name": name, "node_id": node_id,
                             "health": health.value, "resources": resources})
    assert validate_agent(record.model_dump(mode="json")) == record
