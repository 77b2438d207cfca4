"""The auction record kept in the ``auctions`` bucket, one key per auction.

It holds the core's ``AuctionState`` (with the invited participants and who answered the
current call for bids) plus what the driver needs to carry on after a crash: the stage of
the post-close choreography (``core.auction.settlement``), the lease (owner + heartbeat)
and which payers were escrowed, acknowledged and settled. Every change is a
compare-and-set on the key's revision, so two auctioneers can never both advance it.

Records stored before the participants moved into the core state carry them at the top
level; reading one moves them in.
"""

from __future__ import annotations

from typing import Any

import msgpack
from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker_agents import codec
from broker_agents.auction.messages import AuctionRequest
from broker_agents.core.auction import AuctionState, Outcome
from broker_agents.core.auction.settlement import TERMINAL, Settlement, Stage, payments
from broker_agents.core.identity import SignedAct
from broker_agents.core.versioning import VersionedModel

__all__ = ["TERMINAL", "AuctionRecord", "RecordEncoder", "Stage", "peek_lease",
           "settlement_of"]

MAX_EVIDENCE = 4096
"""At most this many acknowledgements in one record (one per winner)."""


class AuctionRecord(VersionedModel):
    model_config = ConfigDict(frozen=True)

    auction_id: str
    request: AuctionRequest
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
    # Each winner's signed award acknowledgement (``broker_agents.identity``): what lets a
    # settler, live or a sweeper after a takeover, debit it (``settle.py``).
    ack_evidence: dict[str, SignedAct] = Field(default_factory=dict, max_length=MAX_EVIDENCE)

    @model_validator(mode="before")
    @classmethod
    def _participants_into_state(cls, data: Any) -> Any:
        """A top-level ``participants`` (older records) belongs to the core state."""
        if not isinstance(data, dict) or "participants" not in data:
            return data
        data = dict(data)
        invited = tuple(data.pop("participants") or ())
        state = data.get("state")
        if isinstance(state, AuctionState):
            if state.participants is None:
                data["state"] = state.model_copy(update={"participants": invited})
        elif isinstance(state, dict) and state.get("participants") is None:
            data["state"] = {**state, "participants": invited}
        return data

    @property
    def participants(self) -> tuple[str, ...]:
        """The invited bidders."""
        return self.state.participants or ()

    @property
    def terminal(self) -> bool:
        return self.stage in TERMINAL

    @property
    def outcome(self) -> Outcome | None:
        return self.state.outcome

    def payments(self) -> dict[str, float]:
        """Total owed per winner, always from the stored outcome."""
        return payments(self.state.outcome)

    def lease_expired(self, now_ms: int, lease_ms: int) -> bool:
        return not self.terminal and now_ms - self.heartbeat_ms > lease_ms


def settlement_of(record: AuctionRecord) -> Settlement:
    """The post-close part of the record, as the settlement table sees it."""
    return Settlement(
        stage=record.stage, owed=tuple(sorted(record.payments().items())),
        budgets=record.request.budgets, seller=record.request.seller,
        reserved=record.reserved, acked=record.acked, settled=record.settled,
        failure=record.failure)


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
        extra = record.__pydantic_extra__ or {}  # a newer node's fields, kept (versioning)
        out = [self._header if not extra else msgpack.Packer().pack_map_header(
            len(AuctionRecord.model_fields) + len(extra))]
        for name in AuctionRecord.model_fields:
            out.append(codec.encode(name))
            out.append(self._part(name, getattr(record, name)) if name in _BIG
                       else codec.encode(small[name]))
        for name in extra:
            out.append(codec.encode(name))
            out.append(codec.encode(small[name]))
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
        raw = codec.decode(data, max_depth=codec.STORED_MAX_DEPTH)
        return Stage(raw["stage"]), int(raw["heartbeat_ms"])
    except Exception:
        return None
