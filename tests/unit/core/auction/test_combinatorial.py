"""Combinatorial auction: bundle bids, bid-time item checks, pay-as-bid and VCG."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core import auction as A
from tests.unit.core.auction.helpers import accepted, bid, closed, config, rejections

ITEMS = ("cpu", "memory", "storage")


def run(bids: list[tuple[str, float, tuple[str, ...]]], **kw: Any) -> A.Outcome:
    state, _ = A.start(config("combinatorial", items=ITEMS, **kw), 0)
    for i, (who, amount, items) in enumerate(bids):
        state, effects = A.step(state, A.BidReceived(bid(who, amount, f"m{i}", *items), 1))
        assert accepted(effects), effects
    state, effects = A.step(state, A.Tick(1000))
    [outcome] = closed(effects)
    return outcome


def test_higher_revenue_bundle_wins_when_bundles_overlap() -> None:
    outcome = run([("bidder1", 20.0, ("cpu", "memory")), ("bidder2", 25.0, ("cpu", "storage"))])
    assert outcome.winners == ("bidder2",)
    assert [(a.items, a.price) for a in outcome.awards] == [(("cpu", "storage"), 25.0)]
    assert (outcome.price, outcome.exact, outcome.tie_broken) == (25.0, True, False)


def test_disjoint_bundles_both_win() -> None:
    outcome = run([("b1", 10.0, ("cpu",)), ("b2", 5.0, ("memory",)),
                   ("b3", 12.0, ("cpu", "memory"))])
    assert set(outcome.winners) == {"b1", "b2"} and outcome.price == 15.0
    assert outcome.winner is None


def test_item_not_on_offer_is_rejected_at_bid_time_with_the_item_named() -> None:
    state, _ = A.start(config("combinatorial", items=ITEMS), 0)
    state, effects = A.step(state, A.BidReceived(bid("b1", 30.0, "m1", "cpu", "gpu"), 1))
    [rejection] = [e for e in effects if isinstance(e, A.BidRejected)]
    assert rejection.reason is A.RejectReason.UNKNOWN_ITEM and "gpu" in rejection.message
    assert rejection.to_error_payload()["error"]["code"] == "validation_error"  # type: ignore[index]
    state, effects = A.step(state, A.BidReceived(bid("b2", 1.0, "m2", "cpu"), 1))
    state, effects = A.step(state, A.Close(2))
    assert closed(effects)[0].winners == ("b2",)


def test_empty_or_zero_bundles_are_rejected() -> None:
    state, _ = A.start(config("combinatorial", items=ITEMS), 0)
    state, effects = A.step(state, A.BidReceived(bid("b1", 3.0, "m1"), 1))
    assert rejections(effects) == [A.RejectReason.INVALID_BUNDLE]
    state, effects = A.step(state, A.BidReceived(bid("b1", 0.0, "m2", "cpu"), 1))
    assert rejections(effects) == [A.RejectReason.BELOW_MINIMUM]


def test_equal_revenue_allocations_go_to_the_earliest_bid() -> None:
    outcome = run([("b2", 10.0, ("cpu",)), ("b1", 10.0, ("cpu",))])
    assert (outcome.winners, outcome.tie_broken) == (("b2",), True)


def test_vcg_charges_each_winner_its_externality() -> None:
    bids = [("b1", 10.0, ("cpu",)), ("b2", 8.0, ("memory",)), ("b3", 15.0, ("cpu", "memory"))]
    outcome = run(bids, payment=A.PaymentRule.VCG)
    prices = {a.bidder: a.price for a in outcome.awards}
    # without b1 the best is 15 (b3); the others earn 8 now -> b1 pays 7; b2 pays 15 - 10 = 5
    assert prices == {"b1": 7.0, "b2": 5.0}


def test_vcg_lone_winner_pays_what_the_runner_up_would_have_earned() -> None:
    outcome = run([("bidder1", 20.0, ("cpu", "memory")), ("bidder2", 25.0, ("cpu", "storage"))],
                  payment=A.PaymentRule.VCG)
    assert (outcome.winner, outcome.price) == ("bidder2", 20.0)


def test_combinatorial_config_needs_unique_items() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="items"):
        config("combinatorial")
    with pytest.raises(ValidationError, match="unique"):
        config("combinatorial", items=("cpu", "cpu"))


bundle_scripts = st.lists(
    st.tuples(st.integers(0, 3), st.sets(st.sampled_from(ITEMS), min_size=1),
              st.integers(1, 40).map(float)),
    max_size=10,
)


@settings(max_examples=150)
@given(bundle_scripts, st.sampled_from(list(A.PaymentRule)))
def test_outcome_never_allocates_an_item_twice_and_prices_stay_within_bids(
    script: list[tuple[int, set[str], float]], payment: A.PaymentRule
) -> None:
    state, _ = A.start(config("combinatorial", items=ITEMS, payment=payment), 0)
    for i, (who, items, amount) in enumerate(script):
        state, _ = A.step(state, A.BidReceived(bid(f"b{who}", amount, f"m{i}", *sorted(items)), 1))
    state, effects = A.step(state, A.Close(2))
    [outcome] = closed(effects)
    allocated = [item for award in outcome.awards for item in award.items]
    assert len(allocated) == len(set(allocated))
    assert all(0.0 <= a.price <= a.bid + 1e-9 for a in outcome.awards)
    assert outcome.num_bids == len(script)
