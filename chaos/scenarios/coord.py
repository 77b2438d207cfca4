"""Scenario ``coord``: votes and PBFT under partitions, kill -9 and SIGSTOP.

Three node daemons (one host each on netns). Coordinators on node-1 and node-2 (a queue
group: one answers each request), two voters on every node with fixed preferences
(``PREFS``: yes, no, or abstain), and four PBFT replicas (r1 on node-1, r2 on node-2,
r3 and r4 on node-3). Clients run votes (a seeded subset of the voters, a seeded rule:
majority, quorum or unanimous) and PBFT instances (a fresh operation each, the replica
order rotated so the primary moves) while a seeded schedule isolates a voter's node,
kills one with kill -9, pauses one with SIGSTOP and applies the host nemeses
(``host_faults``); a short run plays a seeded selection of these (``plan_faults``).
A node connection taps the PBFT wire: every reply a replica sends is
a decision it made, seen whether or not the client still listens. Checks:

- ``vote-decisions-implied``: every acknowledged vote decided what the answers it
  counted imply (recomputed independently), each counted answer is the named voter's
  preference, and no voter answered a vote that ran entirely while its node was killed
  or paused (``chaos.checkers.coord.check_votes``; the faults record those silences);
- ``pbft-one-value``: no PBFT instance decided two values, every decided value was
  proposed, client results agree with the replicas (``check_pbft``).

Recovery: the first decided vote and PBFT instance after the final heal, and the first
decided vote after each heal during the run (p50/max).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from broker_agents import codec
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.pbft.messages import Reply, parse_message
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from chaos.checkers.coord import Decision, Silence, check_pbft, check_votes
from chaos.cluster import server_version
from chaos.fault import Fault
from chaos.faults import FaultSchedule, isolate_client
from chaos.history import History, Operation
from chaos.nodes import service_env
from chaos.report import ScenarioReport
from chaos.scenarios import ScenarioContext, scenario
from chaos.scenarios.support import (
    Harness,
    cover_plan,
    drive,
    fault_budget,
    harness,
    host_faults,
    p50_max,
    seeded,
    window,
)
from node.auth.roles import Role

COORDINATOR = "broker_agents.coord.coordinator:CoordinatorAgent"
VOTER = "broker_agents.coord.voter:VoterAgent"
REPLICA = "broker_agents.coord.pbft_replica:PbftReplicaAgent"
NODES = ("node-1", "node-2", "node-3")
PREFS: dict[str, str | None] = {"v1a": "yes", "v1b": "no", "v2a": "yes", "v2b": "yes",
                                "v3a": "no", "v3b": None}
REPLICAS = {"node-1": ["r1"], "node-2": ["r2"], "node-3": ["r3", "r4"]}
RULES = ("majority", "quorum", "unanimous")
OPTIONS = ["yes", "no"]
VOTE_TIMEOUT_MS = 600
PBFT_TIMEOUT_MS = 3000
HOLD = (1.0, 2.0)
WORKLOAD = ("vote",) * 4 + ("pbft",) * 2  # one client each
DECISIONS = "pbft_decisions.jsonl"
INPUTS = "inputs.json"  # the voters' silences (kill -9, SIGSTOP) the vote check read
S = Subjects()


def node_agents(node_id: str) -> list[dict[str, Any]]:
    n = node_id[-1]
    agents: list[dict[str, Any]] = []
    if node_id != "node-3":
        agents.append({"class": COORDINATOR, "id": f"coord-{n}"})
    for voter in (f"v{n}a", f"v{n}b"):
        agents.append({"class": VOTER, "id": voter, "kwargs": {"choice": PREFS[voter]}})
    agents += [{"class": REPLICA, "id": r} for r in REPLICAS[node_id]]
    return agents


async def ask(nc: Any, protocol: str, body: dict[str, Any], timeout: float) -> Any:
    """One signed coordination request; the result, or the BrokerError it answered."""
    reply = await nats_request(nc, S.coord(protocol), codec.encode(body), timeout=timeout,
                               signed=True)
    payload = codec.decode(reply.data, reply.headers)
    err = BrokerError.from_payload(payload)
    if err is not None:
        raise err
    return payload


class CoordClient:
    """Runs votes and PBFT instances back to back, recording each as an operation."""

    def __init__(self, name: str, nc: Any, history: History, rng: random.Random) -> None:
        self.name, self.nc, self.history, self.rng = name, nc, history, rng
        self.count = 0

    def vote_request(self) -> dict[str, Any]:
        voters = sorted(PREFS)
        picked = sorted(self.rng.sample(voters, self.rng.randint(3, len(voters))))
        return {"proposal": f"{self.name}-{self.count}", "options": OPTIONS,
                "participants": picked, "rule": self.rng.choice(RULES),
                "timeout_ms": VOTE_TIMEOUT_MS}

    def pbft_request(self) -> dict[str, Any]:
        order = [r for rs in REPLICAS.values() for r in rs]
        k = self.count % len(order)
        return {"operation": f"{self.name}-{self.count}-{self.rng.randrange(1 << 30):x}",
                "participants": order[k:] + order[:k], "timeout_ms": PBFT_TIMEOUT_MS}

    async def one(self, protocol: str, everyone: bool = False) -> Any:
        """One request (``everyone``: every voter, majority, or every replica); the
        result, None when there is none."""
        self.count += 1
        if protocol == "vote":
            body = self.vote_request()
            if everyone:
                body.update(participants=sorted(PREFS), rule="majority")
            args: Any = {k: body[k] for k in ("participants", "rule")}
            timeout = VOTE_TIMEOUT_MS / 1000 + 0.5
        else:
            body = self.pbft_request()
            args, timeout = body["operation"], PBFT_TIMEOUT_MS / 1000 + 2.0
        op = self.history.invoke(self.name, protocol, args)
        try:
            result = await ask(self.nc, protocol, body, timeout)
        except BrokerError as exc:  # the coordinator answered: nothing was decided
            self.history.fail(op, exc.code)
            if exc.code in (ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED):
                await asyncio.sleep(0.05)  # sleep-ok: do not spin on a refusal
        except Exception as exc:  # no answer: the outcome is unknown
            self.history.unknown(op, type(exc).__name__)
        else:
            self.history.ok(op, result)
            return result
        return None

    async def run(self, protocol: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.one(protocol)


class PbftTap:
    """Every PBFT reply on the wire (a node connection sees ``<p>.vote.pbft.>``): each
    is a replica's decision in the group the subject names."""

    def __init__(self) -> None:
        self.decisions: list[Decision] = []
        self._sub: Any = None

    async def start(self, nc: Any) -> None:
        self._sub = await nc.subscribe(S.vote("pbft", "*", "*"), cb=self._on_msg)
        await nc.flush()

    async def _on_msg(self, msg: Any) -> None:
        try:
            parsed = parse_message(codec.decode(msg.data))
        except Exception:
            return
        if isinstance(parsed, Reply):
            group = msg.subject.split(".")[-2]
            self.decisions.append(Decision(group, parsed.sender, parsed.seq,
                                           parsed.operation))

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()


def save_decisions(decisions: list[Decision], path: Path) -> None:
    """The tapped PBFT decisions as JSON Lines, next to the history (replayable checks)."""
    path.write_text("".join(json.dumps(asdict(d)) + "\n" for d in decisions))


def load_decisions(path: Path) -> list[Decision]:
    return [Decision(**json.loads(line)) for line in path.read_text().splitlines() if line]


def load_silences(path: Path) -> list[Silence]:
    return [Silence(**{**s, "voters": frozenset(s["voters"])})
            for s in json.loads(path.read_text())["silences"]]


class Silencing:
    """A kill -9 or SIGSTOP of a node that records when its voters were certainly silent:
    from after the signal was sent until before the heal (restart or SIGCONT) starts."""

    def __init__(self, fault: Fault, voters: frozenset[str], why: str) -> None:
        self.fault, self.voters, self.why = fault, voters, why
        self.kind, self.target = fault.kind, fault.target
        self.silences: list[Silence] = []
        self._since: float | None = None

    def inject(self) -> None:
        self.fault.inject()
        self._since = time.monotonic()

    def heal(self) -> None:
        if self._since is not None:
            self.silences.append(Silence(self.voters, self._since, time.monotonic(),
                                         self.why))
            self._since = None
        self.fault.heal()


def voters_of(node_id: str) -> frozenset[str]:
    return frozenset(v for v in PREFS if v[1] == node_id[-1])


def plan_faults(ctx: ScenarioContext, h: Harness) -> tuple[FaultSchedule, list[Silencing]]:
    """A voter's node isolated, one killed (kill -9, restarted at the heal), one paused
    (SIGSTOP/SIGCONT), and the host nemeses, in a seeded order (on netns, a short run
    plays the selection that fits its duration: ``support.cover_plan``)."""
    schedule = FaultSchedule(random.Random(ctx.seed))
    rng = seeded(ctx, "targets")
    killed, paused = rng.choice(NODES), rng.choice(NODES)
    silencing = [Silencing(h.node(killed).kill_fault(), voters_of(killed), "killed"),
                 Silencing(h.node(paused).pause_fault(), voters_of(paused), "paused")]
    node_kinds = [
        window(schedule, isolate_client(h.cluster, rng.choice(NODES)), HOLD),
        *(window(schedule, fault, HOLD) for fault in silencing),
    ]
    cover_plan(schedule, node_kinds, ctx.duration, gap=(0.3, 0.8),
               hosts=host_faults(schedule, h, rng), budget=fault_budget(ctx))
    return schedule, silencing


async def first_decided(probe: CoordClient, protocol: str, deadline: float
                        ) -> float | None:
    """Ask (recorded: probes are checked too) until a ``protocol`` request decides;
    when it returned (None: never)."""
    while time.monotonic() < deadline:
        res = await probe.one(protocol, everyone=True)
        if res is not None and (res.get("decision") is not None or res.get("decided")):
            return time.monotonic()
        await asyncio.sleep(0.05)  # sleep-ok: retry backoff while the cluster recovers
    return None


def heal_recoveries(heals: list[float], ops: list[Operation]) -> list[float]:
    """For each heal: how long until a vote invoked after it decided."""
    done = sorted((o.invoke_time, o.complete_time) for o in ops
                  if o.f == "vote" and o.status == "ok" and o.result.get("decision"))
    out = []
    for t in heals:
        after = [c for i, c in done if i >= t]
        if after:
            out.append(round(min(after) - t, 3))
    return out


@scenario("coord", "votes among voters with fixed preferences and PBFT instances on "
          "three node daemons under node isolation, kill -9, SIGSTOP and host partitions; "
          "every decision equals what its counted answers imply, PBFT never decides two "
          "values")
async def run(ctx: ScenarioContext) -> ScenarioReport:
    report = ScenarioReport(scenario="coord", seed=ctx.seed, duration_s=ctx.duration,
                            nats_server=server_version())
    nodes = {n: node_agents(n) for n in NODES}
    async with harness(ctx, "crd", nodes, service_env(), report) as h:
        tap = PbftTap()
        await tap.start(await h.client("tap", Role.NODE))
        history = History()
        clients = [CoordClient(f"c{i}", await h.client(f"c{i}", Role.CLIENT), history,
                               seeded(ctx, f"c{i}")) for i in range(len(WORKLOAD))]
        schedule, silencing = plan_faults(ctx, h)
        report.fault_plan = schedule.plan()
        ctx.progress(f"votes and PBFT for {ctx.duration:.0f}s, "
                     f"{sum(s['action'] == 'inject' for s in report.fault_plan)} faults planned")
        healed = await drive(h, schedule, [partial(c.run, protocol) for c, protocol
                                           in zip(clients, WORKLOAD, strict=True)], report)
        ctx.progress("final heal: waiting for a decided vote and PBFT instance")
        probe = CoordClient("probe", await h.client("probe", Role.CLIENT), history,
                            seeded(ctx, "probe"))
        vote_at = await first_decided(probe, "vote", time.monotonic() + 15)
        pbft_at = await first_decided(probe, "pbft", time.monotonic() + 15)
        await asyncio.sleep(0.5)  # sleep-ok: let replies of lingering groups reach the tap
        await tap.stop()
        ops = history.operations()
        report.ops = history.counts()
        silences = [s for f in silencing for s in f.silences]
        report.checks = [check_votes(ops, PREFS, silences), check_pbft(tap.decisions, ops)]
        heals = [e.at for e in schedule.events if e.action == "heal" and e.at < healed]
        heal_p50, heal_max = p50_max(heal_recoveries(heals, ops))
        report.recovery = {
            "vote_ok_s": None if vote_at is None else round(vote_at - healed, 3),
            "pbft_ok_s": None if pbft_at is None else round(pbft_at - healed, 3),
            "vote_heal_p50_s": heal_p50,
            "vote_heal_max_s": heal_max,
            "node_start_failures": float(sum(len(n.restart_errors) for n in h.nodes)),
        }
        path = ctx.workdir / "history.jsonl"
        history.to_jsonl(path)
        save_decisions(tap.decisions, ctx.workdir / DECISIONS)
        (ctx.workdir / INPUTS).write_text(json.dumps({"silences": [
            {**asdict(s), "voters": sorted(s.voters)} for s in silences]}))
        report.history_path = str(path)
    return report
