"""The bidder agent: answers calls for bids through a strategy hook, acknowledges awards.

Config kwargs (all optional):

- ``strategy``: ``"truthful"`` (default) or ``"budget_capped"`` with ``budget``;
- valuation: ``value`` (any single item is worth this), ``values`` ({item: worth},
  additive over bundles) or ``bundles`` ([{"items": [...], "value": x}]);
- ``check_funds``: read our own account before deciding (limits bids to what we can pay);
- ``delay_ms``: think this long before answering (tests, slow bidders);
- ``accept_awards`` (True): acknowledge awards; ``capabilities``: default ``["bidder"]``.

Each bid's message id is derived from (auction, round, bidder, bundle), so an answer
repeated after a takeover is recognised as a duplicate by the auctioneer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, ClassVar

import nats.js.errors
from pydantic import BaseModel

from broker_agents import codec
from broker_agents.agent import Agent, handler
from broker_agents.auction.messages import (
    Announce,
    AwardAck,
    AwardNotice,
    BidAnswer,
    BidNotice,
    DiscoverAnswer,
)
from broker_agents.core.auction import Bid
from broker_agents.core.auction.strategy import (
    AdditiveValuation,
    BidderView,
    BudgetCapped,
    Strategy,
    TableValuation,
    Truthful,
    Valuation,
    decide,
)
from broker_agents.core.budget import Account
from broker_agents.discovery import answer_discovery


class FlatValuation:
    """Every single item is worth ``value``; bundles are not wanted."""

    def __init__(self, value: float) -> None:
        self._value = value

    def value(self, items: frozenset[str]) -> float | None:
        return self._value if len(items) == 1 else None

    def bundles(self) -> list[frozenset[str]]:
        return []


def build_valuation(config: Mapping[str, Any]) -> Valuation:
    if "bundles" in config:
        table = {frozenset(b["items"]): float(b["value"]) for b in config["bundles"]}
        return TableValuation(table)
    if "values" in config:
        return AdditiveValuation({k: float(v) for k, v in config["values"].items()})
    return FlatValuation(float(config.get("value", 0.0)))


def build_strategy(config: Mapping[str, Any]) -> Strategy:
    valuation = build_valuation(config)
    if config.get("strategy", "truthful") == "budget_capped":
        return BudgetCapped(valuation, float(config["budget"]))
    return Truthful(valuation)


class BidderStats(BaseModel):
    """Ask a bidder what it saw (tests and operators)."""

    message_type: ClassVar[str] = "auction.bidder_stats"


class BidderAgent(Agent):
    capabilities = ["bidder"]

    def __init__(self, agent_id: str, **config: Any) -> None:
        if "capability" in config:
            config.setdefault("capabilities", [config["capability"]])
        super().__init__(agent_id, **config)
        self.strategy = build_strategy(config)
        self.check_funds = bool(config.get("check_funds", False))
        self.delay = float(config.get("delay_ms", 0)) / 1000
        self.accept_awards = bool(config.get("accept_awards", True))
        self.awards: dict[str, list[dict[str, Any]]] = {}
        self.notices: list[dict[str, Any]] = []
        self.calls = 0

    def all_capabilities(self) -> list[str]:
        extra = self.config.get("capabilities")
        return list(extra) if extra else list(type(self).capabilities)

    async def on_start(self) -> None:
        self._subs = await answer_discovery(self.ctx.nc, self.ctx.subjects.auction,
                                            self.all_capabilities(), self._discovered)

    async def on_stop(self) -> None:
        for s in self._subs:
            with contextlib.suppress(Exception):
                await s.unsubscribe()

    def _discovered(self) -> DiscoverAnswer:
        return DiscoverAnswer(agent_id=self.agent_id, node_id=self.ctx.node_id)

    async def _available(self) -> float | None:
        if not self.check_funds:
            return None
        kv = await self.ctx.kv(self.ctx.subjects.bucket("accounts"))
        try:
            entry = await kv.get(self.agent_id)
        except nats.js.errors.KeyNotFoundError:
            return 0.0
        assert entry.value is not None
        return Account.model_validate(codec.decode(entry.value)).available

    @handler(Announce)
    async def on_announce(self, call: Announce) -> BidAnswer:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)  # sleep-ok: configured thinking time
        view = BidderView(config=call.config, me=self.agent_id, price=call.price,
                          min_bid=call.min_bid, standing_bidder=call.standing_bidder,
                          available=await self._available())
        aid = call.config.auction_id
        bids = [
            Bid(auction_id=aid, bidder=self.agent_id, amount=intent.amount, items=intent.items,
                msg_id=f"{self.agent_id}-{call.round}-{'+'.join(intent.items) or '1'}-{aid}")
            for intent in decide(self.strategy, view)
        ]
        return BidAnswer(bids=bids)

    @handler(BidNotice)
    async def on_notice(self, notice: BidNotice) -> None:
        self.notices.append(notice.model_dump())
        del self.notices[:-100]

    @handler(AwardNotice)
    async def on_award(self, award: AwardNotice) -> AwardAck:
        self.awards.setdefault(award.auction_id, []).append(award.model_dump(mode="json"))
        return AwardAck(auction_id=award.auction_id, bidder=self.agent_id,
                        accepted=self.accept_awards)

    @handler(BidderStats)
    async def stats(self, _: BidderStats) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "calls": self.calls, "awards": self.awards,
                "notices": self.notices}
