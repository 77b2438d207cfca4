"""Process faults, the network faults every cluster offers, and a seeded schedule.

A fault is an object with ``inject()`` and ``heal()`` (``chaos.fault``; blocking). The
network faults are the cluster's own (``NatsCluster``: proxies on loopback, nft rules in
namespaces), so a scenario plans the same faults on either network. ``FaultSchedule``
plans inject/heal steps from a seeded ``random.Random`` (so a seed replays the same plan),
runs them, and records what happened when, on the monotonic clock. Every fault still
active at the end is healed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from chaos.cluster import NatsCluster
from chaos.fault import Fault as Fault
from chaos.process import ManagedProcess
from chaos.proxyfaults import bandwidth as bandwidth
from chaos.proxyfaults import slow_links as slow_links


@dataclass
class KillProcess:
    """kill -9 a managed process; heal starts it again with the same command."""

    proc: ManagedProcess
    kind: str = "kill"
    target: str = ""

    def inject(self) -> None:
        self.proc.kill()

    def heal(self) -> None:
        self.proc.start()


@dataclass
class KillServer:
    """kill -9 one nats-server; heal restarts it on the same ports and store."""

    cluster: NatsCluster
    index: int
    kind: str = "kill_server"
    target: str = ""

    def inject(self) -> None:
        self.cluster.kill(self.index)

    def heal(self) -> None:
        self.cluster.restart(self.index)


class HasPid(Protocol):
    @property
    def pid(self) -> int | None: ...


@dataclass
class PauseProcess:
    """SIGSTOP a process; heal sends SIGCONT. The classic way a lease expires mid-step: the
    process does not know it was paused, and resumes with stale beliefs about who owns what.

    A process that died meanwhile (or was never started) is not an error: there is nothing
    to pause, and nothing to resume.
    """

    proc: HasPid
    kind: str = "pause"
    target: str = ""

    def _signal(self, sig: signal.Signals) -> None:
        pid = self.proc.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def inject(self) -> None:
        self._signal(signal.SIGSTOP)

    def heal(self) -> None:
        self._signal(signal.SIGCONT)


# A busy loop with its own deadline: a starver the harness loses track of still ends.
_BURN = ("import sys, time\nend = time.monotonic() + float(sys.argv[1])\n"
         "while time.monotonic() < end: pass\n")


@dataclass
class CpuStarvation:
    """Start ``workers`` busy processes (bounded by ``max_seconds`` each, whatever happens
    to the harness); heal kills them. On a 2-core CI machine, two workers halve everyone
    else's CPU: timers fire late, leases lapse, watches lag."""

    workers: int = 2
    max_seconds: float = 30.0
    kind: str = "cpu_starve"
    target: str = "machine"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def inject(self) -> None:
        for _ in range(self.workers - len(self.procs)):
            self.procs.append(subprocess.Popen(
                [sys.executable, "-c", _BURN, str(self.max_seconds)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True))

    def heal(self) -> None:
        procs, self.procs = self.procs, []
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def pause_process(proc: HasPid, name: str) -> PauseProcess:
    return PauseProcess(proc, target=name)


def isolate_client(cluster: NatsCluster, client: str = "client") -> Fault:
    """Cut one client (or node daemon) off from every NATS server."""
    return cluster.isolate(client)


def cut_server(cluster: NatsCluster, index: int) -> Fault:
    """Cut server ``index``'s routes to the other servers (clients still reach it)."""
    return cluster.cut_server(index)


def partition(cluster: NatsCluster, groups: Sequence[Sequence[int]]) -> Fault:
    """Cut every route between servers in different groups."""
    return cluster.partition(groups)


def asymmetric_cut(cluster: NatsCluster, src: int, dst: int, mode: str = "timeout") -> Fault:
    """Drop traffic from server ``src`` to ``dst`` only; ``dst`` to ``src`` still flows."""
    return cluster.asymmetric_cut(src, dst, mode)


def kill_server(cluster: NatsCluster, index: int) -> KillServer:
    return KillServer(cluster, index, target=f"server-{index}")


def kill_process(proc: ManagedProcess) -> KillProcess:
    return KillProcess(proc, target=proc.name)


@dataclass
class FaultEvent:
    """One inject or heal, when it happened (monotonic) and whether it worked."""

    at: float
    offset: float
    action: str
    kind: str
    target: str
    fault_id: int
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Step:
    offset: float
    action: str  # "inject" | "heal"
    fault_id: int


@dataclass
class FaultSchedule:
    """A seeded plan of inject/heal steps over a set of faults, and its record."""

    rng: random.Random
    faults: list[Fault] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    events: list[FaultEvent] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
    active: set[int] = field(default_factory=set)
    started_at: float | None = None

    def add(self, fault: Fault) -> int:
        self.faults.append(fault)
        return len(self.faults) - 1

    def at(self, offset: float, action: str, fault: Fault | int) -> None:
        fid = fault if isinstance(fault, int) else self._id(fault)
        self.steps.append(Step(offset, action, fid))
        self.steps.sort(key=lambda s: s.offset)

    def _id(self, fault: Fault) -> int:
        for i, known in enumerate(self.faults):
            if known is fault:
                return i
        return self.add(fault)

    def window(self, fault: Fault, start: float, hold: float) -> None:
        """Inject at ``start``, heal ``hold`` seconds later."""
        self.at(start, "inject", fault)
        self.at(start + hold, "heal", fault)

    def flapping(self, fault: Fault, start: float, duration: float,
                 up: tuple[float, float] = (0.2, 1.0),
                 down: tuple[float, float] = (0.2, 1.0)) -> None:
        """Toggle ``fault`` on and off with seeded random intervals."""
        t = start
        while t < start + duration:
            hold = self.rng.uniform(*down)
            self.window(fault, t, min(hold, start + duration - t))
            t += hold + self.rng.uniform(*up)

    def random_plan(self, candidates: Sequence[Fault], duration: float,
                    gap: tuple[float, float] = (0.5, 2.0),
                    hold: tuple[float, float] = (1.0, 3.0)) -> None:
        """One fault at a time, chosen and timed by the seeded rng, all healed by the end."""
        t = self.rng.uniform(*gap)
        while t < duration:
            fault = self.rng.choice(list(candidates))
            held = min(self.rng.uniform(*hold), max(duration - t, 0.1))
            self.window(fault, t, held)
            t += held + self.rng.uniform(*gap)

    def plan(self) -> list[dict[str, Any]]:
        """The plan as data (deterministic for a seed): for reports and replay checks."""
        return [{"offset": round(s.offset, 6), "action": s.action,
                 "kind": self.faults[s.fault_id].kind, "target": self.faults[s.fault_id].target}
                for s in self.steps]

    def apply(self, action: str, fault_id: int) -> FaultEvent:
        """Inject or heal now and record it (errors are recorded, not raised)."""
        fault = self.faults[fault_id]
        now = self.clock()
        if self.started_at is None:
            self.started_at = now
        error = None
        try:
            if action == "inject":
                fault.inject()
                self.active.add(fault_id)
            else:
                fault.heal()
                self.active.discard(fault_id)
        except Exception as exc:  # the record must survive a failed fault call
            error = f"{type(exc).__name__}: {exc}"
        event = FaultEvent(now, now - self.started_at, action, fault.kind, fault.target,
                           fault_id, error)
        self.events.append(event)
        return event

    async def run(self) -> None:
        """Execute the plan in real time; heal whatever is still active at the end."""
        self.started_at = self.clock()
        try:
            for step in self.steps:
                wait = self.started_at + step.offset - self.clock()
                if wait > 0:
                    await asyncio.sleep(wait)  # sleep-ok: the plan's fault timing
                await asyncio.to_thread(self.apply, step.action, step.fault_id)
        finally:
            await asyncio.to_thread(self.heal_all)

    def heal_all(self) -> None:
        for fault_id in sorted(self.active):
            self.apply("heal", fault_id)

    @property
    def last_heal(self) -> float | None:
        heals = [e.at for e in self.events if e.action == "heal"]
        return max(heals) if heals else None
