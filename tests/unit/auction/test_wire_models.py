"""Auction request validation (errors name the field), records, mirror and valuations."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from broker_agents.auction.bidder import BidderAgent, build_strategy
from broker_agents.auction.messages import allocation_of, build_config, parse_request
from broker_agents.auction.records import AuctionRecord, Stage
from broker_agents.core import auction as core
from broker_agents.core.auction.strategy import BidderView, decide
from broker_agents.core.errors import BrokerError
from broker_agents.discovery import from_registry
from broker_agents.kvmirror import KvMirror


def test_a_valid_request_maps_milliseconds_to_core_ticks() -> None:
    req = parse_request({"type": "english", "capability": "bidder", "round_ms": 250,
                         "duration_ms": 900, "increment": 2.5, "reserve": 3})
    cfg = build_config(req, "a-1")
    assert (cfg.round_ticks, cfg.duration_ticks, cfg.increment, cfg.reserve) == (
        250, 900, 2.5, 3.0)
    assert cfg.seller is None  # the requester, bound by the auctioneer
    assert build_config(req.model_copy(update={"seller": "shop"}), "a-1").seller == "shop"


@pytest.mark.parametrize(("payload", "field"), [
    ({"capability": "x"}, "type"),
    ({"type": "vickrey"}, "capability"),
    ({"type": "vickrey", "capability": "x", "duration_ms": 0}, "duration_ms"),
    ({"type": "vickrey", "capability": "x", "min_reputation": 1.5}, "min_reputation"),
    ({"type": "vickrey", "participants": ["ok", "not ok"]}, "participants"),
    ({"type": "vickrey", "capability": "x", "auction_id": "a.b"}, "auction_id"),
    ({"type": "vickrey", "capability": "x", "seller": "a.b"}, "seller"),
])
def test_invalid_requests_name_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(BrokerError) as err:
        parse_request(payload)
    assert err.value.code == "validation_error"
    assert err.value.details["field"] == field


@pytest.mark.parametrize(("payload", "field"), [
    ({"type": "dutch", "capability": "x"}, "start_price"),
    ({"type": "dutch", "capability": "x", "start_price": 1, "reserve": 5}, "start_price"),
    ({"type": "combinatorial", "capability": "x"}, "items"),
])
def test_mechanism_specific_errors_name_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(BrokerError) as err:
        build_config(parse_request(payload), "a-1")
    assert err.value.details["field"] == field


@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers()),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)))
@example({"v": 0})  # a schema version nobody writes: its own code, the field named
def test_any_junk_is_refused_with_a_structured_error(payload: Any) -> None:
    with pytest.raises(BrokerError) as err:
        parse_request(payload)
    assert err.value.code in ("malformed", "validation_error", "unsupported_version")
    assert "field" in err.value.details


def _closed_record(bids: list[tuple[str, float, tuple[str, ...]]]) -> AuctionRecord:
    req = parse_request({"type": "combinatorial", "participants": [b for b, _, _ in bids],
                         "items": ["cpu", "mem", "disk"]})
    state, _ = core.start(build_config(req, "a-1"), 0)
    for i, (who, amount, items) in enumerate(bids):
        bid = core.Bid(auction_id="a-1", msg_id=f"m{i}", bidder=who, amount=amount,
                       items=items)
        state, _ = core.step(state, core.BidReceived(bid, 1))
    state, _ = core.step(state, core.Close(2))
    return AuctionRecord(auction_id="a-1", request=req, participants=(), state=state,
                         stage=Stage.CLOSED, owner="x", heartbeat_ms=0, started_ms=0)


def test_payments_sum_each_winners_awards_from_the_stored_outcome() -> None:
    record = _closed_record([("b1", 5.0, ("cpu",)), ("b1", 7.0, ("mem",)),
                             ("b2", 3.0, ("disk",)), ("b3", 4.0, ("cpu",))])
    assert record.payments() == {"b1": 12.0, "b2": 3.0}
    assert record.outcome is not None
    alloc, prices = allocation_of(record.outcome)
    assert sorted(alloc["b1"]) == ["cpu", "mem"] and prices == {"b1": 12.0, "b2": 3.0}


def test_the_lease_expires_only_for_unfinished_records() -> None:
    record = _closed_record([])
    assert record.lease_expired(5001, 5000)
    assert not record.lease_expired(5000, 5000)
    done = record.model_copy(update={"stage": Stage.SETTLED})
    assert not done.lease_expired(10**9, 5000)


async def test_mirror_ignores_stale_and_repeated_entries() -> None:
    mirror = KvMirror(None, "b")  # type: ignore[arg-type]
    mirror.apply_entry("k", b"v2", 7)
    mirror.apply_entry("k", b"v1", 5)  # an older revision delivered late
    mirror.apply_entry("k", b"v2", 7)  # a redelivery
    assert mirror.get("k") == (b"v2", 7) and mirror.applied_revision == 7
    mirror.apply_entry("k", None, 9)
    assert mirror.get("k") is None and mirror.applied_revision == 9


def test_bidder_config_builds_flat_additive_bundle_and_capped_strategies() -> None:
    cfg = build_config(parse_request({"type": "vickrey", "capability": "x", "item": "gpu"}),
                       "a")
    flat = decide(build_strategy({"value": 9.0}), BidderView(config=cfg, me="b"))
    assert [i.amount for i in flat] == [9.0]
    capped = decide(build_strategy({"value": 9.0, "strategy": "budget_capped", "budget": 4}),
                    BidderView(config=cfg, me="b"))
    assert [i.amount for i in capped] == [4.0]
    combo = build_config(parse_request({"type": "combinatorial", "capability": "x",
                                        "items": ["cpu", "mem"]}), "a")
    bundles = decide(build_strategy({"bundles": [{"items": ["cpu", "mem"], "value": 20}]}),
                     BidderView(config=combo, me="b"))
    assert [(i.items, i.amount) for i in bundles] == [(("cpu", "mem"), 20.0)]
    assert BidderAgent("b", capability="gpu").all_capabilities() == ["gpu"]
    assert BidderAgent("b").all_capabilities() == ["bidder"]


class _Rec:
    def __init__(self, agent_id: str, health: str = "healthy") -> None:
        self.agent_id = agent_id
        self.health = health


class _SyncRegistry:
    def find_by_capability(self, cap: str) -> list[_Rec]:
        return [_Rec("b2"), _Rec("b1"), _Rec("sick", "unhealthy")] if cap == "bid" else []


class _AsyncRegistry:
    async def find_by_capability(self, cap: str) -> list[dict[str, str]]:
        return [{"agent_id": "z"}, {"agent_id": "a"}]


async def test_registry_lookup_accepts_sync_or_async_facades_and_skips_unhealthy() -> None:
    assert await from_registry(_SyncRegistry(), "bid") == ["b1", "b2"]
    assert await from_registry(_AsyncRegistry(), "bid") == ["a", "z"]
