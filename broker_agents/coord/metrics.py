"""Coordination metrics: per protocol duration and outcomes, PBFT rejections."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

COORD_DURATION = Histogram(
    "ba_coord_duration_seconds", "Coordination request duration", ["protocol"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
COORD_TOTAL = Counter(
    "ba_coord_total", "Coordination requests by outcome", ["protocol", "outcome"]
)
PARTICIPANT_ANSWERS = Counter(
    "ba_coord_participant_answers_total", "Participant answers by status", ["status"]
)
PBFT_REJECTED = Counter(
    "ba_pbft_rejected_total", "PBFT messages a replica rejected, by kind",
    ["agent", "kind"],
)
PBFT_DECIDED = Counter("ba_pbft_decided_total", "Sequences a replica decided", ["agent"])
PBFT_VIEW_CHANGES = Counter(
    "ba_pbft_views_entered_total", "New views a replica entered", ["agent"]
)
COORD_REFUSED = Counter(
    "ba_coord_refused_total",
    "Coordination requests refused before running: a requester's quota "
    "(requester_inflight, requester_rate), a bound, live PBFT groups, the global limit",
    ["protocol", "reason"],
)
PBFT_SETUP_REFUSED = Counter(
    "ba_pbft_setup_refused_total",
    "PBFT set-ups a replica refused: not from a node, tick or lifetime past its bounds, "
    "too many live groups", ["agent", "reason"],
)
