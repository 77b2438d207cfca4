"""Combinatorial (bundle) auction with sealed bids.

Bids name a bundle of the offered items and are accepted until the deadline, exactly like a
sealed-bid auction. Bidding language: OR — every bid is independent and a bidder may win
several disjoint bundles. A bid naming an item not on offer (or an empty or repeating
bundle, or an amount not above zero / below the reserve) is rejected at bid time; it never
reaches winner determination. At the deadline ``wdp.solve`` picks the revenue-maximising
non-overlapping set of bids (exact up to its work limit; see ``wdp``).

Payments: pay-as-bid by default. With ``PaymentRule.VCG`` each winning bidder pays the
revenue the others would have earned without it, minus what the others earn now; a bidder
with several winning bundles has that payment split in proportion to its bids. VCG is only
truthful when winner determination was exact.
"""

from __future__ import annotations

from broker_agents.core.auction import wdp
from broker_agents.core.auction.common import (
    Step,
    accept,
    finish,
    fresh_state,
    precheck,
    reject,
)
from broker_agents.core.auction.types import (
    Admission,
    AuctionConfig,
    AuctionState,
    Award,
    Bid,
    BidRecord,
    PaymentRule,
    Phase,
    RejectReason,
)


def deadline(state: AuctionState) -> int:
    return state.opened_at + state.config.duration_ticks


def start(config: AuctionConfig, now: int) -> Step:
    return Step(fresh_state(config, now), [])


def bundle_problem(config: AuctionConfig, bid: Bid) -> tuple[RejectReason, str] | None:
    """Why a bundle cannot be bid on, or None. Usable by bidders before they send."""
    if not bid.items:
        return RejectReason.INVALID_BUNDLE, "a combinatorial bid must name at least one item"
    if len(set(bid.items)) != len(bid.items):
        return RejectReason.INVALID_BUNDLE, "a bundle may name each item only once"
    unknown = sorted(set(bid.items) - set(config.items))
    if unknown:
        return RejectReason.UNKNOWN_ITEM, (
            f"item(s) {unknown} not on offer in auction {config.auction_id}; "
            f"offered: {sorted(config.items)}"
        )
    return None


def submit(
    state: AuctionState, bid: Bid, now: int, admission: Admission | None = None
) -> Step:
    problem = precheck(state, bid, admission)
    if problem is not None:
        return reject(state, bid, *problem)
    if now >= deadline(state):
        return reject(state, bid, RejectReason.LATE, f"bids closed at tick {deadline(state)}")
    problem = bundle_problem(state.config, bid)
    if problem is not None:
        return reject(state, bid, *problem)
    if bid.amount <= 0.0 or bid.amount < state.config.reserve:
        return reject(state, bid, RejectReason.BELOW_MINIMUM,
                      f"bid {bid.amount} must be above 0 and at least the reserve "
                      f"{state.config.reserve}")
    return accept(state, bid, now)


def tick(state: AuctionState, now: int) -> Step:
    if state.phase is Phase.OPEN and now >= deadline(state):
        return close(state, now, reason="deadline")
    return Step(state, [])


def _inputs(bids: tuple[BidRecord, ...]) -> list[wdp.BundleBid]:
    return [wdp.BundleBid(seq=b.seq, bidder=b.bidder, items=frozenset(b.items),
                          amount=b.amount) for b in bids]


def close(state: AuctionState, now: int, reason: str = "forced") -> Step:
    if state.phase is not Phase.OPEN:
        return Step(state, [])
    if not state.bids:
        return finish(state, now, (), reason="no_bids")
    limit = state.config.exact_work_limit
    inputs = _inputs(state.bids)
    allocation = wdp.solve(inputs, limit)
    by_seq = {b.seq: b for b in state.bids}
    winning = [by_seq[s] for s in allocation.seqs]
    prices = {b.seq: b.amount for b in winning}
    if state.config.payment is PaymentRule.VCG:
        prices = vcg_prices(inputs, winning, allocation.revenue, limit)
    awards = tuple(
        Award(bidder=b.bidder, items=b.items, bid=b.amount, price=prices[b.seq],
              msg_id=b.msg_id)
        for b in winning
    )
    return finish(state, now, awards, reason=reason, tie_broken=allocation.tie_broken,
                  exact=allocation.exact)


def vcg_prices(
    inputs: list[wdp.BundleBid], winning: list[BidRecord], revenue: float, limit: int
) -> dict[int, float]:
    """Per winning bid: its bidder's VCG payment, split in proportion to its bids."""
    prices: dict[int, float] = {}
    for bidder in dict.fromkeys(b.bidder for b in winning):
        own = [b for b in winning if b.bidder == bidder]
        own_total = sum(b.amount for b in own)
        without = wdp.solve([b for b in inputs if b.bidder != bidder], limit).revenue
        payment = min(own_total, max(0.0, without - (revenue - own_total)))
        for b in own:
            prices[b.seq] = payment * b.amount / own_total
    return prices
