"""Claiming an agent id cluster-wide before hosting it: one node per id.

An id is claimed by *creating* its record in the agents bucket (KV create is
compare-and-set against "absent"), so two nodes that start at once cannot both win. A key
that already holds a record is

- ours (the record names this node: it restarted): reclaimed;
- a live node's: refused with ``already_exists``;
- the node handing the agent over (``handover_from``: a draining node stopped it and asked
  this one to host it, ``node/drain.py``): taken over with compare-and-set;
- a dead node's, or unusable (corrupt, another key's value): taken over with
  compare-and-set on the revision read, so two nodes taking over cannot both win.

A holder is live while its heartbeat record exists, does not say ``stopping`` and was
written within the registry's liveness ``window`` (the reaper's notion: a node silent for
longer is unhealthy, and its agents go after the grace). Judged on the wall clock of the
claimer, so node clocks must agree to well within the window.

The claim record says ``state = starting`` with no capabilities: nothing discovers it
before the agent runs, and the node's advertisement overwrites it once the agent's
subscriptions are live.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import nats.js.errors as jse

from broker_agents.codec import encode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.registry.record import AgentRecord, Lifecycle, NodeRecord
from broker_agents.registry import metrics
from broker_agents.registry.store import RegistryStore


class ClaimOutcome(StrEnum):
    CREATED = "created"        # nobody held the id
    RECLAIMED = "reclaimed"    # this node held it (a restart)
    TAKEN_OVER = "taken_over"  # a dead node held it, or the key held garbage
    HANDED_OVER = "handed_over"  # the node handing it over held it
    REFUSED = "refused"        # a live node holds it


@dataclass(frozen=True)
class Claim:
    agent_id: str
    outcome: ClaimOutcome
    holder: str | None = None  # the node that held the record before (None: nobody/garbage)
    revision: int | None = None  # the record's revision after a write of ours

    @property
    def won(self) -> bool:
        return self.outcome is not ClaimOutcome.REFUSED

    def error(self) -> BrokerError:
        """The structured refusal (``already_exists``) for a refused claim."""
        return BrokerError(ErrorCode.ALREADY_EXISTS,
                           f"agent id {self.agent_id!r} is held by live node {self.holder!r}",
                           {"agent_id": self.agent_id, "holder": self.holder})


def holder_alive(node: NodeRecord | None, now: float, window: float) -> bool:
    """The registry's liveness notion for a claim: a recent, not-stopping heartbeat."""
    return node is not None and not node.stopping and now - node.last_heartbeat <= window


async def claim(store: RegistryStore, agent_id: str, name: str, node_id: str, *,
                window: float, attempts: int = 8, handover_from: str | None = None,
                clock: Callable[[], float] = time.time) -> Claim:
    """Claim ``agent_id`` for ``node_id``; see the module docstring. Lost CAS races go round
    again (``attempts`` times, then ``conflict``); NATS errors propagate (the caller's
    start is retried)."""
    now = clock()
    record = AgentRecord(agent_id=agent_id, name=name, node_id=node_id,
                         state=Lifecycle.STARTING, registered_at=now, last_heartbeat=now)
    for _ in range(attempts):
        try:
            revision = int(await store.agents.create(agent_id, encode(record)))
        except jse.KeyWrongLastSequenceError:
            pass
        else:
            return _counted(Claim(agent_id, ClaimOutcome.CREATED, None, revision))
        current = await store.stored(agent_id)
        if current is None:
            continue  # deleted in between: create again
        held, revision = current
        holder = held.node_id if held is not None else None
        if holder == node_id:
            return _counted(Claim(agent_id, ClaimOutcome.RECLAIMED, holder, revision))
        if holder is not None and holder == handover_from:
            written = await store.cas_put(agent_id, record, revision)
            if written is not None:
                return _counted(Claim(agent_id, ClaimOutcome.HANDED_OVER, holder, written))
            continue
        if holder is not None:
            node = await _node(store, holder)
            if holder_alive(node, clock(), window):
                return _counted(Claim(agent_id, ClaimOutcome.REFUSED, holder))
        written = await store.cas_put(agent_id, record, revision)
        if written is not None:
            return _counted(Claim(agent_id, ClaimOutcome.TAKEN_OVER, holder, written))
    metrics.CLAIMS.labels("conflict").inc()
    raise BrokerError(ErrorCode.CONFLICT, f"claiming {agent_id!r} lost {attempts} races",
                      {"agent_id": agent_id, "attempts": attempts})


async def release(store: RegistryStore, claim: Claim) -> None:
    """Undo a won claim exactly as written (a later writer's record stays)."""
    if claim.won and claim.revision is not None:
        await store.cas_delete(claim.agent_id, claim.revision)


async def _node(store: RegistryStore, node_id: str) -> NodeRecord | None:
    """The holder's heartbeat record; a corrupt one counts as none (a live node rewrites
    its record every beat)."""
    try:
        found = await store.get_node(node_id)
    except BrokerError:
        return None
    return found[0] if found else None


def _counted(claim: Claim) -> Claim:
    metrics.CLAIMS.labels(claim.outcome.value).inc()
    return claim
