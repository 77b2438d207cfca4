"""Escrow invariant: once every auction has finished, no account holds money for any."""

from __future__ import annotations

from collections.abc import Mapping

from chaos.checkers.result import CheckResult


def check_no_dangling_holds(holds: Mapping[str, Mapping[str, float]],
                            stages: Mapping[str, str],
                            terminal: frozenset[str] = frozenset(
                                {"settled", "unsold", "failed"})) -> CheckResult:
    """``holds``: account -> {auction id: amount}; ``stages``: auction id -> stage.

    A hold is dangling when its auction is finished (or unknown to the auctions bucket);
    an auction still running at the end is itself reported, since its holds may stay.
    """
    violations = []
    for account, held in sorted(holds.items()):
        for auction, amount in sorted(held.items()):
            stage = stages.get(auction)
            if stage is None or stage in terminal:
                violations.append(f"account {account!r} still holds {amount} for auction "
                                  f"{auction!r} ({stage or 'no auction record'})")
    unfinished = sorted(a for a, s in stages.items() if s not in terminal)
    for auction in unfinished:
        violations.append(f"auction {auction!r} never finished (stage {stages[auction]!r})")
    return CheckResult.of("no-dangling-escrow", violations, accounts=len(holds),
                          auctions=len(stages))
