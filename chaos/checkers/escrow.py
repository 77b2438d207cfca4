"""Escrow invariant: once every auction has finished, no account holds money for any.

The verdict on each hold is the one the auctioneers' reconcile and ``broker-agents auction
audit`` use (``broker_agents.core.auction.audit``): a hold is dangling when it is orphaned
(its auction is terminal, or unknown past the grace period) or unexpected (its auction's
stage forbids it). An auction still running at the end is itself reported, since its holds
may stay.
"""

from __future__ import annotations

from collections.abc import Mapping

from broker_agents.core.auction.audit import AuctionView, Audit, Verdict
from broker_agents.core.auction.settlement import TERMINAL
from chaos.checkers.result import CheckResult

DANGLING = (Verdict.ORPHANED, Verdict.UNEXPECTED, Verdict.PENDING)


def check_no_dangling_holds(report: Audit,
                            auctions: Mapping[str, AuctionView | None]) -> CheckResult:
    """``report``: the audit of the final state (taken with the grace period the caller
    chose); ``auctions``: every stored auction's view (None: unreadable)."""
    violations = []
    for h in report.holds:
        if h.verdict in DANGLING:
            where = str(h.stage) if h.stage is not None else "no auction record"
            violations.append(f"account {h.account!r} still holds {h.amount} for auction "
                              f"{h.auction_id!r} ({where}): {h.verdict}"
                              + (f" ({h.reason})" if h.reason else ""))
    for auction, view in sorted(auctions.items()):
        if view is None:
            violations.append(f"auction {auction!r} has an unreadable record")
        elif view.stage not in TERMINAL:
            violations.append(f"auction {auction!r} never finished (stage {str(view.stage)!r})")
    return CheckResult.of("no-dangling-escrow", violations, accounts=report.totals.accounts,
                          auctions=len(auctions), holds=len(report.holds),
                          held=report.totals.held)
