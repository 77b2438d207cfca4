"""Small builders shared by the auction tests."""

from __future__ import annotations

from typing import Any

from broker_agents import codec
from broker_agents.core import auction as A


def config(mechanism: str, **kw: Any) -> A.AuctionConfig:
    return A.AuctionConfig(auction_id="a1", mechanism=A.Mechanism(mechanism), **kw)


def bid(bidder: str, amount: float, msg_id: str | None = None, *items: str,
        auction_id: str = "a1") -> A.Bid:
    return A.Bid(auction_id=auction_id, msg_id=msg_id or f"{bidder}-{amount}",
                 bidder=bidder, amount=amount, items=items)


def rejections(effects: list[A.Effect]) -> list[A.RejectReason]:
    return [e.reason for e in effects if isinstance(e, A.BidRejected)]


def accepted(effects: list[A.Effect]) -> bool:
    return any(isinstance(e, A.BidAccepted) for e in effects)


def closed(effects: list[A.Effect]) -> list[A.Outcome]:
    return [e.outcome for e in effects if isinstance(e, A.AuctionClosed)]


def through_kv(state: A.AuctionState, *, as_json: bool = False) -> A.AuctionState:
    """What a successor auctioneer reads back after the state was stored."""
    return A.parse_state(codec.decode(codec.encode(state, as_json=as_json)))


def run_sealed(mechanism: str, amounts: list[float], **kw: Any) -> A.Outcome:
    state, _ = A.start(config(mechanism, **kw), 0)
    for i, amount in enumerate(amounts, start=1):
        state, effects = A.step(state, A.BidReceived(bid(f"bidder{i}", amount), 1))
        assert accepted(effects), effects
    state, effects = A.step(state, A.Tick(10_000))
    [outcome] = closed(effects)
    return outcome
