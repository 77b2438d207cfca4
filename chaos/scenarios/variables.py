"""Scenario ``variables``: cluster-wide variables set, frozen and adapted under partitions.

The ``variables`` consensus group has a member on each of three node daemons (one host
each on netns), with an adaptation engine agent beside every member (the leader's one
adapts space ``q`` from feedback, the others stand by). Clients set unique integer values
of space ``ops`` as their own principal (signed acts, as ``broker-agents var set``
does); an admin freezes and unfreezes ``ops/f`` (which clients also set) and ``q/x``
(which the engine adapts), retrying each with one command id until acknowledged; a
feedback client keeps the engine running trials. Faults: a seeded subset of the host-level
nemeses (majority split, bridge, one-way drop, flapping host, paused nats-server) plus
kill -9 and SIGSTOP of a member's node daemon. After the final heal, the state of every
member is read from that member alone (``ba.raft.variables.<member>.read``: a read-index
read its own state machine answers) until all agree (the convergence time), then every
variable's history from each member. Checks (``chaos.checkers.variables``):

- ``one-history``: every member holds the same history of every variable;
- ``sets-exactly-once``: an acknowledged set appears once at its acknowledged version, a
  rejected one never, an unknown one at most once, and no value nobody set (or the
  engine proposed);
- ``frozen-never-changes``: no change of a variable between its acknowledged freeze and
  unfreeze, on any member;
- ``convergence``: every member agrees within ``CONVERGE_S`` of the final heal.

Recovery: ``settled_s`` (the final heal to every node daemon ready again: a killed one
restarts), ``set_ok_s`` (to the first set acknowledged after that) and ``converged_s``.
The members' histories are saved beside ``history.jsonl`` as ``inputs.json``
(``{"histories": {member: {"space/variable": [[version, value, actor], ...]}}}``), so the
checks can be re-run offline on a run's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from typing import Any

from broker_agents.codec import decode, encode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.variables.commands import ApplyResult, Freeze, Unfreeze
from broker_agents.core.variables.statemachine import DEFAULT_HISTORY
from broker_agents.subjects import Subjects
from broker_agents.variables.acts import proposal
from broker_agents.variables.client import Variables
from chaos.checkers.result import CheckResult
from chaos.checkers.variables import (
    Entry,
    FreezeWindow,
    check_frozen,
    check_one_history,
    check_sets,
)
from chaos.cluster import server_version
from chaos.faults import FaultSchedule
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
    seeded,
    window,
)
from node.auth.roles import Role

GROUP = "variables"
NODE_IDS = ("node-1", "node-2", "node-3")
RAFT = {"tick_ms": 20.0, "election_ticks": 10, "heartbeat_ticks": 2}
ENGINE = "broker_agents.variables.engine_agent:AdaptationEngineAgent"
# many variables, paced clients: each variable's history (the last 100 changes) keeps
# every set of a run, so no acknowledged set escapes the check as truncated
SET_VARS = (*(f"v{i}" for i in range(11)), "f")
PACE_S = 0.04
OPS = {"name": "ops", "variables": [
    {"kind": "integer", "name": n, "min": 0, "max": 10**9, "default": 0} for n in SET_VARS]}
Q = {"name": "q", "variables": [
    {"kind": "float", "name": "x", "min": -2, "max": 2, "default": -1.5},
    {"kind": "float", "name": "y", "min": -2, "max": 2, "default": 1.5}]}
DEFAULTS = {**{f"ops/{n}": 0 for n in SET_VARS}, "q/x": -1.5, "q/y": 1.5}
FROZEN = ("ops/f", "q/x")
ENGINE_CFG = {"q": {"learning_rate": 0.05, "perturbation": 0.1, "operator_hold_s": 0}}
TRUSTED = ("var-engine-",)  # the engines' actors: their values are proposals, not sets
CLIENTS = 2
OP_TIMEOUT = 3.0
DEFINITE = {ErrorCode.VALIDATION, ErrorCode.CONFLICT, ErrorCode.NOT_FOUND}
CONVERGE_S = 20.0


def services() -> dict[str, Any]:
    return {**service_env(), "consensus": {"groups": [
        {"name": GROUP, "members": list(NODE_IDS), "state_machine": "variables", **RAFT}]}}


def node_agents(node_id: str, seed: int) -> list[dict[str, Any]]:
    return [{"class": ENGINE, "id": f"var-engine-{node_id[-1]}",
             "kwargs": {"group": GROUP, "spaces": ENGINE_CFG, "seed": seed}}]


class SetClient:
    """Sets unique values of ``ops`` (signed as its own principal), one op at a time."""

    def __init__(self, index: int, nc: Any, history: History, rng: random.Random) -> None:
        self.name = f"c{index}"
        self.base = (index + 1) * 10**6
        self.vars = Variables(nc, GROUP, timeout=OP_TIMEOUT)
        self.history = history
        self.rng = rng
        self.count = 0
        self.rejected_frozen = 0

    async def one(self, name: str | None = None) -> bool:
        self.count += 1
        if name is None:  # f, which the admin freezes, a quarter of the time
            name = "f" if self.rng.random() < 0.25 else self.rng.choice(SET_VARS[:-1])
        value = self.base + self.count
        op = self.history.invoke(self.name, "set", value, key=f"ops/{name}")
        try:
            result = await self.vars.set("ops", {name: value})
        except BrokerError as exc:
            if exc.code in DEFINITE:
                self.rejected_frozen += exc.details.get("constraint") == "frozen"
                self.history.fail(op, exc.code)
            else:
                self.history.unknown(op, exc.code)
            await asyncio.sleep(0.02)  # sleep-ok: do not spin while the group is away
            return False
        except Exception as exc:
            self.history.unknown(op, type(exc).__name__)
            return False
        self.history.ok(op, result.version)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.one()
            await _wait(stop, PACE_S)


class Freezer:
    """The admin: freezes a variable, holds it, unfreezes it; each command retried with
    one command id until acknowledged (the group applies an id once), so every window is
    definite: from the freeze's version to the unfreeze's."""

    def __init__(self, nc: Any, history: History, rng: random.Random) -> None:
        self.nc = nc
        self.vars = Variables(nc, GROUP)
        self.history = history
        self.rng = rng

    async def command(self, cmd: Freeze | Unfreeze, deadline: float) -> ApplyResult | None:
        op = self.history.invoke("admin", cmd.op, key=f"{cmd.space}/{cmd.variable}")
        body = proposal(self.nc, GROUP, cmd)
        while True:
            try:
                raw = await self.vars.raft.propose(body, request_id=cmd.command_id,
                                                   timeout=OP_TIMEOUT)
                result = ApplyResult.model_validate(raw)
            except BrokerError as exc:
                if exc.code in DEFINITE or time.monotonic() > deadline:
                    (self.history.fail if exc.code in DEFINITE else self.history.unknown)(
                        op, exc.code)
                    return None
                continue
            except Exception as exc:  # a broken connection: it may have been sent
                if time.monotonic() > deadline:
                    self.history.unknown(op, type(exc).__name__)
                    return None
                await asyncio.sleep(0.05)  # sleep-ok: the connection reconnects
                continue
            self.history.ok(op, result.version)
            return result

    async def run(self, stop: asyncio.Event) -> None:
        turn = 0
        while not stop.is_set():
            key = FROZEN[turn % len(FROZEN)]  # both in turn: a client's and the engine's
            turn += 1
            space, variable = key.split("/")
            cid = uuid.uuid4().hex
            # a freeze pending at the stop is seen through: it must end unfrozen
            if await self.command(Freeze(space=space, variable=variable, command_id=cid),
                                  time.monotonic() + 30) is None:
                continue
            await _wait(stop, self.rng.uniform(0.3, 0.8))
            cid = uuid.uuid4().hex
            await self.command(Unfreeze(space=space, variable=variable, command_id=cid),
                               time.monotonic() + 30)
            await _wait(stop, self.rng.uniform(0.1, 0.3))  # sets of f may succeed too


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def feedback(nc: Any, rng: random.Random, counts: dict[str, int],
                   stop: asyncio.Event) -> None:
    """Rewards for ``q`` so the engine keeps running trials (paced: ~20 a second)."""
    v = Variables(nc, GROUP)
    while not stop.is_set():
        try:
            await v.feedback("q", reward=rng.uniform(-1, 1), timeout=1.0)
            counts["acked"] += 1
        except Exception:
            counts["unanswered"] += 1
        await _wait(stop, 0.05)


def windows(ops: list[Operation]) -> list[FreezeWindow]:
    """Each acknowledged freeze, to the next acknowledged unfreeze of its variable."""
    out = []
    for o in ops:
        if o.f != "freeze" or o.status != "ok":
            continue
        end = next((u.result for u in ops if u.f == "unfreeze" and u.key == o.key
                    and u.status == "ok" and u.result > o.result), None)
        out.append(FreezeWindow(o.key or "", o.result, end))
    return out


async def member_read(nc: Any, member: str, query: dict[str, Any],
                      timeout: float = 2.0) -> Any:
    """A read answered by ``member``'s own state machine (never forwarded elsewhere)."""
    msg = await nc.request(Subjects().raft(GROUP, member, "read"), encode({"query": query}),
                           timeout=timeout)
    reply = decode(msg.data, msg.headers)
    err = BrokerError.from_payload(reply)
    if err is not None:
        raise err
    return reply["result"]


async def converge(nc: Any, deadline: float) -> float | None:
    """Poll every member's state until all answer the same; when they did (None: never)."""
    while time.monotonic() < deadline:
        try:
            states = await asyncio.gather(*(member_read(nc, m, {"op": "state"})
                                            for m in NODE_IDS))
        except Exception:
            states = []
        if states and all(s == states[0] for s in states):
            return time.monotonic()
        await asyncio.sleep(0.1)  # sleep-ok: polling members catching up after the heal
    return None


async def histories(nc: Any) -> dict[str, dict[str, list[Entry]]]:
    out: dict[str, dict[str, list[Entry]]] = {}
    for member in NODE_IDS:
        out[member] = {}
        for key in DEFAULTS:
            space, name = key.split("/")
            got = await member_read(nc, member, {"op": "history", "space": space,
                                                 "name": name}, timeout=5.0)
            out[member][key] = [Entry(e["version"], e["value"], e.get("actor"))
                                for e in got["history"]]
    return out


def plan_faults(ctx: ScenarioContext, h: Harness) -> FaultSchedule:
    schedule = FaultSchedule(random.Random(ctx.seed))
    rng = seeded(ctx, "targets")
    kinds = [
        window(schedule, h.node(rng.choice(NODE_IDS)).kill_fault(), (1.5, 2.5)),
        window(schedule, h.node(rng.choice(NODE_IDS)).pause_fault(), (1.0, 2.0)),
    ]
    cover_plan(schedule, kinds, ctx.duration, hosts=host_faults(schedule, h, rng),
               budget=fault_budget(ctx))
    return schedule


def convergence(healed: float, converged: float | None) -> CheckResult:
    took = None if converged is None else round(max(converged - healed, 0.0), 3)
    bad = [] if took is not None and took <= CONVERGE_S else [
        f"members did not agree within {CONVERGE_S}s of the final heal (took {took})"]
    return CheckResult.of("convergence", bad, recovery_s=took)


@scenario("variables", "a variables group on three node daemons with an adaptation "
          "engine: clients set, an admin freezes, the engine runs trials under host "
          "partitions, kill -9 and SIGSTOP of a member's node; every member converges to "
          "one history, acknowledged sets once, a frozen variable never changes")
async def run(ctx: ScenarioContext) -> ScenarioReport:
    report = ScenarioReport(scenario="variables", seed=ctx.seed, duration_s=ctx.duration,
                            nats_server=server_version())
    nodes = {n: node_agents(n, ctx.seed) for n in NODE_IDS}
    async with harness(ctx, "var", nodes, services(), report) as h:
        admin = await h.client("admin-1", Role.ADMIN)
        setup = Variables(admin, GROUP, timeout=30)
        await setup.define_space(OPS)
        await setup.define_space(Q)
        history = History()
        clients = [SetClient(i, await h.client(f"c{i}", Role.CLIENT), history,
                             seeded(ctx, f"c{i}")) for i in range(CLIENTS)]
        freezer = Freezer(admin, history, seeded(ctx, "admin"))
        fb_nc = await h.client("feedback", Role.CLIENT)
        fb_counts = {"acked": 0, "unanswered": 0}
        fb_rng = seeded(ctx, "feedback")
        schedule = plan_faults(ctx, h)
        report.fault_plan = schedule.plan()
        ctx.progress(f"sets from {CLIENTS} clients, freezes, engine trials; "
                     f"{sum(s['action'] == 'inject' for s in report.fault_plan)} faults")
        healed = await drive(h, schedule, [
            *(c.run for c in clients), freezer.run,
            lambda stop: feedback(fb_nc, fb_rng, fb_counts, stop)], report)
        settled = time.monotonic()  # every node daemon ready again (a killed one restarted)
        ctx.progress("final heal: a set, then every member's state until they agree")
        probe = clients[0]
        deadline = time.monotonic() + 20
        while not (done := await probe.one("v0")) and time.monotonic() < deadline:
            pass
        set_ok = time.monotonic() if done else None
        observer = await h.client("observer", Role.OBSERVER)
        converged = await converge(observer, time.monotonic() + CONVERGE_S + 10)
        held = await histories(observer)
        ops = history.operations()
        report.ops = history.counts()
        wins = windows(ops)
        report.checks = [
            check_one_history(held),
            check_sets(ops, held, limit=DEFAULT_HISTORY, trusted=TRUSTED, defaults=DEFAULTS),
            check_frozen(wins, held),
            convergence(healed, converged),
        ]
        engine = sum(1 for k in ("q/x", "q/y") for e in held[NODE_IDS[0]][k]
                     if e.actor and e.actor.startswith(TRUSTED))
        report.checks[1].details.update(
            rejected_frozen=sum(c.rejected_frozen for c in clients), engine_changes=engine,
            feedback=fb_counts)
        report.checks[2].details.update(frozen_keys=sorted({w.key for w in wins}))
        report.recovery = {
            "settled_s": round(max(settled - healed, 0.0), 3),
            "set_ok_s": None if set_ok is None else round(max(set_ok - healed, 0.0), 3),
            "converged_s": report.checks[3].details["recovery_s"],
            "node_start_failures": float(sum(len(n.restart_errors) for n in h.nodes)),
        }
        path = ctx.workdir / "history.jsonl"
        history.to_jsonl(path)
        report.history_path = str(path)
        (ctx.workdir / "inputs.json").write_text(json.dumps({"histories": held}))
    return report
