"""The bidder agent: answers calls for bids through a strategy hook, acknowledges awards.

Config kwargs: ``BidderSettings``.

Each bid's message id is derived from (auction, round, bidder, bundle), so an answer
repeated after a takeover is recognised as a duplicate by the auctioneer.

Its bid answers and award answers are its acts. Both land in the auctioneer's inbox, where
only nodes may publish (its node speaks for it, ``broker_agents.gather``); the award answer
is also signed as this agent by its node (``signed=True``), because settlement keeps it as
evidence of what the winner agreed to pay. It remembers its own bids of the last
``remember_auctions`` auctions and acknowledges only an award of one of them, naming its
own bids, at no more than it bid (``core.auction.acts.ack_refusal``); any other award is
declined with the reason. The acknowledgement names the total it agrees to pay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import nats.js.errors
from pydantic import BaseModel, Field

from broker_agents import codec
from broker_agents.agent import Agent, AgentSettings, handler
from broker_agents.auction.messages import (
    Announce,
    AwardAck,
    AwardNotice,
    BidAnswer,
    BidNotice,
    DiscoverAnswer,
)
from broker_agents.core.auction import Bid
from broker_agents.core.auction.acts import OwnBid, ack_refusal
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


class BidderSettings(AgentSettings):
    strategy: Literal["truthful", "budget_capped"] = Field(
        default="truthful", description="how bids follow from the valuation")
    budget: float | None = Field(default=None, ge=0, description="budget_capped's budget")
    value: float | None = Field(default=None, ge=0, description="any single item's worth")
    values: dict[str, float] | None = Field(default=None,
                                            description="{item: worth}, additive over bundles")
    bundles: list[dict[str, Any]] | None = Field(default=None, description="[{'items': "
                                                 "[...], 'value': x}]: bundle worths")
    capability: str | None = Field(default=None, description="one capability to add")
    check_funds: bool = Field(default=False, description="read our own account before "
                              "deciding (limits bids to what we can pay)")
    delay_ms: float = Field(default=0, ge=0, description="think this long before answering "
                            "a call for bids (tests, slow bidders)")
    ack_delay_ms: float = Field(default=0, ge=0, description="wait this long before "
                                "answering an award (tests: a slow winner)")
    accept_awards: bool = Field(default=True, description="acknowledge awards (False: "
                                "decline every award)")
    remember_auctions: int = Field(default=256, ge=1, description="auctions whose own bids "
                                   "are remembered (awards of others are declined)")
    remember_bids: int = Field(default=1000, ge=1, description="own bids remembered per "
                               "auction (the newest)")


class BidderAgent(Agent):
    capabilities = ["bidder"]
    Settings = BidderSettings

    def __init__(self, agent_id: str, **config: Any) -> None:
        if "capability" in config:
            config.setdefault("capabilities", [config["capability"]])
        super().__init__(agent_id, **config)
        self.strategy = build_strategy(config)
        self.check_funds = bool(config.get("check_funds", False))
        self.delay = float(config.get("delay_ms", 0)) / 1000
        self.ack_delay = float(config.get("ack_delay_ms", 0)) / 1000
        self.accept_awards = bool(config.get("accept_awards", True))
        self.remember_auctions = int(config.get("remember_auctions", 256))
        self.remember_bids = int(config.get("remember_bids", 1000))
        # auction id -> msg id -> our bid, for the newest auctions we bid in
        self.own_bids: OrderedDict[str, dict[str, OwnBid]] = OrderedDict()
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

    def _remember(self, bids: list[Bid]) -> None:
        """Keep our bids (bounded: the newest auctions, the newest bids of each)."""
        for bid in bids:
            mine = self.own_bids.get(bid.auction_id)
            if mine is None:
                mine = self.own_bids[bid.auction_id] = {}
                while len(self.own_bids) > self.remember_auctions:
                    self.own_bids.popitem(last=False)
            self.own_bids.move_to_end(bid.auction_id)
            had = mine.pop(bid.msg_id, None)  # a repeated call: the larger offer stands
            amount = bid.amount if had is None else max(had.amount, bid.amount)
            mine[bid.msg_id] = OwnBid(amount=amount, items=bid.items)
            while len(mine) > self.remember_bids:
                del mine[next(iter(mine))]

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
        self._remember(bids)
        return BidAnswer(bids=bids)

    @handler(BidNotice)
    async def on_notice(self, notice: BidNotice) -> None:
        self.notices.append(notice.model_dump())
        del self.notices[:-100]

    @handler(AwardNotice, signed=True)
    async def on_award(self, award: AwardNotice) -> AwardAck:
        if self.ack_delay:
            await asyncio.sleep(self.ack_delay)  # sleep-ok: configured slow winner (tests)
        self.awards.setdefault(award.auction_id, []).append(award.model_dump(mode="json"))
        del self.awards[award.auction_id][:-10]
        while len(self.awards) > self.remember_auctions:
            del self.awards[next(iter(self.awards))]
        refusal = ack_refusal(self.own_bids.get(award.auction_id), award.auction_id,
                              award.awards, award.total, self.agent_id)
        if refusal is None and not self.accept_awards:
            refusal = f"{self.agent_id} accepts no awards"
        return AwardAck(auction_id=award.auction_id, bidder=self.agent_id,
                        accepted=refusal is None, total=award.total, seller=award.seller,
                        reason=refusal)

    @handler(BidderStats)
    async def stats(self, _: BidderStats) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "calls": self.calls, "awards": self.awards,
                "notices": self.notices}
