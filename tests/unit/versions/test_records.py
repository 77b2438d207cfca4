"""Per record family: written by a "newer node" with a field this build does not know
(top level and nested), updated by this build's own code, the field is still there.

A family that dropped it would lose the newer node's data on every rolling upgrade."""

from __future__ import annotations

from typing import Any

import pytest

from broker_agents import codec
from broker_agents.auction.messages import (
    AwardAck,
    BidAnswer,
    build_config,
    parse_request,
)
from broker_agents.auction.records import AuctionRecord, RecordEncoder, Stage
from broker_agents.coord.barrier import BarrierRecord
from broker_agents.coord.lease import LeaseRecord
from broker_agents.core import auction as core
from broker_agents.core import budget
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.features import FeatureFlag
from broker_agents.core.pbft.messages import Request, parse_message, signable
from broker_agents.core.registry.reaper import restorations
from broker_agents.core.registry.record import AgentRecord, NodeRecord
from broker_agents.core.registry.validation import validate_agent
from broker_agents.core.reputation import Reputation, decay
from broker_agents.core.versioning import SCHEMA_VERSION
from broker_agents.variables.models import VariableChange

NEW = {"added_in_n_plus_1": {"any": ["shape", 1]}}


def _newer(model: Any, data: dict[str, Any], as_json: bool = False) -> Any:
    """``data`` plus a newer node's field, through the wire, read by this build."""
    wire = codec.encode({**data, **NEW}, as_json=as_json)
    return model.model_validate(codec.decode(wire))


def _kept(obj: Any, as_json: bool = False) -> dict[str, Any]:
    back: dict[str, Any] = codec.decode(codec.encode(obj, as_json=as_json))
    assert back["added_in_n_plus_1"] == NEW["added_in_n_plus_1"]
    assert back["v"] == SCHEMA_VERSION
    return back


@pytest.mark.parametrize("as_json", [False, True])
def test_agent_record_survives_a_restore(as_json: bool) -> None:
    raw = {"agent_id": "a1", "name": "alpha", "node_id": "n1", "health": "unhealthy",
           "reaped": {"by": "n2", "at": 1.0, "prior_health": "healthy", "why": "silent"}}
    record = _newer(AgentRecord, raw, as_json)
    (restore,) = restorations("n1", [(record, 3)])
    back = _kept(restore.record, as_json)
    assert back["health"] == "healthy" and back["reaped"] is None
    # and through the registry's own validation of an advertised record
    assert validate_agent({**raw, **NEW}).model_dump()["added_in_n_plus_1"]


def test_agent_record_nested_part_keeps_its_unknown_field() -> None:
    raw = {"agent_id": "a1", "name": "alpha", "node_id": "n1",
           "reaped": {"by": "n2", "at": 1.0, "prior_health": "healthy", "why": "silent"}}
    record = _newer(AgentRecord, raw).model_copy(update={"last_heartbeat": 9.0})
    assert codec.decode(codec.encode(record))["reaped"]["why"] == "silent"


def test_node_record_survives_a_heartbeat_update_and_announces() -> None:
    raw = {"node_id": "n1", "last_heartbeat": 1.0, "version": "9.9", "schema": SCHEMA_VERSION,
           "features": ["versioned_records", "demo-next"]}
    record = _newer(NodeRecord, raw).model_copy(update={"beat": 7})
    back = _kept(record)
    assert back["schema"] == SCHEMA_VERSION and back["features"] == raw["features"]
    assert back["beat"] == 7


def test_node_record_written_before_announcements_reads_as_schema_1() -> None:
    record = NodeRecord.model_validate({"node_id": "n1", "last_heartbeat": 1.0})
    assert (record.v, record.schema_version, record.features, record.version) == (
        1, 1, (), None)


def test_account_survives_deposit_reserve_and_debit() -> None:
    raw = budget.open_account("alice", 10.0).model_dump(mode="json")
    raw["holds"] = {"a-0": {"amount": 1.0, "hold_note": "newer"}}
    account = _newer(budget.Account, raw)
    account = budget.deposit(account, "op-1", 5.0)
    account = budget.reserve(account, "a-1", 2.0)
    account = budget.debit(account, "a-1", 2.0)
    back = _kept(account)
    assert back["holds"]["a-0"]["hold_note"] == "newer"
    assert back["balance"] == pytest.approx(13.0)
    assert "reserved" not in budget.Account.model_validate(back).model_extra  # derived


def test_reputation_survives_decay() -> None:
    raw = {"agent": "bob", "score": 0.9, "updated_at": 0,
           "entries": [{"value": 1.0, "weight": 1.0, "tick": 0, "task_id": "t",
                        "entry_note": "newer"}]}
    record = decay(_newer(Reputation, raw), now=5000)
    back = _kept(record)
    assert back["entries"][0]["entry_note"] == "newer" and back["version"] == 1


def test_auction_record_survives_a_stage_change_through_the_encoder() -> None:
    request = parse_request({"type": "vickrey", "participants": ["b0", "b1"]})
    state, _ = core.start(build_config(request, "a-1"), 0)
    raw = AuctionRecord(auction_id="a-1", request=request, state=state, owner="x",
                        heartbeat_ms=0, started_ms=0).model_dump(mode="json")
    raw["request"]["option_of_n_plus_1"] = True
    raw["state"]["config"]["config_of_n_plus_1"] = 2
    record = _newer(AuctionRecord, raw)
    encoder = RecordEncoder()
    for stage in (Stage.RESERVED, Stage.SETTLED):
        record = record.model_copy(update={"stage": stage, "heartbeat_ms": 5})
        data = encoder.encode(record)
        assert data == codec.encode(record)
        back = codec.decode(data)
        assert back["added_in_n_plus_1"] == NEW["added_in_n_plus_1"]
        assert back["request"]["option_of_n_plus_1"] is True
        assert back["state"]["config"]["config_of_n_plus_1"] == 2


def test_lease_and_barrier_records_survive_an_update() -> None:
    lease = _newer(LeaseRecord, {"holder": "a", "token": 3}).model_copy(
        update={"token": 4, "expires_at_ms": 10})
    assert _kept(lease)["token"] == 4
    barrier = _newer(BarrierRecord, {"participants": ["a", "b"], "created_ms": 0,
                                     "deadline_ms": 10})
    assert _kept(barrier.model_copy(update={"arrived": ["a"]}))["arrived"] == ["a"]


def test_feature_flag_record_survives_a_disable() -> None:
    flag = _newer(FeatureFlag, {"name": "demo-next", "requested": True})
    assert _kept(flag.model_copy(update={"requested": False}))["requested"] is False


def test_messages_keep_a_newer_peers_fields() -> None:
    answer = _newer(BidAnswer, {"bids": [{"auction_id": "a", "msg_id": "m", "bidder": "b",
                                          "amount": 1.0, "bid_note": "newer"}]})
    assert _kept(answer)["bids"][0]["bid_note"] == "newer"
    ack = _newer(AwardAck, {"auction_id": "a", "bidder": "b"})
    assert _kept(ack)["bidder"] == "b"
    change = _newer(VariableChange, {"space": "s", "version": 1, "values": {}, "op": "set",
                                     "sm_version": 1})
    assert _kept(change)["op"] == "set"


def test_a_pbft_signature_still_covers_a_newer_replicas_field() -> None:
    raw = {"type": "request", "client": "c", "request_id": "r", "operation": "x", **NEW}
    msg = parse_message(codec.decode(codec.encode(raw)))
    assert isinstance(msg, Request)
    assert b"added_in_n_plus_1" in signable(msg)  # relayed as signed, verified as signed


@pytest.mark.parametrize("model,data", [
    (AgentRecord, {"agent_id": "a1", "name": "x", "node_id": "n1"}),
    (NodeRecord, {"node_id": "n1", "last_heartbeat": 1.0}),
    (budget.Account, {"owner": "alice"}),
    (Reputation, {"agent": "bob"}),
    (LeaseRecord, {}),
    (FeatureFlag, {"name": "f"}),
])
def test_every_family_refuses_a_too_new_version(model: Any, data: dict[str, Any]) -> None:
    with pytest.raises(Exception) as info:
        model.model_validate({**data, "v": SCHEMA_VERSION + 1})
    assert "unsupported_version" in str(info.value)


def test_registry_validation_names_the_version_refusal() -> None:
    with pytest.raises(BrokerError) as info:
        validate_agent({"agent_id": "a1", "name": "x", "node_id": "n1", "v": 7})
    assert info.value.code is ErrorCode.UNSUPPORTED_VERSION
