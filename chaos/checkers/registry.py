"""Registry liveness invariants: a killed or paused node's agents disappear in time, a
paused node's agents are registered again after it resumes, a live node's agents are
(again) registered after the final heal.

A paused node (SIGSTOP) is indistinguishable from a dead one for the others: its
heartbeat stops, so its agents are reaped exactly as a killed node's are, and the same
bound applies. Unlike a killed node it comes back with its state: its heartbeat
re-registers what was reaped while it was away.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from chaos.checkers.result import CheckResult


@dataclass(frozen=True)
class Outage:
    """A node daemon was down (kill -9, or paused by SIGSTOP) from ``down`` until ``up``
    (monotonic seconds)."""

    node_id: str
    agents: tuple[str, ...]
    down: float
    up: float
    kind: str = "kill_node"


def check_reaped_within(outages: Iterable[Outage], deletes: Mapping[str, Sequence[float]],
                        bound: float, adds: Mapping[str, Sequence[float]] | None = None,
                        ) -> CheckResult:
    """Every agent of a killed (or paused) node that was registered when it went down must
    be deleted from the bucket within ``bound`` s.

    ``deletes`` and ``adds`` map agent id to the (monotonic) times its deletion / its
    (re-)registration was observed; an agent with no event before the outage counts as
    registered. One that was gone already (reaped while its node was cut off just before,
    or not yet re-registered by a daemon that was still restarting) has nothing to reap;
    one that appears during the outage (a write in flight at the kill) must go within
    ``bound`` of appearing. Outages shorter than ``bound`` cannot show it and are only
    counted.
    """
    violations = []
    worst: float | None = None
    checked = skipped = gone = 0
    for out in outages:
        if out.up - out.down < bound:
            skipped += 1
            continue
        checked += 1
        for agent in out.agents:
            added = (adds or {}).get(agent, ())
            removed = deletes.get(agent, ())
            start = out.down if _registered_at(out.down, added, removed) else min(
                (t for t in added if out.down < t <= out.up), default=None)
            if start is None:
                gone += 1
                continue
            if out.up - start < bound:
                continue
            seen = [t for t in removed if start <= t <= out.up]
            if not seen:
                violations.append(f"agent {agent!r} of {_what(out)} {out.node_id!r} still "
                                  f"registered {out.up - start:.2f}s after the "
                                  f"{_act(out)} (limit {bound:.2f}s)")
                continue
            took = min(seen) - start
            worst = took if worst is None else max(worst, took)
            if took > bound:
                violations.append(f"agent {agent!r} of {_what(out)} {out.node_id!r} removed "
                                  f"{took:.2f}s after the {_act(out)} (limit {bound:.2f}s)")
    return CheckResult.of("dead-node-agents-reaped", violations, outages_checked=checked,
                          outages_too_short=skipped, already_gone=gone, bound_s=bound,
                          recovery_s=None if worst is None else round(worst, 3))


def _registered_at(t: float, added: Sequence[float], removed: Sequence[float]) -> bool:
    """Whether the last add/remove event at or before ``t`` was an add (none: it was)."""
    last_add = max((a for a in added if a <= t), default=None)
    last_remove = max((r for r in removed if r <= t), default=None)
    return last_remove is None or (last_add is not None and last_add > last_remove)


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


def check_back_after_pause(outages: Iterable[Outage], removed: Mapping[str, Sequence[float]],
                           added: Mapping[str, Sequence[float]], within: float
                           ) -> CheckResult:
    """Every agent of a paused node that was removed while it was paused is registered
    again within ``within`` s of the resume (its own heartbeat restores it). ``removed``
    and ``added`` map agent id to the (monotonic) times the bucket lost / gained it.
    Whether it then stays is the business of later faults and the final checks."""
    violations = []
    worst: float | None = None
    checked = 0
    for out in outages:
        if out.kind != "pause_node":
            continue
        for agent in out.agents:
            gone = [t for t in removed.get(agent, ()) if out.down <= t <= out.up]
            if not gone:
                continue
            checked += 1
            back = [t for t in added.get(agent, ()) if t > max(gone)]
            took = (min(back) - out.up) if back else None
            if took is None or took > within:
                seen = "never" if took is None else f"{took:.2f}s after the resume"
                violations.append(f"agent {agent!r} of paused node {out.node_id!r} reaped "
                                  f"and registered again {seen} (limit {within:.2f}s)")
            if took is not None:
                worst = max(took, 0.0) if worst is None else max(worst, took)
    return CheckResult.of("paused-agents-return", violations, agents_checked=checked,
                          bound_s=within,
                          recovery_s=None if worst is None else round(worst, 3))


def _what(out: Outage) -> str:
    return "paused node" if out.kind == "pause_node" else "killed node"


def _act(out: Outage) -> str:
    return "pause" if out.kind == "pause_node" else "kill"


def reaps_from_logs(paths: Iterable[Path], wall_to_mono: float
                    ) -> dict[str, list[tuple[float, float]]]:
    """(marked, removed) times, monotonic, of each agent the reapers removed, from their own
    log lines (``registry.reaper.acted``, wall-clock times shifted by ``wall_to_mono``):
    the ground truth a watch can miss, since a key's mark and removal may both land
    between two of its deliveries (a bucket keeps one revision per key)."""
    events = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if '"registry.reaper.acted"' not in line:
                continue
            with contextlib.suppress(ValueError, KeyError):
                entry = json.loads(line)
                at = datetime.fromisoformat(entry["timestamp"]).timestamp() - wall_to_mono
                events.append((at, entry["action"], entry["target"]))
    marks: dict[str, list[float]] = {}
    out: dict[str, list[tuple[float, float]]] = {}
    for at, action, target in sorted(events):
        if action == "mark_unhealthy":
            marks.setdefault(target, []).append(at)
        elif action == "remove_agent":
            marked = [m for m in marks.get(target, ()) if m <= at]
            out.setdefault(target, []).append((marked[-1] if marked else at, at))
    return out
