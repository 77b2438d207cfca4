"""PBFT core: signed pre-prepare/prepare/commit with view change, pure and tick-driven.

The public face: ``Replica`` and ``PbftClient``, each stepped with events
(``step(event) -> list[Effect]``), their configuration, events and effects. Messages,
signing and validation live in their modules; the message log, view-change bookkeeping
and replay guard are internal.
"""

from broker_agents.core.machine import Tick
from broker_agents.core.pbft.client import ClientEffect, ClientEvent, Outcome, PbftClient, Submit
from broker_agents.core.pbft.config import (
    Broadcast,
    Counters,
    Decide,
    Effect,
    PbftConfig,
    Send,
    ViewEntered,
    check_group_size,
    max_faulty,
)
from broker_agents.core.pbft.replica import Replica

__all__ = [
    "Broadcast",
    "ClientEffect",
    "ClientEvent",
    "Counters",
    "Decide",
    "Effect",
    "Outcome",
    "PbftClient",
    "PbftConfig",
    "Replica",
    "Send",
    "Submit",
    "Tick",
    "ViewEntered",
    "check_group_size",
    "max_faulty",
]
