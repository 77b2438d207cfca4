"""Bidder strategy hooks: what a bidder agent answers, from its valuation.

A bidder agent builds a ``BidderView`` from an announcement and calls ``decide``; the
answer is a list of ``Intent`` (bundle, amount) to send as bids, empty to stay out. Both
shipped strategies bid their *limit* — the valuation, capped by money for
``BudgetCapped`` — and differ only in that limit:

- sealed (first-price and Vickrey): bid the limit if it reaches the reserve (truthful is
  dominant in Vickrey; in first-price it is simply "bid what it is worth", no shading);
- English: raise to the minimum bid while it is within the limit and we are not standing;
- Dutch: accept as soon as the clock price is within the limit;
- combinatorial: one bid per bundle of interest at its limit; ``BudgetCapped`` also keeps
  the sum of its bundle bids within the budget (OR bids may all win).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from broker_agents.core.auction.types import AuctionConfig, Mechanism


class Valuation(Protocol):
    """What a bundle of items is worth to this bidder (None: not interested)."""

    def value(self, items: frozenset[str]) -> float | None: ...

    def bundles(self) -> list[frozenset[str]]:
        """Bundles worth bidding on in a combinatorial auction."""
        ...


class TableValuation:
    """Explicit values per bundle (a single-item auction looks up ``{item}``)."""

    def __init__(self, values: Mapping[frozenset[str], float]) -> None:
        self._values = dict(values)

    def value(self, items: frozenset[str]) -> float | None:
        return self._values.get(items)

    def bundles(self) -> list[frozenset[str]]:
        return sorted(self._values, key=lambda b: sorted(b))


class AdditiveValuation:
    """Each item has its own value; a bundle is worth the sum (unknown item: None)."""

    def __init__(self, per_item: Mapping[str, float]) -> None:
        self._per_item = dict(per_item)

    def value(self, items: frozenset[str]) -> float | None:
        if not items or not items <= self._per_item.keys():
            return None
        return sum(self._per_item[i] for i in items)

    def bundles(self) -> list[frozenset[str]]:
        return [frozenset({i}) for i in sorted(self._per_item)]


class BidderView(BaseModel):
    """What a bidder knows when it decides; ``price``/``min_bid`` come from announcements."""

    model_config = ConfigDict(frozen=True)

    config: AuctionConfig
    me: str
    price: float | None = None
    min_bid: float | None = None
    standing_bidder: str | None = None
    available: float | None = None


class Intent(BaseModel):
    """A bid to send: ``items`` empty for single-item auctions."""

    model_config = ConfigDict(frozen=True)

    items: tuple[str, ...] = ()
    amount: float


class Truthful:
    """Bid what things are worth."""

    def __init__(self, valuation: Valuation) -> None:
        self.valuation = valuation

    def limit(self, view: BidderView, value: float) -> float:
        return value if view.available is None else min(value, view.available)

    def bundle_budget(self, view: BidderView) -> float | None:
        return view.available


class BudgetCapped(Truthful):
    """Never commit more than ``budget`` (nor more than the funds available)."""

    def __init__(self, valuation: Valuation, budget: float) -> None:
        super().__init__(valuation)
        self.budget = budget

    def limit(self, view: BidderView, value: float) -> float:
        return min(super().limit(view, value), self.budget)

    def bundle_budget(self, view: BidderView) -> float | None:
        funds = view.available
        return self.budget if funds is None else min(self.budget, funds)


Strategy = Truthful


def decide(strategy: Strategy, view: BidderView) -> list[Intent]:
    """The bids this strategy sends now for the auction in ``view``."""
    cfg = view.config
    if cfg.mechanism is Mechanism.COMBINATORIAL:
        return _bundles(strategy, view)
    worth = strategy.valuation.value(frozenset({cfg.item}))
    if worth is None:
        return []
    limit = strategy.limit(view, worth)
    if cfg.mechanism is Mechanism.ENGLISH:
        floor = cfg.opening_price if view.min_bid is None else view.min_bid
        if view.standing_bidder == view.me or floor > limit:
            return []
        return [Intent(amount=floor)]
    if cfg.mechanism is Mechanism.DUTCH:
        price = cfg.opening_price if view.price is None else view.price
        return [Intent(amount=price)] if price <= limit else []
    return [Intent(amount=limit)] if limit >= cfg.reserve else []


def _bundles(strategy: Strategy, view: BidderView) -> list[Intent]:
    offered = set(view.config.items)
    wanted: list[tuple[float, frozenset[str]]] = []
    for bundle in strategy.valuation.bundles():
        worth = strategy.valuation.value(bundle)
        if bundle and bundle <= offered and worth is not None:
            amount = strategy.limit(view, worth)
            if amount > 0 and amount >= view.config.reserve:
                wanted.append((amount, bundle))
    wanted.sort(key=lambda w: (-w[0], sorted(w[1])))
    budget = strategy.bundle_budget(view)
    intents: list[Intent] = []
    committed = 0.0
    for amount, bundle in wanted:
        if budget is not None and committed + amount > budget:
            continue
        committed += amount
        intents.append(Intent(items=tuple(sorted(bundle)), amount=amount))
    return intents
