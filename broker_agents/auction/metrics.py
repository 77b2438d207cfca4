"""Prometheus metrics of the auction drivers (``ba_auction_*``); labels stay bounded."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

AUCTIONS = Counter("ba_auction_auctions_total", "Auctions finished",
                   ["mechanism", "outcome"])
BIDS = Counter("ba_auction_bids_total", "Bid messages judged", ["outcome"])
DURATION = Histogram("ba_auction_duration_seconds", "Request to settled/unsold/failed",
                     ["mechanism"],
                     buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
SETTLEMENTS = Counter("ba_auction_settlements_total", "Payer settlements applied")
TAKEOVERS = Counter("ba_auction_takeovers_total", "Auctions taken over from a dead owner")
LEASES_LOST = Counter("ba_auction_leases_lost_total", "Auctions whose lease we lost")
HOLDS_RELEASED = Counter("ba_auction_holds_released_total",
                         "Orphaned escrow holds released by the reconcile", ["reason"])
HOLDS_FENCED = Counter("ba_auction_holds_fenced_total",
                       "Late holds refused because the auction's escrow was released or paid",
                       ["fenced"])
RECONCILE_SKIPPED = Counter("ba_auction_reconcile_skipped_total",
                            "Records a reconcile or audit skipped", ["bucket", "reason"])
RECONCILE_ERRORS = Counter("ba_auction_reconcile_errors_total",
                           "Orphan releases that failed (tried again at the next sweep)")
