"""The auction record kept in the ``auctions`` bucket, one key per auction.

It holds the core's ``AuctionState`` plus what the driver needs to carry on after a crash:
the stage of the post-close choreography, the lease (owner + heartbeat), the invited
participants and which payers were escrowed, acknowledged and settled. Every change is a
compare-and-set on the key's revision, so two auctioneers can never both advance it.
"""

from __future__ import annotations

from enum import StrEnum

import msgpack
from pydantic import BaseModel, ConfigDict

from broker_agents import codec
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


_BIG = ("request", "state")
"""The parts of a record that are costly to dump and change rarely (never / at bids+close)."""


class RecordEncoder:
    """Encodes one auction's records to the bytes ``codec.encode(record)`` gives, re-packing
    only the big parts that changed since the last write.

    A 100-bid record is ~10 KB and dumping it costs a few hundred microseconds; the request
    never changes and the core state only when bids are judged or the auction closes, so the
    post-close writes (stage, lease renewals) reuse the packed parts. A msgpack map is its
    header followed by packed keys and values, so cached values splice in unchanged. Records
    are frozen: the identity of a part says whether it changed.
    """

    _header = msgpack.Packer().pack_map_header(len(AuctionRecord.model_fields))

    def __init__(self) -> None:
        self._packed: dict[str, tuple[BaseModel, bytes]] = {}

    def encode(self, record: AuctionRecord) -> bytes:
        small = record.model_dump(mode="json", exclude=set(_BIG))
        out = [self._header]
        for name in AuctionRecord.model_fields:
            out.append(codec.encode(name))
            out.append(self._part(name, getattr(record, name)) if name in _BIG
                       else codec.encode(small[name]))
        return b"".join(out)

    def _part(self, name: str, part: BaseModel) -> bytes:
        hit = self._packed.get(name)
        if hit is None or hit[0] is not part:
            hit = self._packed[name] = (part, codec.encode(part))
        return hit[1]


def peek_lease(data: bytes) -> tuple[Stage, int] | None:
    """(stage, heartbeat_ms) of a stored record without validating all of it (the sweeper
    looks at every record); None when the data is not a record."""
    try:
        raw = codec.decode(data)
        return Stage(raw["stage"]), int(raw["heartbeat_ms"])
    except Exception:
        return None
