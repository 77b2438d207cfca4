"""Auction and budget invariants: awards exactly once, balances non-negative and conserved."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from broker_agents.core.auction.audit import Audit
from chaos.checkers.linearizable import freeze
from chaos.checkers.result import CheckResult
from chaos.history import Operation


def check_awards(ops: Sequence[Operation], final_awards: dict[str, Any],
                 settlements: Iterable[str] = (), f: str = "award") -> CheckResult:
    """No acknowledged award lost or made twice.

    ``ops`` with ``f`` carry the auction id as ``key`` and the award as ``result``;
    ``final_awards`` is the durable state (auction id -> award); ``settlements`` lists the
    auction id of every settlement that was applied (each must appear at most once).
    """
    acked: dict[str, list[Operation]] = defaultdict(list)
    for op in ops:
        if op.f == f and op.status == "ok" and op.key is not None:
            acked[op.key].append(op)
    violations = []
    for auction, awards in sorted(acked.items()):
        distinct = {freeze(a.result) for a in awards}
        if len(distinct) > 1:
            ids = ", ".join(str(a.op_id) for a in awards)
            violations.append(f"auction {auction!r}: awarded twice with different outcomes "
                              f"(ops {ids}): {[a.result for a in awards]}")
        if auction not in final_awards:
            ids = ", ".join(str(a.op_id) for a in awards)
            violations.append(f"auction {auction!r}: acknowledged award (op {ids}) lost: "
                              "absent from the final state")
        elif freeze(final_awards[auction]) not in distinct:
            ids = ", ".join(str(a.op_id) for a in awards)
            violations.append(f"auction {auction!r}: acknowledged award (op {ids}) "
                              f"{awards[0].result!r} replaced by {final_awards[auction]!r}")
    for auction, count in sorted(Counter(settlements).items()):
        if count > 1:
            violations.append(f"auction {auction!r}: settled {count} times (must be once)")
    return CheckResult.of("awards-exactly-once", violations, acknowledged=len(acked))


def check_balances(initial: dict[str, int], final: dict[str, int],
                   snapshots: Iterable[tuple[float, str, int]] = (),
                   minted: int = 0, burned: int = 0) -> CheckResult:
    """Balances never negative; money in equals money out (initial + minted = final + burned).

    ``snapshots`` are (time, account, balance) observations taken during the run.
    """
    violations = []
    for at, account, balance in snapshots:
        if balance < 0:
            violations.append(f"account {account!r} negative ({balance}) at t={at:.3f}")
    for account, balance in sorted(final.items()):
        if balance < 0:
            violations.append(f"account {account!r} negative in final state ({balance})")
    missing = sorted(set(initial) - set(final))
    if missing:
        violations.append(f"accounts missing from final state: {missing}")
    total_in = sum(initial.values()) + minted
    total_out = sum(final.values()) + burned
    if total_in != total_out:
        violations.append(f"money not conserved: initial {sum(initial.values())} + minted "
                          f"{minted} = {total_in}, but final {sum(final.values())} + burned "
                          f"{burned} = {total_out} (difference {total_out - total_in:+d})")
    return CheckResult.of("balances", violations, accounts=len(final),
                          total_in=total_in, total_out=total_out)


def check_books(report: Audit, minted: float | None = None) -> CheckResult:
    """The ledger audit's conservation verdict (``broker_agents.core.auction.audit``): per
    account ``balance == deposited - paid + received``, never negative, escrow within the
    balance; total paid == total received once no settlement is in flight; and, when the
    harness knows what it ``minted``, total deposited == minted."""
    t = report.totals
    violations = list(report.book_problems)  # holds are the escrow checker's
    if t.settling:
        violations.append(f"{t.settling} auction(s) still settling: paid {t.paid} vs "
                          f"received {t.received} cannot be judged")
    if minted is not None and abs(t.deposited - minted) > 1e-6:
        violations.append(f"deposits recorded on accounts ({t.deposited}) differ from the "
                          f"money minted ({minted})")
    return CheckResult.of("books-balance", violations, accounts=t.accounts,
                          balance=t.balance, deposited=t.deposited, paid=t.paid,
                          received=t.received, held=t.held)
