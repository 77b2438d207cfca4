"""Prometheus metrics of the registry: view freshness, writes, CAS conflicts, reaping.

View gauges carry a ``view`` label (a node runs one view per bucket; tests run several
in one process). Other labels are small closed sets.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

VIEW_REVISION = Gauge(
    "ba_registry_view_revision", "Last bucket revision applied to the local view", ["view"]
)
VIEW_LAG = Gauge(
    "ba_registry_view_lag_revisions",
    "Bucket last revision minus the view's, at the last freshness check", ["view"],
)
VIEW_STALENESS = Gauge(
    "ba_registry_view_staleness_seconds",
    "Seconds since the view was last known to be caught up with the bucket", ["view"],
)
VIEW_SINCE_UPDATE = Gauge(
    "ba_registry_view_seconds_since_update", "Seconds since the view applied an entry",
    ["view"],
)
VIEW_RESYNCS = Counter(
    "ba_registry_view_resyncs_total", "Re-lists of the bucket by the local view",
    ["view", "reason"],
)
VIEW_DUPLICATES = Counter(
    "ba_registry_view_ignored_entries_total",
    "Watch entries ignored as duplicates or out of date", ["view"],
)
AGENTS = Gauge("ba_registry_agents", "Agents in the local view by health", ["view", "health"])
WRITES = Counter(
    "ba_registry_writes_total", "Registry writes by operation and outcome", ["op", "outcome"]
)
CAS_CONFLICTS = Counter(
    "ba_registry_cas_conflicts_total", "Compare-and-set conflicts (retried or lost)", ["op"]
)
REAPED = Counter(
    "ba_registry_reaped_total", "Reaper actions that won their compare-and-set", ["action"]
)
REAP_LOST = Counter(
    "ba_registry_reap_lost_total", "Reaper actions that lost their compare-and-set", ["action"]
)
REAPER_VIEW = Counter(
    "ba_registry_reaper_view_changes_total",
    "The reaper's own heartbeat stood still in its view (stale: it judges nobody) or "
    "moved again (live)", ["state"],
)
HEARTBEATS = Counter("ba_registry_node_heartbeats_total", "Node heartbeats written", ["outcome"])
REQUESTS = Counter(
    "ba_registry_requests_total", "Registry requests served", ["op", "outcome"]
)
HEALED = Counter(
    "ba_registry_healed_total",
    "Records of this node's live agents it rewrote (deleted, corrupt, foreign, overwritten) "
    "or records claiming this node for agents it does not host that it removed (orphan)",
    ["reason"],
)
CLAIMS = Counter(
    "ba_registry_claims_total",
    "Agent id claims before hosting: created, reclaimed (this node held it), taken_over "
    "(a dead node held it), refused (a live node holds it: already_exists), conflict",
    ["outcome"],
)
