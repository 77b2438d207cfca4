"""Rolling upgrades of the harness's node daemons: which build a daemon runs, a planned
restart onto another build (SIGTERM, then the new build on the same data dir), waiting
until its Raft members have caught up, and the commit gap the load saw meanwhile.

A build is the module a daemon's command runs (``BUILDS``): N is ``node.cli`` itself, N+1
is ``chaos.next_node`` (``chaos.builds``). The argv keeps whatever wraps it (a netns host's
``ip netns exec``), only the module after ``-m`` changes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from chaos.nodes import NodeDaemon

BUILDS = {"N": "node.cli", "N+1": "chaos.next_node"}
STOP_TIMEOUT = 20.0  # SIGTERM, then SIGKILL: above the node's own shutdown deadline (10 s)


def build_of(daemon: NodeDaemon) -> str:
    argv = list(daemon.proc.argv)
    module = argv[argv.index("-m") + 1]
    return next(name for name, mod in BUILDS.items() if mod == module)


def set_build(daemon: NodeDaemon, build: str) -> None:
    """Run ``build`` at the daemon's next start (same env, data dir and ports)."""
    argv = list(daemon.proc.argv)
    argv[argv.index("-m") + 1] = BUILDS[build]
    daemon.proc.argv = argv


def raft_gauges(text: str, group: str) -> dict[str, dict[str, float]]:
    """member -> {metric name: value} of ``group``'s ``ba_raft_*`` gauges in one exposition."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("ba_raft_"):
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get("group") == group and "member" in labels:
                out.setdefault(labels["member"], {})[sample.name] = sample.value
    return out


def snapshot_index(gauges: dict[str, float]) -> float:
    """The last index a member's latest snapshot covers (a log may hold entries below it:
    the catch-up window), or else applied minus the entries held: a lower bound."""
    if "ba_raft_snapshot_index" in gauges:
        return gauges["ba_raft_snapshot_index"]
    return gauges.get("ba_raft_applied_index", 0.0) - gauges.get("ba_raft_log_entries", 0.0)


async def member_gauges(nodes: Sequence[NodeDaemon], group: str
                        ) -> dict[str, dict[str, float]]:
    """Every reachable member's gauges (a member reports only its own)."""
    texts = await asyncio.gather(*(asyncio.to_thread(n.metrics_text) for n in nodes))
    out: dict[str, dict[str, float]] = {}
    for node, text in zip(nodes, texts, strict=True):
        out.update({m: g for m, g in raft_gauges(text, group).items() if m == node.node_id})
    return out


async def wait_gauges(nodes: Sequence[NodeDaemon], group: str, what: str, timeout: float,
                      cond: Any) -> dict[str, dict[str, float]]:
    """Poll the members' /metrics until ``cond(gauges)``; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        gauges = await member_gauges(nodes, group)
        if cond(gauges):
            return gauges
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout}s: {gauges}")
        await asyncio.sleep(pause)  # sleep-ok: polling other processes' /metrics
        pause = min(pause * 2, 0.2)


def leader_commit(gauges: dict[str, dict[str, float]]) -> float | None:
    leaders = [g for g in gauges.values() if g.get("ba_raft_is_leader", 0.0) >= 1.0]
    return max((g.get("ba_raft_commit_index", 0.0) for g in leaders), default=None)


async def caught_up(nodes: Sequence[NodeDaemon], member: str, group: str,
                    timeout: float = 30.0) -> float:
    """Until ``member`` has applied what a leader had committed when we looked (a leader
    must be there); returns that index."""
    first = await wait_gauges(nodes, group, "a leader", timeout,
                              lambda g: leader_commit(g) is not None)
    target = leader_commit(first)
    assert target is not None
    await wait_gauges(nodes, group, f"{member} to apply index {target}", timeout,
                      lambda g: g.get(member, {}).get("ba_raft_applied_index", -1) >= target)
    return target


async def leader_of(nodes: Sequence[NodeDaemon], group: str) -> str | None:
    """The member that says it leads ``group`` now (None: none does)."""
    gauges = await member_gauges([n for n in nodes if n.alive], group)
    return next((m for m, g in sorted(gauges.items())
                 if g.get("ba_raft_is_leader", 0.0) >= 1.0), None)


@dataclass
class CommitClock:
    """When the load's Raft writes were acknowledged (monotonic), to measure gaps."""

    times: list[float] = field(default_factory=list)

    def note(self) -> None:
        self.times.append(time.monotonic())

    def count_after(self, start: float) -> int:
        return sum(t >= start for t in self.times)

    def gap(self, start: float, end: float) -> float | None:
        """The longest interval between two consecutive acknowledged commits that overlaps
        [start, end] (the last commit before ``start`` and the first after ``end`` count);
        None without a commit on both sides."""
        found = self.widest(start, end)
        return None if found is None else found[0]

    def widest(self, start: float, end: float) -> tuple[float, float] | None:
        """(gap, when it began) for ``gap``."""
        times = sorted(self.times)
        before = [t for t in times if t < start][-1:]
        inside = [t for t in times if start <= t <= end]
        after = [t for t in times if t > end][:1]
        points = before + inside + after
        if len(points) < 2 or not before or not after:
            return None
        return max((b - a, a) for a, b in itertools.pairwise(points))


@dataclass
class Restart:
    """One planned restart of a node onto a build, and what the load saw during it."""

    node: str
    from_build: str
    to_build: str
    stop_s: float = 0.0  # SIGTERM until the process exited
    start_s: float = 0.0  # exec of the new build until /readyz
    catch_up_s: float = 0.0  # ready until its member applied the leader's commit index
    commit_gap_s: float | None = None  # the longest, from SIGTERM until caught up
    commit_gap_at_s: float | None = None  # when it began, from SIGTERM (< 0: before it)
    stop_commit_gap_s: float | None = None  # the longest while it stopped (the handover)
    commits: int = 0  # acknowledged by the load during the restart
    was_leader: bool = False  # its member led the group when it was stopped
    start: float = 0.0
    stopped: float = 0.0
    end: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("stop_s", "start_s", "catch_up_s", "commit_gap_s", "commit_gap_at_s",
                    "stop_commit_gap_s"):
            if data[key] is not None:
                data[key] = round(data[key], 4)
        for key in ("start", "stopped", "end"):
            data[key] = round(data[key], 3)  # monotonic, as the history's times
        return data


async def restart_onto(daemon: NodeDaemon, build: str, nodes: Sequence[NodeDaemon],
                       group: str, clock: CommitClock, timeout: float = 60.0) -> Restart:
    """Stop ``daemon`` gracefully (SIGTERM), start ``build`` on its data dir, wait until it
    is ready and its member of ``group`` caught up; the load's commit gap meanwhile."""
    record = Restart(daemon.node_id, build_of(daemon), build)
    record.was_leader = await leader_of(nodes, group) == daemon.node_id
    record.start = time.monotonic()
    await asyncio.to_thread(daemon.proc.stop, STOP_TIMEOUT)
    record.stopped = time.monotonic()
    set_build(daemon, build)
    await asyncio.to_thread(daemon.start, timeout)
    ready = time.monotonic()
    await caught_up(nodes, daemon.node_id, group, timeout)
    record.end = time.monotonic()
    record.stop_s = record.stopped - record.start
    record.start_s = ready - record.stopped
    record.catch_up_s = record.end - ready
    record.commits = sum(record.start <= t <= record.end for t in clock.times)
    return record


def finish_gap(record: Restart, clock: CommitClock) -> None:
    """Fill in the gap once the load has committed again after the restart ended."""
    widest = clock.widest(record.start, record.end)
    if widest is not None:
        record.commit_gap_s, began = widest
        record.commit_gap_at_s = began - record.start
    record.stop_commit_gap_s = clock.gap(record.start, record.stopped)
