"""The auction record kept in the ``auctions`` bucket, one key per auction.

It holds the core's ``AuctionState`` plus what the driver needs to carry on after a crash:
the stage of the post-close choreography, the lease (owner + heartbeat), the invited
participants and which payers were escrowed, acknowledged and settled. Every change is a
compare-and-set on the key's revision, so two auctioneers can never both advance it.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from broker_agents.auction.messages import AuctionRequest
from broker_agents.core.auction import AuctionState, Outcome


class Stage(StrEnum):
    """open -> closed -> reserved -> acked -> settled; or unsold / failed."""

    OPEN = "open"
    CLOSED = "closed"
    RESERVED = "reserved"
    ACKED = "acked"
    SETTLED = "settled"
    UNSOLD = "unsold"
    FAILED = "failed"


TERMINAL = frozenset({Stage.SETTLED, Stage.UNSOLD, Stage.FAILED})


class AuctionRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    auction_id: str
    request: AuctionRequest
    participants: tuple[str, ...]
    state: AuctionState
    stage: Stage = Stage.OPEN
    owner: str
    heartbeat_ms: int
    started_ms: int
    finished_ms: int | None = None
    reserved: tuple[str, ...] = ()
    acked: tuple[str, ...] = ()
    settled: tuple[str, ...] = ()
    takeovers: int = 0
    failure: str | None = None

    @property
    def terminal(self) -> bool:
        return self.stage in TERMINAL

    @property
    def outcome(self) -> Outcome | None:
        return self.state.outcome

    def payments(self) -> dict[str, float]:
        """Total owed per winner, always from the stored outcome."""
        owed: dict[str, float] = {}
        if self.state.outcome is not None:
            for award in self.state.outcome.awards:
                owed[award.bidder] = owed.get(award.bidder, 0.0) + award.price
        return owed

    def lease_expired(self, now_ms: int, lease_ms: int) -> bool:
        return not self.terminal and now_ms - self.heartbeat_ms > lease_ms
