"""Auction acts bound to principals (pure rules): who may sell, what a winner may agree
to pay, and what a sealed auction tells a participant before the close."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core import auction as A
from broker_agents.core.auction.acts import (
    HOUSE,
    REQUESTER,
    OwnBid,
    ack_refusal,
    bid_receipt,
    seller_of,
)
from broker_agents.core.identity import Principal, Role, Unauthorized
from tests.unit.core.auction.helpers import bid, config

names = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True)
amounts = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)


def principal(name: str, role: Role, acting_for: str | None = None) -> Principal:
    return Principal(name, role, "UKEY", acting_for)


@given(names, st.sampled_from([Role.CLIENT, Role.OBSERVER]), st.one_of(st.just(REQUESTER),
                                                                        names))
def test_a_client_sells_only_as_itself(me: str, role: Role, claimed: str) -> None:
    who = principal(me, role)
    if claimed in (REQUESTER, me):
        assert seller_of(who, claimed, required=True) == me
    else:
        with pytest.raises(Unauthorized) as err:
            seller_of(who, claimed, required=True)
        assert err.value.reason == "identity_mismatch"


@given(st.sampled_from([Role.NODE, Role.ADMIN]), names, st.one_of(st.none(), names))
def test_nodes_and_admins_name_the_seller_or_sell_for_the_house(
        role: Role, claimed: str, acting_for: str | None) -> None:
    who = principal("op", role, acting_for)
    if acting_for is None:
        assert seller_of(who, REQUESTER, required=True) == HOUSE
        assert seller_of(who, claimed, required=True) == claimed
    else:  # speaking for someone: that one sells
        assert seller_of(who, REQUESTER, required=True) == acting_for


def test_an_unsigned_request_names_no_seller_when_signatures_are_required() -> None:
    with pytest.raises(Unauthorized) as err:
        seller_of(None, REQUESTER, required=True)
    assert err.value.reason == "unsigned"
    assert seller_of(None, REQUESTER, required=False) == HOUSE  # --insecure, as before
    assert seller_of(None, "shop", required=False) == "shop"


def _award(msg_id: str, price: float, bidder: str = "me") -> A.Award:
    return A.Award(bidder=bidder, items=("item",), bid=price, price=price, msg_id=msg_id)


@given(st.dictionaries(names, amounts, max_size=4), st.lists(st.tuples(names, amounts),
                                                              max_size=4), amounts)
def test_a_bidder_never_agrees_to_more_than_it_bid(own: dict[str, float],
                                                   awarded: list[tuple[str, float]],
                                                   total: float) -> None:
    bids = {m: OwnBid(a) for m, a in own.items()}
    awards = [_award(m, p) for m, p in awarded]
    refusal = ack_refusal(bids, "a1", awards, total, "me")
    if refusal is None:
        assert awards and all(m in own and p <= own[m] + 1e-9 for m, p in awarded)
        assert total <= sum(own[m] for m, _ in awarded) + 1e-9


def test_a_bidder_accepts_its_own_winning_bid_and_declines_the_rest() -> None:
    own = {"b-1": OwnBid(10.0)}
    assert ack_refusal(own, "a1", [_award("b-1", 8.0)], 8.0, "me") is None
    assert "did not bid" in (ack_refusal(None, "a1", [_award("b-1", 8.0)], 8.0, "me") or "")
    assert "exceeds" in (ack_refusal(own, "a1", [_award("b-1", 95.0)], 95.0, "me") or "")
    assert "not one of" in (ack_refusal(own, "a1", [_award("x", 1.0)], 1.0, "me") or "")
    assert "not one of" in (ack_refusal(own, "a1", [_award("b-1", 1.0, "you")], 1.0, "me")
                            or "")
    assert "exceeds" in (ack_refusal(own, "a1", [_award("b-1", 8.0)], 50.0, "me") or "")
    assert "exceeds" in (ack_refusal(own, "a1", [_award("b-1", 8.0)], float("nan"), "me")
                         or "")
    assert ack_refusal(own, "a1", [], 0.0, "me") is not None


@pytest.mark.parametrize("mechanism", ["first_price", "vickrey"])
def test_a_sealed_receipt_does_not_count_the_bids_before_it(mechanism: str) -> None:
    state, _ = A.start(config(mechanism), 0)
    state, _ = A.step(state, A.BidReceived(bid("b1", 5.0), 1))
    _, effects = A.step(state, A.BidReceived(bid("b2", 6.0), 2))
    accepted = next(e for e in effects if isinstance(e, A.BidAccepted))
    assert accepted.seq == 1
    assert "seq" not in bid_receipt(state.config.mechanism, accepted)
    assert bid_receipt(A.Mechanism.ENGLISH, accepted)["seq"] == 1  # open cry: public


@given(st.lists(st.tuples(st.sampled_from(["alice", "bob", "carol"]),
                          st.sampled_from(["m1", "m2", "m3"])), max_size=12))
def test_message_ids_are_per_bidder_so_nobody_takes_or_probes_anothers(
        sends: list[tuple[str, str]]) -> None:
    """A bid is a duplicate only of an earlier message of the same bidder."""
    state, _ = A.start(config("first_price"), 0)
    earlier: set[tuple[str, str]] = set()
    for bidder, msg_id in sends:
        state, effects = A.step(state, A.BidReceived(bid(bidder, 5.0, msg_id), 1))
        reasons = [e.reason for e in effects if isinstance(e, A.BidRejected)]
        assert (A.RejectReason.DUPLICATE in reasons) == ((bidder, msg_id) in earlier)
        earlier.add((bidder, msg_id))
