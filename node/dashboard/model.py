"""The dashboard's cluster model: what it has seen, and the API documents built from it.

Fed by ``collector`` (bucket mirrors and events); read by ``app`` (one document per API
kind, ``docs.py``). Everything here is plain state: no I/O, no clock of its own (``now``
is passed in), so the documents are testable without NATS. Values the cluster did not
report are ``None``, never invented.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from node.status import DOWN_AFTER

HISTORY = 200      # recent coordination runs, transfers, trials, elections kept
SERIES = 150       # points per agent series (5 minutes at the default 2 s interval)
VAR_HISTORY = 200  # points per variable


@dataclass
class NodeSeen:
    """One node: its last status document, lifecycle events and bucket record."""

    node_id: str
    status: dict[str, Any] | None = None
    status_at: float = 0.0          # when the dashboard received it
    record: dict[str, Any] | None = None
    stopped_at: float | None = None  # a ``stopped`` event, cleared by a newer status
    lifecycle_at: float = 0.0


@dataclass
class ClusterModel:
    prefix: str = "ba"
    nodes: dict[str, NodeSeen] = field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)       # registry records
    auctions: dict[str, dict[str, Any]] = field(default_factory=dict)     # auction records
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)     # account records
    auction_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    coordination: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    elections: dict[str, deque[dict[str, Any]]] = field(default_factory=dict)
    series: dict[str, deque[tuple[float, float, float, float]]] = field(default_factory=dict)
    spaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    trials: dict[str, deque[dict[str, Any]]] = field(default_factory=dict)
    transfers: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    settled_seen: set[str] = field(default_factory=set)
    prom_alerts: list[dict[str, Any]] = field(default_factory=list)
    alert_since: dict[str, float] = field(default_factory=dict)
    nats: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)  # kind -> change counter
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set by every touch

    def touch(self, *kinds: str) -> None:
        for kind in kinds:
            self.versions[kind] = self.versions.get(kind, 0) + 1
        self.changed.set()

    # -- nodes ----------------------------------------------------------------------

    def node(self, node_id: str) -> NodeSeen:
        seen = self.nodes.get(node_id)
        if seen is None:
            seen = self.nodes[node_id] = NodeSeen(node_id)
        return seen

    def apply_status(self, doc: dict[str, Any], now: float) -> None:
        node_id = str(doc.get("node_id"))
        seen = self.node(node_id)
        previous = seen.status
        seen.status, seen.status_at, seen.stopped_at = doc, now, None
        self._elections(node_id, previous, doc, now)
        for agent, m in (doc.get("agents") or {}).items():
            points = self.series.setdefault(agent, deque(maxlen=SERIES))
            points.append((now, float(m.get("in", 0)), float(m.get("out", 0)),
                           float(m.get("errors", 0))))
        self.touch("cluster", "agents", "groups")

    def _elections(self, node_id: str, before: dict[str, Any] | None, after: dict[str, Any],
                   now: float) -> None:
        """A member that reports a new term, or a new leader, marks an election."""
        old = (before or {}).get("groups") or {}
        for group, g in (after.get("groups") or {}).items():
            prev = old.get(group) or {}
            term, leader = g.get("term"), g.get("leader")
            if term is None or (prev.get("term") == term and prev.get("leader") == leader):
                continue
            runs = self.elections.setdefault(group, deque(maxlen=HISTORY))
            if runs and runs[-1]["term"] == term and (runs[-1]["leader"] or leader) in (
                    runs[-1]["leader"], leader):
                if leader and not runs[-1]["leader"]:
                    runs[-1]["leader"] = leader
                continue
            if runs and runs[-1]["term"] > term:
                continue
            runs.append({"at": now, "term": term, "leader": leader})

    def node_event(self, node_id: str, event: str, payload: dict[str, Any], now: float) -> None:
        seen = self.node(node_id)
        seen.lifecycle_at = now
        if event == "stopped":
            seen.stopped_at = now
        self.touch("cluster")

    def node_state(self, seen: NodeSeen, now: float) -> str:
        if seen.stopped_at is not None:
            return "down"
        interval = float((seen.status or {}).get("interval_s") or 2.0)
        if seen.status is None:
            beat = float((seen.record or {}).get("last_heartbeat") or 0.0)
            if (seen.record or {}).get("stopping"):
                return "stopping"
            return "up" if beat and now - beat <= 3 * 5.0 else "down"
        if now - seen.status_at > DOWN_AFTER * interval:
            return "down"
        if seen.status.get("stopping") or (seen.record or {}).get("stopping"):
            return "stopping"
        return "up"

    # -- coordination ---------------------------------------------------------------

    def coord_finished(self, payload: dict[str, Any], now: float) -> None:
        self.coordination.append({**payload, "_at": now})
        self.touch("coordination")

    # -- variables ------------------------------------------------------------------

    def variable_change(self, change: dict[str, Any], now: float) -> None:
        space = str(change.get("space"))
        held = self.spaces.setdefault(space, {"version": -1, "values": {}, "frozen": [],
                                              "history": {}})
        version = int(change.get("version") or 0)
        if version <= held["version"]:
            return  # every member publishes: keep the newest, once
        held["version"], held["frozen"] = version, list(change.get("frozen") or [])
        for name, value in (change.get("values") or {}).items():
            history = held["history"].setdefault(name, deque(maxlen=VAR_HISTORY))
            if not history or history[-1][1] != value:
                history.append((now, value))
        held["values"] = dict(change.get("values") or {})
        self.touch("variables")

    def adaptation_step(self, ex: dict[str, Any], now: float) -> None:
        space = str(ex.get("space"))
        runs = self.trials.setdefault(space, deque(maxlen=HISTORY))
        values = ex.get("arms") or ex.get("centre_after") or {}
        for name, value in values.items():
            runs.append({"at": now, "variable": name, "value": value,
                         "score": ex.get("score"), "trial": ex.get("trial"),
                         "action": ex.get("action")})
        self.touch("variables")

    # -- auctions and money ------------------------------------------------------------

    def auction_record(self, key: str, record: dict[str, Any] | None, now: float) -> None:
        """Store (or drop) an auction record; a first sight of ``settled`` records its
        transfers: each award's price from its bidder to the seller."""
        if record is None:
            self.auctions.pop(key, None)
            self.touch("auctions", "cluster")
            return
        self.auctions[key] = record
        if record.get("stage") == "settled" and key not in self.settled_seen:
            self.settled_seen.add(key)
            state = record.get("state") or {}
            outcome = state.get("outcome") or {}
            seller = (record.get("request") or {}).get("seller") or (
                state.get("config") or {}).get("seller")
            at = (record.get("finished_ms") or outcome.get("closed_at") or now * 1000) / 1000
            for award in outcome.get("awards") or ():
                self.transfers.append({"at": at, "from": award.get("bidder"), "to": seller,
                                       "amount": award.get("price"), "auction": key})
            self.touch("accounts")
        self.touch("auctions", "cluster")
