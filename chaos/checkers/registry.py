"""Registry liveness invariants: a killed node's agents disappear in time, a live node's
agents are (again) registered after the final heal."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from chaos.checkers.result import CheckResult


@dataclass(frozen=True)
class Outage:
    """A node daemon was down (kill -9) from ``down`` until ``up`` (monotonic seconds)."""

    node_id: str
    agents: tuple[str, ...]
    down: float
    up: float


def check_reaped_within(outages: Iterable[Outage], deletes: Mapping[str, Sequence[float]],
                        bound: float) -> CheckResult:
    """Every agent of a killed node must be deleted from the bucket within ``bound`` s.

    ``deletes`` maps agent id to the (monotonic) times its deletion was observed. Outages
    shorter than ``bound`` cannot show it and are only counted.
    """
    violations = []
    worst: float | None = None
    checked = skipped = 0
    for out in outages:
        if out.up - out.down < bound:
            skipped += 1
            continue
        checked += 1
        for agent in out.agents:
            seen = [t for t in deletes.get(agent, ()) if out.down <= t <= out.up]
            if not seen:
                violations.append(f"agent {agent!r} of killed node {out.node_id!r} still "
                                  f"registered {out.up - out.down:.2f}s after the kill "
                                  f"(limit {bound:.2f}s)")
                continue
            took = min(seen) - out.down
            worst = took if worst is None else max(worst, took)
            if took > bound:
                violations.append(f"agent {agent!r} of killed node {out.node_id!r} removed "
                                  f"{took:.2f}s after the kill (limit {bound:.2f}s)")
    return CheckResult.of("dead-node-agents-reaped", violations, outages_checked=checked,
                          outages_too_short=skipped, bound_s=bound,
                          recovery_s=None if worst is None else round(worst, 3))


def check_live_agents_registered(heal_time: float,
                                 samples: Iterable[tuple[float, frozenset[str]]],
                                 hosted: Iterable[str], within: float = 5.0) -> CheckResult:
    """Every agent hosted by a running node is in the bucket within ``within`` s of the heal
    and stays there; ``samples`` are (time, agent ids in the bucket) after the heal."""
    want = set(hosted)
    ordered = sorted(samples, key=lambda s: s[0])
    if not ordered:
        return CheckResult.of("live-agents-registered", ["no bucket samples after the heal"],
                              recovery_s=None)
    missing_last = sorted(want - ordered[-1][1])
    if missing_last:
        return CheckResult.of("live-agents-registered", [
            f"agents hosted by running nodes missing from the registry "
            f"{ordered[-1][0] - heal_time:.2f}s after the final heal: {missing_last}"],
            recovery_s=None)
    last_bad = max((t for t, keys in ordered if not want <= keys), default=None)
    first_good = next(t for t, keys in ordered
                      if want <= keys and (last_bad is None or t > last_bad))
    took = max(first_good - heal_time, 0.0)
    violations = []
    if took > within:
        violations.append(f"live agents registered again only {took:.2f}s after the final "
                          f"heal (limit {within}s)")
    return CheckResult.of("live-agents-registered", violations, recovery_s=round(took, 3),
                          agents=len(want))
