"""Reputation in KV, one book for every capability that reads or writes it.

Auctions write it (authenticated counterparties of a settled auction report on each
other; a winner that abandons its award is penalised) and read it (``min_reputation``
gates who is invited); weighted votes and ensembles read it
(``weight_source="reputation"``). The rules (one report per task and reporter, violation
penalties, decay, the score) are the pure ``core.reputation``; this module applies them to
the ``<p>_reputation`` bucket with compare-and-set, so they hold under any interleaving of
writers on any nodes. ``decay_stale`` (the auctioneer's sweeper runs it) rewrites the
stored scores that time has moved, so readers of the raw records see them drift back to
neutral.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

from prometheus_client import Counter

from broker_agents.core import reputation
from broker_agents.core.errors import BrokerError
from broker_agents.core.reputation import Reputation
from broker_agents.kv import CasBook, open_bucket
from broker_agents.logging import get_logger
from broker_agents.ratelog import RateLimitedLog
from broker_agents.subjects import Subjects

REPORTS = Counter("ba_reputation_reports_total",
                  "Reputation reports and violations: accepted, or the refusal's error code",
                  ["outcome"])
_log = RateLimitedLog(get_logger(component="reputation"))
T = TypeVar("T")


async def counted_report(report: Awaitable[T]) -> T:
    """Await a report; count its outcome, and log a refusal (once per window and code)."""
    try:
        result = await report
    except BrokerError as exc:
        REPORTS.labels(str(exc.code)).inc()
        _log.warning(("report", str(exc.code)), "reputation report refused",
                     code=str(exc.code), error=exc.message[:200])
        raise
    REPORTS.labels("accepted").inc()
    return result


def reputation_tick() -> int:
    """Reputation time is in seconds (the core's default half-life is 1000 ticks)."""
    return int(time.time())


class ReputationBook(CasBook):
    """Reputation bucket: reports from counterparties of settled auctions, gated scores."""

    model = Reputation

    async def score(self, agent: str, fresh: bool = True) -> float | None:
        record, _ = await self.read(agent, fresh=fresh)
        if record is None:
            return None
        return reputation.score_at(record, reputation_tick())

    async def scores(self, agents: Sequence[str]) -> dict[str, float]:
        """Scores of ``agents`` read now; an agent without a record (or whose record cannot
        be read) is left out, so a weighted rule gives it the default weight."""
        found = await asyncio.gather(*(self.score(a) for a in agents), return_exceptions=True)
        return {a: float(s) for a, s in zip(agents, found, strict=True)
                if isinstance(s, int | float)}

    async def report(self, report: reputation.Report,
                     settled: reputation.SettledAuction) -> Reputation:
        now = reputation_tick()

        def op(rec: Reputation | None) -> Reputation:
            base = rec if rec is not None else Reputation(agent=report.subject)
            return reputation.record_report(base, report, settled, now)
        return await self.apply(report.subject, op)  # type: ignore[no-any-return]

    async def violation(self, subject: str, reporter: str, violation: reputation.Violation,
                        settled: reputation.SettledAuction) -> Reputation:
        """Penalise ``subject`` (once per task) on its counterparty ``reporter``'s word."""
        now = reputation_tick()

        def op(rec: Reputation | None) -> Reputation:
            base = rec if rec is not None else Reputation(agent=subject)
            return reputation.record_violation(base, reporter, violation, settled, now)
        return await self.apply(subject, op)  # type: ignore[no-any-return]

    async def decay_stale(self, values: Mapping[str, tuple[bytes, int]], limit: int) -> int:
        """Decay up to ``limit`` of the records in ``values`` (a mirror's: key -> (value,
        revision)) whose stored score time has moved; how many were rewritten. Unreadable
        records are left alone (skipped and counted where the mirror is read)."""
        now = reputation_tick()
        done = 0
        for key, (data, rev) in list(values.items()):
            if done >= limit:
                break
            try:
                record = self._cached(key, data, rev)
            except Exception:
                continue  # corrupt or foreign: skipped where the mirror is read
            if reputation.needs_decay(record, now):
                await self.apply(key, lambda r: r if r is None else reputation.decay(r, now))
                done += 1
        return done


async def open_reputation(js: Any, subjects: Subjects) -> ReputationBook:
    """The book over ``<p>_reputation``, read straight from the bucket (created if missing)."""
    return ReputationBook(await open_bucket(js, subjects.bucket("reputation")))
