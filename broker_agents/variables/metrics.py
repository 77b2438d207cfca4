"""Prometheus metrics of cluster-wide variables (labels: space names and actions, bounded)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from broker_agents.logging import get_logger
from broker_agents.ratelog import RateLimitedLog

SETS = Counter("ba_variables_sets_total",
               "Committed set commands that changed a value, as applied by this member",
               ["space"])
REJECTED = Counter("ba_variables_rejected_total",
                   "Commands the state machine rejected, by error code", ["code"])
VERSION = Gauge("ba_variables_version", "Space version last applied by this member", ["space"])
ADAPTATIONS = Counter("ba_variables_adaptations_total",
                      "Adaptation engine steps, by the step's action", ["space", "action"])
ENGINE_PROPOSALS = Counter("ba_variables_engine_proposals_total",
                           "Values the engine proposed, by outcome", ["space", "outcome"])
ENGINE_STEP = Histogram("ba_variables_engine_step_seconds",
                        "Feedback in -> engine step done (proposal committed, if any)",
                        ["space"], buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25,
                                            .5, 1.0))
ENGINE_ACTIVE = Gauge("ba_variables_engine_active",
                      "1 while this node's engine adapts the space (its member leads)",
                      ["space"])
EVENTS_DROPPED = Counter("ba_variables_events_dropped_total",
                         "Change events dropped because the publisher fell behind")
SKIPPED = Counter("ba_variables_records_skipped_total",
                  "Corrupt or foreign variables records skipped (a space in a group's "
                  "reply, a change event) or replies refused as malformed, by source",
                  ["source"])

_skips = RateLimitedLog(get_logger(component="variables"))


def skipped_record(source: str, key: str, exc: Exception) -> str:
    """Count and log (once per window and source) a record skipped; returns why."""
    why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    SKIPPED.labels(source).inc()
    _skips.warning(("skipped", source), "variables.record_skipped", source=source,
                   record=key[:200], error=why)
    return why
