"""The escrow and money audit: which holds are orphaned, and whether the books balance.

Pure: given the accounts and what the auctions bucket says of the auctions their holds
name (the stage, and what each payer owes when the record was read in full), decide. One
decision, three users: the auctioneers' reconcile releases exactly what ``orphans``
returns (at every sweep, takeover and abort), ``broker-agents auction audit`` prints
``audit``, and the chaos checkers judge the final state with ``audit``.

A hold is judged against its auction's stage (``settlement.HOLDS``):

- ``orphaned``: the auction is terminal (nothing will ever consume or release the hold
  but the reconcile), or no auction record exists and the hold is older than the grace
  period (a hold is taken only after its record was created; the grace covers a reader
  whose view of the auctions bucket lags behind the accounts);
- ``pending``: no auction record, within the grace period;
- ``unexpected``: the auction is still running, but its stage forbids this hold (``open``),
  the account is not one of its payers, or the amount is not what the payer owes. Never
  released automatically (the auction may still need it); reported by the audit;
- ``unreadable``: the auction record exists but could not be decoded: skipped, never
  released on a guess;
- ``in_flight``: anything else; the auction's driver consumes or releases it.

Conservation: per account ``balance == deposited - withdrawn - paid + received``
(``core.budget`` keeps the four cumulative fields), balances never negative, escrow within
the balance; over all accounts, total paid == total received unless a settlement is in
flight (an auction stored as ``acked``: its payer may be debited while its seller is not
credited yet). Money is a float: comparisons allow ``TOLERANCE``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from broker_agents.core.auction.settlement import HOLDS, TERMINAL, Holds, Stage
from broker_agents.core.budget import Account, Hold

TOLERANCE = 1e-6
"""Absolute slack (in money units) when sums of floats are compared."""


class Verdict(StrEnum):
    IN_FLIGHT = "in_flight"
    PENDING = "pending"
    ORPHANED = "orphaned"
    UNEXPECTED = "unexpected"
    UNREADABLE = "unreadable"


class Reason(StrEnum):
    """Why a hold is orphaned or unexpected (a bounded metric label)."""

    TERMINAL = "terminal"
    UNKNOWN_AUCTION = "unknown_auction"
    STAGE_FORBIDS = "stage_forbids"
    NOT_A_PAYER = "not_a_payer"
    WRONG_AMOUNT = "wrong_amount"


@dataclass(frozen=True, slots=True)
class AuctionView:
    """What the audit needs of an auction record. ``owed``: payer -> total from the stored
    outcome; None when only the stage was read (the reconcile sweep peeks)."""

    stage: Stage
    owed: Mapping[str, float] | None = None


UNREADABLE = None
"""The value of an auction id whose record exists but does not decode (``auctions`` map)."""


@dataclass(frozen=True, slots=True)
class HoldReport:
    account: str
    auction_id: str
    amount: float
    taken_ms: int | None
    by: str | None
    lease: int | None
    stage: Stage | None
    verdict: Verdict
    reason: Reason | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in asdict(self).items()}


def judge_hold(account: str, auction_id: str, hold: Hold,
               auctions: Mapping[str, AuctionView | None], now_ms: int,
               grace_ms: int) -> HoldReport:
    """One hold's verdict (see the module docstring)."""
    def report(verdict: Verdict, reason: Reason | None = None,
               stage: Stage | None = None) -> HoldReport:
        return HoldReport(account, auction_id, hold.amount, hold.taken_ms, hold.by, hold.lease,
                          stage, verdict, reason)

    if auction_id not in auctions:
        age = None if hold.taken_ms is None else now_ms - hold.taken_ms
        if age is None or age > grace_ms:  # a hold from before holds had a time: old
            return report(Verdict.ORPHANED, Reason.UNKNOWN_AUCTION)
        return report(Verdict.PENDING)
    view = auctions[auction_id]
    if view is None:
        return report(Verdict.UNREADABLE)
    stage = view.stage
    if stage in TERMINAL:
        return report(Verdict.ORPHANED, Reason.TERMINAL, stage)
    if HOLDS[stage] is Holds.NONE:
        return report(Verdict.UNEXPECTED, Reason.STAGE_FORBIDS, stage)
    if view.owed is not None:
        owed = view.owed.get(account)
        if owed is None:
            return report(Verdict.UNEXPECTED, Reason.NOT_A_PAYER, stage)
        if not math.isclose(owed, hold.amount, abs_tol=TOLERANCE):
            return report(Verdict.UNEXPECTED, Reason.WRONG_AMOUNT, stage)
    return report(Verdict.IN_FLIGHT, stage=stage)


def judge_holds(accounts: Iterable[Account], auctions: Mapping[str, AuctionView | None],
                now_ms: int, grace_ms: int) -> list[HoldReport]:
    """Every hold of every account, judged; sorted by account then auction."""
    return [judge_hold(acc.owner, aid, hold, auctions, now_ms, grace_ms)
            for acc in sorted(accounts, key=lambda a: a.owner)
            for aid, hold in sorted(acc.holds.items())]


def orphans(accounts: Iterable[Account], auctions: Mapping[str, AuctionView | None],
            now_ms: int, grace_ms: int) -> list[HoldReport]:
    """The holds the reconcile must release."""
    return [h for h in judge_holds(accounts, auctions, now_ms, grace_ms)
            if h.verdict is Verdict.ORPHANED]


@dataclass(frozen=True, slots=True)
class BalanceReport:
    owner: str
    balance: float
    reserved: float
    available: float
    deposited: float
    paid: float
    received: float
    withdrawn: float = 0.0
    frozen: bool = False

    @classmethod
    def of(cls, acc: Account) -> BalanceReport:
        return cls(acc.owner, acc.balance, acc.reserved, acc.available, acc.deposited,
                   acc.paid, acc.received, acc.withdrawn, acc.frozen)

    def problems(self) -> list[str]:
        out = []
        if self.balance < 0:
            out.append(f"account {self.owner!r} is negative ({self.balance})")
        if self.reserved > self.balance + TOLERANCE:
            out.append(f"account {self.owner!r} holds {self.reserved}, more than its "
                       f"balance {self.balance}")
        expected = self.deposited - self.withdrawn - self.paid + self.received
        if not math.isclose(self.balance, expected, abs_tol=TOLERANCE):
            out.append(f"account {self.owner!r}: balance {self.balance} != deposited "
                       f"{self.deposited} - withdrawn {self.withdrawn} - paid {self.paid} "
                       f"+ received {self.received} (= {expected})")
        return out


@dataclass(frozen=True, slots=True)
class Totals:
    accounts: int
    balance: float
    held: float
    deposited: float
    paid: float
    received: float
    settling: int  # auctions stored as acked: a payment may be half applied
    withdrawn: float = 0.0

    @property
    def balanced(self) -> bool:
        """Total paid equals total received (meaningful once nothing is settling)."""
        return math.isclose(self.paid, self.received, abs_tol=TOLERANCE)


@dataclass(frozen=True, slots=True)
class Audit:
    """``book_problems``: balances and totals that do not add up; ``hold_problems``:
    orphaned and unexpected holds; ``problems``: both."""

    holds: list[HoldReport]
    balances: list[BalanceReport]
    totals: Totals
    book_problems: list[str] = field(default_factory=list)

    @property
    def hold_problems(self) -> list[str]:
        return [_describe(h) for h in self.holds
                if h.verdict in (Verdict.ORPHANED, Verdict.UNEXPECTED)]

    @property
    def problems(self) -> list[str]:
        return self.hold_problems + self.book_problems

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def orphaned(self) -> list[HoldReport]:
        return [h for h in self.holds if h.verdict is Verdict.ORPHANED]

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems,
                "holds": [h.to_json() for h in self.holds],
                "balances": [asdict(b) for b in self.balances],
                "totals": {**asdict(self.totals), "balanced": self.totals.balanced}}


def audit(accounts: Iterable[Account], auctions: Mapping[str, AuctionView | None],
          now_ms: int, grace_ms: int) -> Audit:
    """Holds, balances and conservation totals, and every problem found (orphaned or
    unexpected holds, broken per-account identities, paid != received at rest)."""
    every = sorted(accounts, key=lambda a: a.owner)
    holds = judge_holds(every, auctions, now_ms, grace_ms)
    balances = [BalanceReport.of(a) for a in every]
    problems: list[str] = []
    for b in balances:
        problems += b.problems()
    totals = Totals(
        accounts=len(every), balance=math.fsum(a.balance for a in every),
        held=math.fsum(a.reserved for a in every),
        deposited=math.fsum(a.deposited for a in every),
        withdrawn=math.fsum(a.withdrawn for a in every),
        paid=math.fsum(a.paid for a in every), received=math.fsum(a.received for a in every),
        settling=sum(1 for v in auctions.values() if v is not None and v.stage is Stage.ACKED))
    if not totals.settling and not totals.balanced:
        problems.append(f"money not conserved: total paid {totals.paid} != total received "
                        f"{totals.received} with no settlement in flight")
    return Audit(holds, balances, totals, problems)


def _describe(h: HoldReport) -> str:
    where = str(h.stage) if h.stage is not None else "no auction record"
    return (f"account {h.account!r} holds {h.amount} for auction {h.auction_id!r} "
            f"({where}): {h.verdict} ({h.reason})")


__all__ = [
    "TOLERANCE",
    "UNREADABLE",
    "AuctionView",
    "Audit",
    "BalanceReport",
    "HoldReport",
    "Reason",
    "Totals",
    "Verdict",
    "audit",
    "judge_hold",
    "judge_holds",
    "orphans",
]
