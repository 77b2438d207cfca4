"""Reaper decisions: which agents of silent nodes to mark unhealthy, and later remove.

Silence is measured on the reaper's own clock (a monotonic number passed in): a node is
silent when its heartbeat record's revision has not changed for longer than the window,
as observed by this reaper. That is immune to clock skew between machines, and a reaper
that has just started waits a full window before judging anyone.

A reaper also judges only while its own view is demonstrably live: once it has seen its
own node's heartbeat, that heartbeat must keep changing in the view it is given. When it
stops (our beats fail, or the nodes watch stalled after a partition), everyone else looks
silent too, so the reaper acts on nobody and, when its own beats show up again, forgets
what it saw meanwhile. Without this, a reaper whose nodes view froze during a server cut
reaped every live node the moment its writes went through again.

Every action carries the revision it was decided on; the IO layer performs it with
compare-and-set, so of two reapers acting on one record only one succeeds, and a node
that came back (and rewrote its record) is never clobbered.

The one core face (``core/machine.py``): ``actions = core.step(event)``, where the event is
a ``Scan`` (what the views show at reaper time ``now``: every node's heartbeat revision
and every agent with its revision) or ``ViewLost`` (this reaper was cut off: forget what
it saw). Only a ``Scan`` yields actions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from broker_agents.core.registry.record import AgentRecord, Health, ReapMark


@dataclass(frozen=True)
class MarkUnhealthy:
    """CAS-write ``record`` (health unhealthy, reap mark set) over ``revision``."""

    agent_id: str
    revision: int
    record: AgentRecord


@dataclass(frozen=True)
class RemoveAgent:
    """CAS-delete the agent at ``revision``."""

    agent_id: str
    revision: int


@dataclass(frozen=True)
class RemoveNode:
    """CAS-delete the node's heartbeat record at ``revision`` (its agents are all gone)."""

    node_id: str
    revision: int


@dataclass(frozen=True)
class Restore:
    """The owner is back: CAS-write ``record`` (prior health, mark cleared)."""

    agent_id: str
    revision: int
    record: AgentRecord


ReapAction = MarkUnhealthy | RemoveAgent | RemoveNode


@dataclass(frozen=True)
class Scan:
    """A look at the views: heartbeat revision per node, agents with their revisions.

    ``now`` is this reaper's monotonic clock; ``wall`` (epoch seconds) only stamps the
    reap mark for humans.
    """

    nodes: Mapping[str, int]
    agents: Iterable[tuple[AgentRecord, int]]
    now: float
    wall: float


@dataclass(frozen=True)
class ViewLost:
    """This reaper was cut off, so its view of everyone's heartbeats is stale: drop every
    observation, and each node gets a full window again."""


ReaperEvent = Scan | ViewLost


@dataclass
class _Seen:
    revision: int | None
    since: float


class ReaperCore:
    """Tracks when each node's heartbeat last changed and decides what to reap."""

    def __init__(self, reaper_id: str, window: float, grace: float,
                 own_node: str | None = None, stale_after: float | None = None) -> None:
        """``stale_after`` (default window / 2): how long our own heartbeat may stand still
        in the view before the view counts as stale. Keep it below the window by more
        than a heartbeat interval plus a scan interval."""
        if window <= 0 or grace < 0:
            raise ValueError("window must be > 0 and grace >= 0")
        self._reaper_id = reaper_id
        self._window = window
        self._grace = grace
        self._own_node = own_node
        self._stale_after = window / 2 if stale_after is None else stale_after
        self._seen: dict[str, _Seen] = {}
        self._own_seen = False
        self._stale = False

    @property
    def reaper_id(self) -> str:
        return self._reaper_id

    @property
    def stale(self) -> bool:
        """Our own heartbeat stood still in the view at the last scan: judging nobody."""
        return self._stale

    def step(self, event: ReaperEvent) -> list[ReapAction]:
        if isinstance(event, ViewLost):
            self._seen.clear()
            return []
        return self._scan(event.nodes, event.agents, event.now, event.wall)

    def _observe(self, node_id: str, revision: int | None, now: float) -> None:
        """Record the node's heartbeat revision (None: no record) as seen at ``now``."""
        seen = self._seen.get(node_id)
        if seen is None or seen.revision != revision:
            self._seen[node_id] = _Seen(revision, now)

    def _view_is_stale(self, now: float) -> bool:
        """Our own heartbeat (once seen) has not changed for ``stale_after``."""
        if self._own_node is None or not self._own_seen:
            return False
        seen = self._seen.get(self._own_node)
        return seen is None or now - seen.since > self._stale_after

    def _changed_at(self, node_id: str) -> float | None:
        """When (reaper clock) the node's heartbeat was last seen to change."""
        seen = self._seen.get(node_id)
        return None if seen is None else seen.since

    def _scan(
        self,
        nodes: Mapping[str, int],
        agents: Iterable[tuple[AgentRecord, int]],
        now: float,
        wall: float,
    ) -> list[ReapAction]:
        """Decide actions from node heartbeat revisions and agents with their revisions."""
        agent_list = list(agents)
        relevant = set(nodes) | {rec.node_id for rec, _ in agent_list}
        own_last_change = None
        if self._own_node is not None:
            relevant.add(self._own_node)
            self._own_seen = self._own_seen or nodes.get(self._own_node) is not None
            own_last_change = self._changed_at(self._own_node)
        for node_id in relevant:
            self._observe(node_id, nodes.get(node_id), now)
        for node_id in set(self._seen) - relevant:
            del self._seen[node_id]
        if self._view_is_stale(now):
            self._stale = True
            return []
        if self._stale:
            self._stale = False
            self._discount(own_last_change, now)
        actions: list[ReapAction] = []
        populated: set[str] = set()
        for record, revision in agent_list:
            populated.add(record.node_id)
            silence = self._silence(record.node_id, now)
            if silence <= self._window:
                continue
            if record.reaped is None:
                mark = ReapMark(by=self._reaper_id, at=wall, prior_health=record.health)
                marked = record.model_copy(update={"health": Health.UNHEALTHY, "reaped": mark})
                actions.append(MarkUnhealthy(record.agent_id, revision, marked))
            elif silence > self._window + self._grace:
                actions.append(RemoveAgent(record.agent_id, revision))
        for node_id, revision in nodes.items():
            if node_id in populated:
                continue
            if self._silence(node_id, now) > self._window + self._grace:
                actions.append(RemoveNode(node_id, revision))
        return actions

    def _discount(self, stale_since: float | None, now: float) -> None:
        """Live again: silence counts only up to when the view went stale (our own
        heartbeat's last change before the spell), never through the spell itself."""
        for node_id, seen in self._seen.items():
            if node_id == self._own_node:
                continue
            verified = 0.0 if stale_since is None else max(0.0, stale_since - seen.since)
            seen.since = now - verified

    def _silence(self, node_id: str, now: float) -> float:
        if node_id == self._own_node:
            return 0.0
        seen = self._seen.get(node_id)
        return 0.0 if seen is None else now - seen.since


def restorations(node_id: str, agents: Iterable[tuple[AgentRecord, int]]) -> list[Restore]:
    """For a node that is alive: undo reaper marks on its own agents."""
    out: list[Restore] = []
    for record, revision in agents:
        if record.node_id == node_id and record.reaped is not None:
            restored = record.model_copy(
                update={"health": record.reaped.prior_health, "reaped": None}
            )
            out.append(Restore(record.agent_id, revision, restored))
    return out
