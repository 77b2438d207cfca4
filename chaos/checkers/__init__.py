"""History checkers: each returns a CheckResult naming the ops that break its invariant."""

from chaos.checkers.invariants import check_no_lost_writes, check_one_leader_per_term
from chaos.checkers.linearizable import check_register
from chaos.checkers.money import check_awards, check_balances
from chaos.checkers.recovery import check_convergence, check_leader_recovery
from chaos.checkers.result import CheckResult

__all__ = [
    "CheckResult",
    "check_awards",
    "check_balances",
    "check_convergence",
    "check_leader_recovery",
    "check_no_lost_writes",
    "check_one_leader_per_term",
    "check_register",
]
