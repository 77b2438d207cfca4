"""The rolling-upgrade scenario's own load and flag parts: a writer of unique keys (every
acknowledged one must be readable at the end), the client of N+1's ``incr`` that uses it
only while the feature flag is effective, the feature flag asked through the operator's
CLI (``broker-agents feature ...``), and the wait before a rollback is safe."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from broker_agents import codec
from broker_agents.core.budget import Account
from chaos.builds import EXTRA_FIELD, FEATURE
from chaos.checkers.result import CheckResult
from chaos.history import History, Operation
from chaos.nodes import NodeDaemon
from chaos.rolling import CommitClock, build_of, leader_commit, snapshot_index, wait_gauges
from chaos.scenarios.auction import AccountWatch, cents
from chaos.scenarios.consensus import RegisterClient
from chaos.scenarios.support import Harness
from node.auth.roles import Role

CLI_TIMEOUT = 30.0


async def until(cond: Any, timeout: float, what: str, every: float = 0.05) -> None:
    """Until ``cond()`` (state of this process's own load): TimeoutError naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(every)  # sleep-ok: polling counters the load tasks update


@dataclass
class LoadProgress:
    """Whether every kind of load moved on: Raft commits, a finished auction, a vote."""

    history: History
    clock: CommitClock

    def _counts(self) -> tuple[int, int, int]:
        ops = self.history.operations()
        return (len(self.clock.times),
                sum(o.f == "award" and o.status == "ok" for o in ops),
                sum(o.f == "vote" and o.status == "ok" for o in ops))

    async def advanced(self, timeout: float, commits: int = 20) -> None:
        c0, a0, v0 = self._counts()

        def moved() -> bool:
            c, a, v = self._counts()
            return c >= c0 + commits and a > a0 and v > v0
        await until(moved, timeout, "commits, an auction and a vote", every=0.1)


class PatientNC:
    """A connection whose requests wait at least ``window`` s for their answer (sent once:
    a signed act is never re-sent), so a vote has the Raft requests' retry window."""

    def __init__(self, nc: Any, window: float) -> None:
        self.nc, self.window = nc, window

    async def request(self, subject: str, payload: bytes = b"", timeout: float = 0.5,
                      **kwargs: Any) -> Any:
        return await self.nc.request(subject, payload, timeout=max(timeout, self.window),
                                     **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.nc, name)


class UniqueWriter:
    """Puts a fresh key each time; ``acked``: the keys (and values) acknowledged."""

    def __init__(self, reg: RegisterClient) -> None:
        self.reg = reg
        self.acked: dict[str, str] = {}

    async def run(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            key, value = f"u-{self.reg.name}-{n}", f"{self.reg.name}-{n}"
            op = self.reg.history.invoke(self.reg.name, "put", value, key=key)
            status, out = await self.reg.propose({"op": "put", "key": key, "value": value})
            self.reg._record(op, status, out)
            if status == "ok":
                self.acked[key] = value

    def check(self, final: dict[str, Any]) -> CheckResult:
        lost = [f"{k}: acknowledged {v!r}, read {final.get(k)!r}"
                for k, v in self.acked.items() if final.get(k) != v]
        return CheckResult.of("acked-writes-readable", lost, acked=len(self.acked))


@dataclass
class FeatureAdmin:
    """``broker-agents feature <verb>`` as an operator runs it, with the admin role."""

    servers: list[str]
    creds: str
    ca: str

    @classmethod
    def of(cls, h: Harness) -> FeatureAdmin:
        security = h.cluster.security(Role.ADMIN)
        return cls(h.cluster.client_urls("operator"), str(security.creds_file),
                   str(security.tls_ca_file))

    @staticmethod
    def available() -> bool:
        return importlib.util.find_spec("node.cli.feature") is not None

    async def run(self, *args: str) -> tuple[int, Any]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "node.cli", "feature", *args, "--json",
            "--nats", ",".join(self.servers), "--creds", self.creds, "--tls-ca", self.ca,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
        try:
            body = json.loads(out or b"null")
        except ValueError:
            body = {"stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace")}
        return int(proc.returncode or 0), body


def effective_in(listing: Any, name: str = FEATURE) -> bool | None:
    """Whether ``name`` is effective in a ``feature list --json`` answer (None: absent)."""
    rows = listing.get("features", listing) if isinstance(listing, dict) else listing
    if isinstance(rows, dict):
        rows = [{"name": k, **v} for k, v in rows.items() if isinstance(v, dict)]
    for row in rows or []:
        if isinstance(row, dict) and row.get("name") == name:
            return bool(row.get("effective"))
    return None


@dataclass
class FeatureGate:
    """The flag as the test drives it: asked after every step (``steps``); ``effective``
    is this load's view, on only after the cluster said so, off before it is disabled."""

    admin: FeatureAdmin
    nodes: Sequence[NodeDaemon] = ()
    effective: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def available(self) -> bool:
        return self.admin.available()

    async def ask(self, step: str) -> None:
        """Try to enable the flag; record whether it was accepted and what list says."""
        if not self.available:
            return
        builds = {n.node_id: build_of(n) for n in self.nodes}
        code, body = await self.admin.run("enable", FEATURE)
        _, listing = await self.admin.run("list")
        self.steps.append({"step": step, "builds": builds, "accepted": code == 0,
                           "answer": body, "effective": effective_in(listing)})

    async def wait_effective(self, want: bool, timeout: float) -> None:
        async def seen() -> bool:
            _, listing = await self.admin.run("list")
            return effective_in(listing) is want
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await seen():
            if loop.time() > deadline:
                raise TimeoutError(f"feature {FEATURE} never became effective={want}")
            await asyncio.sleep(0.1)  # sleep-ok: polling the cluster's flag state
        if want:
            self.effective = True
            self.changed.set()

    async def disable(self) -> None:
        """The load stops using the feature, then the operator turns the flag off."""
        self.effective = False
        code, body = await self.admin.run("disable", FEATURE)
        self.steps.append({"step": "disable", "accepted": code == 0, "answer": body})

    def check(self) -> CheckResult:
        """Enable accepted exactly when every node ran N+1; not effective otherwise."""
        if not self.available:
            return CheckResult.of("feature-flag-gated", [], available=False)
        bad = []
        for s in self.steps:
            if "builds" not in s:
                if not s["accepted"]:
                    bad.append(f"{s['step']} refused: {s['answer']}")
                continue
            everyone = all(b == "N+1" for b in s["builds"].values())
            if s["accepted"] != everyone:
                bad.append(f"{s['step']}: enable {'accepted' if s['accepted'] else 'refused'}"
                           f" with builds {s['builds']}: {s['answer']}")
            if s["effective"] and not everyone:
                bad.append(f"{s['step']}: effective with builds {s['builds']}")
        return CheckResult.of("feature-flag-gated", bad, available=True, steps=self.steps)


class IncrClient:
    """Proposes N+1's ``incr`` on one counter, only while the gate says it is effective."""

    KEY = "counter"

    def __init__(self, reg: RegisterClient, gate: FeatureGate) -> None:
        self.reg, self.gate = reg, gate
        self.busy = False
        self.acked = 0

    async def run(self, stop: asyncio.Event) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                if not self.gate.effective:
                    self.gate.changed.clear()
                    changed = asyncio.ensure_future(self.gate.changed.wait())
                    await asyncio.wait({changed, stopping}, return_when="FIRST_COMPLETED")
                    changed.cancel()
                    continue
                self.busy = True
                op = self.reg.history.invoke(self.reg.name, "incr", 1, key=self.KEY)
                status, out = await self.reg.propose({"op": "incr", "key": self.KEY, "by": 1})
                self.reg._record(op, status, out)
                self.acked += status == "ok"
                self.busy = False
        finally:
            stopping.cancel()

    async def used(self, count: int, timeout: float) -> None:
        await until(lambda: self.acked >= count, timeout, f"{count} acknowledged incr")

    async def idle(self, timeout: float) -> None:
        await until(lambda: not self.busy, timeout, "the last incr to finish")

    def check(self, ops: list[Operation], counter: Any) -> CheckResult:
        """The counter holds one increment per acknowledged incr (plus at most the
        unknown ones): none lost, none applied twice."""
        incs = [o for o in ops if o.f == "incr"]
        acked = sum(o.status == "ok" for o in incs)
        maybe = sum(o.status == "unknown" for o in incs)
        value = counter or 0
        bad = [] if acked <= value <= acked + maybe else [
            f"counter {value} after {acked} acknowledged and {maybe} unknown incr"]
        return CheckResult.of("incr-exactly-once", bad, acked=acked, unknown=maybe,
                              counter=value)


async def rollback_safe(node: NodeDaemon, nodes: Sequence[NodeDaemon], group: str,
                        incr: IncrClient, timeout: float) -> None:
    """Until ``node``'s snapshot covers every ``incr`` committed (N cannot apply one)."""
    await incr.idle(timeout)
    gauges = await wait_gauges(nodes, group, "a leader", timeout,
                               lambda g: leader_commit(g) is not None)
    target = leader_commit(gauges)
    assert target is not None
    await wait_gauges(nodes, group, f"{node.node_id}'s snapshot past index {target}",
                      timeout, lambda g: snapshot_index(g.get(node.node_id, {})) >= target)


class MarkedAccounts(AccountWatch):
    """The auction scenario's account watch, also noting which versions of each account
    carry N+1's field: once one does, every later version must (N keeps unknown fields
    through its read-modify-writes)."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[str, bool]] = []  # (owner, has the field), in bucket order

    async def _run(self) -> None:
        async for entry in self._watcher:
            if entry is None or not entry.value:
                continue
            raw = codec.decode(entry.value)
            account = Account.model_validate(raw)
            self.snapshots.append((time.monotonic(), account.owner, cents(account.balance)))
            self.marks.append((account.owner, EXTRA_FIELD in raw))

    def check(self) -> CheckResult:
        marked: set[str] = set()
        dropped: list[str] = []
        later = 0
        for owner, has in self.marks:
            if owner in marked:
                later += 1
                if not has:
                    dropped.append(f"{owner}: a write dropped N+1's field {EXTRA_FIELD!r}")
                    marked.discard(owner)
            elif has:
                marked.add(owner)
        return CheckResult.of("unknown-fields-kept", dropped, versions=len(self.marks),
                              marked_accounts=len({o for o, has in self.marks if has}),
                              writes_after_marked=later)
