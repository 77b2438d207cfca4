"""Recovery after the final heal, measured from recorded (monotonic) timestamps."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from chaos.checkers.linearizable import freeze
from chaos.checkers.result import CheckResult


def check_leader_recovery(heal_time: float,
                          observations: Iterable[tuple[float, str, int, str]],
                          within: float = 2.0) -> CheckResult:
    """A leader must be observed within ``within`` s of ``heal_time``.

    ``observations`` are (time, member, term, role) samples taken after the faults.
    """
    after = sorted(o for o in observations if o[0] >= heal_time and o[3] == "leader")
    if not after:
        return CheckResult.of("leader-recovery",
                              [f"no leader observed after the final heal at t={heal_time:.3f}"],
                              recovery_s=None)
    at, member, term, _ = after[0]
    took = at - heal_time
    violations = []
    if took > within:
        violations.append(f"first leader ({member}, term {term}) {took:.3f}s after the final "
                          f"heal (limit {within}s)")
    return CheckResult.of("leader-recovery", violations, recovery_s=round(took, 6),
                          leader=member, term=term)


def check_convergence(heal_time: float, views: Iterable[tuple[float, str, Any]],
                      expected: Any, within: float = 5.0) -> CheckResult:
    """Every node's view must equal ``expected`` within ``within`` s of the heal, and stay.

    ``views`` are (time, node, view) samples; a node converged at the first sample after
    its last differing sample (but not before the heal).
    """
    want = freeze(expected)
    by_node: dict[str, list[tuple[float, Any]]] = defaultdict(list)
    for at, node, view in views:
        by_node[node].append((at, freeze(view)))
    violations = []
    times: dict[str, float | None] = {}
    for node, samples in sorted(by_node.items()):
        samples.sort(key=lambda s: s[0])
        if samples[-1][1] != want:
            times[node] = None
            violations.append(f"node {node!r} never converged (last view at "
                              f"t={samples[-1][0]:.3f} differs from the bucket)")
            continue
        last_bad = max((at for at, v in samples if v != want), default=None)
        first_good = next(at for at, v in samples
                          if v == want and (last_bad is None or at > last_bad))
        took = max(first_good - heal_time, 0.0)
        times[node] = round(took, 6)
        if took > within:
            violations.append(f"node {node!r} converged {took:.3f}s after the final heal "
                              f"(limit {within}s)")
    worst = max((t for t in times.values() if t is not None), default=None)
    return CheckResult.of("registry-convergence", violations, recovery_s=worst, nodes=times)
