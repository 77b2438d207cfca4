"""Bank invariant: money is conserved by every transfer, and no balance goes negative.

The ledger (``broker_agents.core.budget``) keeps escrow *inside* the balance (a hold only
lowers ``available``), so holds are never added on top: what is conserved is

    sum(balance) + in-flight settlements == money the treasury put in (net)

where, from the accounts as read (one consistent record per account, the records read one
after the other while transfers go on):

- an in-flight settlement is a payment of a stored auction outcome whose payer shows its
  ``debit:<auction>`` but whose seller does not (yet) show ``credit:<auction>:<payer>``
  (and counts negatively the other way round, when the seller's record was read after the
  credit and the payer's before the debit): each half moves its amount in the same record
  that says it was applied, so this holds for any interleaving of reads and settlements;
- the treasury's net is the signed amount of every ``deposit:<op>``/``withdraw:<op>`` the
  accounts show applied, with the amounts the harness asked for (a deposit the harness
  never asked for is minted money, a violation).

The amounts come from the auction records and the harness's own requests, not from the
accounts' cumulative ``paid``/``received`` counters (those are the audit's, ``check_books``).
At the end (``final``), nothing may be in flight any more, and every treasury transfer is
whole: its withdrawal applied iff its deposit did.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from broker_agents.core.budget import Account
from chaos.checkers.result import CheckResult

TOLERANCE = 1e-6  # money is a float: totals are conserved up to rounding


@dataclass(frozen=True)
class Payment:
    """One payer's payment to the seller in a stored auction outcome."""

    auction_id: str
    payer: str
    seller: str
    amount: float


def check_conservation(accounts: Sequence[Account], payments: Iterable[Payment],
                       treasury: Mapping[str, float], *, label: str = "final",
                       transfers: Sequence[tuple[str, str]] = (),
                       final: bool = False) -> CheckResult:
    """``treasury``: applied-op key (``deposit:<op>``, ``withdraw:<op>``) -> signed amount
    the harness requested; ``transfers``: (withdraw key, deposit key) pairs of treasury
    transfers between two accounts; ``final``: every settlement and transfer has ended."""
    by_owner = {a.owner: a for a in accounts}
    violations = []
    for acc in accounts:
        if acc.balance < 0:
            violations.append(f"account {acc.owner!r} negative ({acc.balance})")
        if acc.reserved > acc.balance + TOLERANCE:
            violations.append(f"account {acc.owner!r} holds {acc.reserved} above its "
                              f"balance {acc.balance}")
    applied = {key: owner for owner, acc in by_owner.items() for key in acc.applied}
    net_in = math.fsum(amount for key, amount in treasury.items() if key in applied)
    for key, owner in sorted(applied.items()):
        if key.split(":", 1)[0] in ("deposit", "withdraw") and key not in treasury:
            violations.append(f"account {owner!r} applied {key!r}, which nobody requested")
    in_flight: list[float] = []
    known: set[str] = set()
    for pay in payments:
        debited = f"debit:{pay.auction_id}" in _applied(by_owner, pay.payer)
        credited = f"credit:{pay.auction_id}:{pay.payer}" in _applied(by_owner, pay.seller)
        known.add(f"debit:{pay.auction_id}:{pay.payer}")
        if debited != credited:
            in_flight.append(pay.amount if debited else -pay.amount)
            if final:
                half = "debited, never credited" if debited else "credited, never debited"
                violations.append(f"auction {pay.auction_id!r}: {pay.payer!r} -> "
                                  f"{pay.seller!r} {pay.amount} {half}")
    for owner, acc in sorted(by_owner.items()):
        for key in acc.applied:
            if key.startswith("debit:") and f"{key}:{owner}" not in known:
                violations.append(f"account {owner!r} paid {key!r}: no stored outcome "
                                  "names that payment")
    total = math.fsum(a.balance for a in accounts)
    flight = math.fsum(in_flight)
    if not math.isclose(total + flight, net_in, rel_tol=1e-12, abs_tol=TOLERANCE):
        violations.append(f"money not conserved ({label}): balances {total:.6f} + in flight "
                          f"{flight:.6f} != treasury net {net_in:.6f} (difference "
                          f"{total + flight - net_in:+.6f})")
    if final:
        for withdrawal, deposit in transfers:
            if (withdrawal in applied) != (deposit in applied):
                half = "withdrawn" if withdrawal in applied else "deposited"
                violations.append(f"treasury transfer {withdrawal!r} -> {deposit!r} is half "
                                  f"applied ({half} only)")
    return CheckResult.of("bank-conservation", violations, label=label,
                          accounts=len(accounts), balance=round(total, 6),
                          in_flight=round(flight, 6), treasury_net=round(net_in, 6),
                          held=round(math.fsum(a.reserved for a in accounts), 6))


def _applied(by_owner: Mapping[str, Account], owner: str) -> tuple[str, ...]:
    acc = by_owner.get(owner)
    return () if acc is None else acc.applied
