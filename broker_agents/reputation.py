"""Reputation in KV, one book for every capability that reads or writes it.

Auctions write it (counterparties of a settled auction report on each other) and read it
(``min_reputation`` gates who is invited); weighted votes and ensembles read it
(``weight_source="reputation"``). The rules (one report per task, decay, the score) are
the pure ``core.reputation``; this module applies them to the ``<p>_reputation`` bucket
with compare-and-set, so they hold under any interleaving of writers on any nodes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from broker_agents.core import reputation
from broker_agents.core.reputation import Reputation
from broker_agents.kv import CasBook, open_bucket
from broker_agents.subjects import Subjects


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


async def open_reputation(js: Any, subjects: Subjects) -> ReputationBook:
    """The book over ``<p>_reputation``, read straight from the bucket (created if missing)."""
    return ReputationBook(await open_bucket(js, subjects.bucket("reputation")))
