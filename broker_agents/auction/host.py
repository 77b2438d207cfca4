"""What an auction driver needs from the auctioneer hosting it (connections and buckets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

from broker_agents.auction.ledger import Ledger
from broker_agents.kvmirror import KvMirror
from broker_agents.reputation import ReputationBook
from broker_agents.subjects import Subjects


@dataclass
class AuctionHost:
    nc: NATS
    subjects: Subjects
    owner: str
    auctions: KeyValue
    ledger: Ledger
    reputation: ReputationBook
    accounts_mirror: KvMirror | None = None
    reputation_mirror: KvMirror | None = None
    lease_ms: int = 3000
    log: Any = None
