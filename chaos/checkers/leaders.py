"""Raft leadership observations from what members expose: /metrics and their JSON logs.

Two sources feed ``check_one_leader_per_term``. Metrics samples (``ba_raft_term`` and
``ba_raft_is_leader`` per group/member, read together from one exposition, so they are
a consistent pair) see leaders that last long enough to be sampled; ``raft.elected`` log
lines see every leader, including one that lost its term within milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

_SAMPLE = re.compile(
    r'^(ba_raft_term|ba_raft_is_leader)\{([^}]*)\}\s+([-+0-9.eE]+|NaN)\s*$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_raft_metrics(text: str, group: str) -> dict[str, tuple[int, str]]:
    """member -> (term, "leader" | "follower") for ``group`` in one Prometheus exposition.

    A member with a term but no is_leader sample counts as a follower.
    """
    terms: dict[str, int] = {}
    leading: dict[str, bool] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if m is None:
            continue
        labels = dict(_LABEL.findall(m.group(2)))
        if labels.get("group") != group or "member" not in labels:
            continue
        value = float(m.group(3))
        if m.group(1) == "ba_raft_term":
            terms[labels["member"]] = int(value)
        else:
            leading[labels["member"]] = value >= 1.0
    return {member: (term, "leader" if leading.get(member) else "follower")
            for member, term in terms.items()}


def elections_from_log(lines: Iterable[str], group: str) -> list[tuple[str, int]]:
    """(member, term) of every ``raft.elected`` JSON log line of ``group``.

    Lines that are not JSON objects (tracebacks, console output) are skipped.
    """
    out: list[tuple[str, int]] = []
    for line in lines:
        if "raft.elected" not in line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or rec.get("event") != "raft.elected":
            continue
        if rec.get("group") != group or "member" not in rec or "term" not in rec:
            continue
        out.append((str(rec["member"]), int(rec["term"])))
    return out


def elections_from_logs(paths: Iterable[Path], group: str) -> list[tuple[str, int]]:
    """``elections_from_log`` over several log files (missing files count as empty)."""
    out: list[tuple[str, int]] = []
    for path in paths:
        if path.exists():
            out += elections_from_log(path.read_text(errors="replace").splitlines(), group)
    return out


class MetricsSource(Protocol):
    """A node daemon as the watch sees it (``chaos.nodes.NodeDaemon`` fits)."""

    @property
    def alive(self) -> bool: ...

    def metrics_text(self, timeout: float = 1.0) -> str: ...


@dataclass
class LeaderWatch:
    """Samples every live member's /metrics into (time, member, term, role) observations."""

    group: str
    nodes: Sequence[MetricsSource]
    every: float = 0.1
    samples: list[tuple[float, str, int, str]] = field(default_factory=list)

    def poll_once(self) -> dict[str, tuple[int, str]]:
        """One synchronous round over the live nodes (blocking: run it off the loop)."""
        seen: dict[str, tuple[int, str]] = {}
        for node in self.nodes:
            if not node.alive:
                continue
            text = node.metrics_text(timeout=0.5)
            for member, (term, role) in parse_raft_metrics(text, self.group).items():
                self.samples.append((time.monotonic(), member, term, role))
                seen[member] = (term, role)
        return seen

    def leader(self) -> tuple[str, int] | None:
        """(member, term) of the leader with the highest term seen now, if any."""
        leaders = [(term, member) for member, (term, role) in self.poll_once().items()
                   if role == "leader"]
        if not leaders:
            return None
        term, member = max(leaders)
        return member, term

    def term_of(self, member: str | None) -> int:
        """The last term sampled from ``member`` (-1 if never sampled)."""
        return next((t for _, m, t, _ in reversed(self.samples) if m == member), -1)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.to_thread(self.poll_once)
            await asyncio.sleep(self.every)  # sleep-ok: the metrics sampling period
