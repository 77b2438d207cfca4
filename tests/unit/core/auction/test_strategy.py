"""Strategy hooks: truthful and budget-capped bidders for every mechanism."""

from __future__ import annotations

from broker_agents.core import auction as A
from broker_agents.core.auction import dutch, english
from broker_agents.core.auction.strategy import (
    AdditiveValuation,
    BidderView,
    BudgetCapped,
    Intent,
    TableValuation,
    Truthful,
    decide,
)
from tests.unit.core.auction.helpers import closed, config

GPU = TableValuation({frozenset({"item"}): 40.0})


def view(cfg: A.AuctionConfig, **kw: object) -> BidderView:
    return BidderView(config=cfg, me="me", **kw)  # type: ignore[arg-type]


def test_truthful_sealed_bid_is_the_valuation_and_capped_is_the_budget() -> None:
    cfg = config("vickrey", reserve=5.0)
    assert decide(Truthful(GPU), view(cfg)) == [Intent(amount=40.0)]
    assert decide(BudgetCapped(GPU, 25.0), view(cfg)) == [Intent(amount=25.0)]
    assert decide(BudgetCapped(GPU, 25.0), view(cfg, available=10.0)) == [Intent(amount=10.0)]
    assert decide(BudgetCapped(GPU, 4.0), view(cfg)) == []  # cannot reach the reserve


def test_uninterested_bidder_stays_out() -> None:
    assert decide(Truthful(TableValuation({})), view(config("first_price"))) == []


def test_english_raises_to_min_bid_only_within_limit_and_not_against_itself() -> None:
    cfg = config("english", start_price=10.0)
    assert decide(Truthful(GPU), view(cfg, min_bid=30.0)) == [Intent(amount=30.0)]
    assert decide(Truthful(GPU), view(cfg, min_bid=41.0)) == []
    assert decide(Truthful(GPU), view(cfg, min_bid=30.0, standing_bidder="me")) == []
    assert decide(BudgetCapped(GPU, 20.0), view(cfg, min_bid=30.0)) == []


def test_dutch_accepts_once_price_is_within_limit() -> None:
    cfg = config("dutch", start_price=100.0, decrement=10.0)
    assert decide(Truthful(GPU), view(cfg, price=50.0)) == []
    assert decide(Truthful(GPU), view(cfg, price=40.0)) == [Intent(amount=40.0)]
    assert decide(BudgetCapped(GPU, 30.0), view(cfg, price=40.0)) == []


def test_combinatorial_budget_cap_keeps_or_bids_within_budget() -> None:
    cfg = config("combinatorial", items=("cpu", "memory", "storage"))
    valuation = AdditiveValuation({"cpu": 10.0, "memory": 6.0, "gpu": 50.0, "storage": 3.0})
    truthful = decide(Truthful(valuation), view(cfg))
    assert sorted(truthful, key=lambda i: i.items) == [
        Intent(items=("cpu",), amount=10.0), Intent(items=("memory",), amount=6.0),
        Intent(items=("storage",), amount=3.0)]
    capped = decide(BudgetCapped(valuation, 14.0), view(cfg))
    assert capped == [Intent(items=("cpu",), amount=10.0), Intent(items=("storage",), amount=3.0)]


def _play(mechanism: str, strategies: dict[str, Truthful], **kw: object) -> A.Outcome:
    """Drive an auction by asking the strategies, the way a bidder agent would."""
    cfg = config(mechanism, **kw)  # type: ignore[arg-type]
    state, effects = A.start(cfg, 0)
    for now in range(200):
        for me, strategy in strategies.items():
            bv = BidderView(config=cfg, me=me, price=dutch.clock_price(state),
                            min_bid=english.min_bid(state),
                            standing_bidder=state.standing.bidder if state.standing else None)
            for k, intent in enumerate(decide(strategy, bv)):
                mine = A.Bid(auction_id="a1", msg_id=f"{me}{now}-{k}", bidder=me,
                             amount=intent.amount, items=intent.items)
                state, _ = A.step(state, A.BidReceived(mine, now))
        state, effects = A.step(state, A.Tick(now + 1))
        if closed(effects) or state.outcome is not None:
            break
    assert state.outcome is not None
    return state.outcome


def test_truthful_bidders_reach_the_textbook_english_and_dutch_results() -> None:
    bidders = {f"b{v}": Truthful(TableValuation({frozenset({"item"}): float(v)}))
               for v in (30, 45, 38)}
    eng = _play("english", bidders, start_price=10.0, increment=1.0, max_rounds=100)
    assert eng.winner == "b45" and 38.0 <= eng.price <= 39.0
    dut = _play("dutch", bidders, start_price=100.0, decrement=5.0)
    assert (dut.winner, dut.price) == ("b45", 45.0)
    vic = _play("vickrey", bidders)
    assert (vic.winner, vic.price) == ("b45", 38.0)
