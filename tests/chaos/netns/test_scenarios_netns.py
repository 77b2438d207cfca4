"""The existing scenarios on the netns cluster, and their checkers against planted bugs.

One run per scenario (module-scoped): servers and node daemons on hosts in network
namespaces, nft partitions, paused servers. Each must pass with every host fault
injected without error. Then the history it recorded (``history.jsonl``) and what its
checkers read besides (``inputs.json``: final states, leader observations, view samples)
are re-checked offline: unmodified they pass, and one planted bug per invariant (a
dropped acknowledged write, a stale read, two leaders in one term, a doubled award or
debit, money minted from nothing, a registry view that never converges) turns the
verdict into "violation".

Replay a run with ``pytest tests/chaos/netns/test_scenarios_netns.py --seed N`` (or
``broker-agents chaos run --network netns --scenario NAME --seed N``).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chaos.checkers import (
    check_awards,
    check_balances,
    check_convergence,
    check_leader_recovery,
    check_no_lost_writes,
    check_one_leader_per_term,
    check_register,
)
from chaos.checkers.invariants import written_value
from chaos.checkers.linearizable import freeze
from chaos.checkers.registry import check_live_agents_registered
from chaos.history import History, Operation
from chaos.report import ScenarioReport
from chaos.scenarios import run_scenario
from chaos.scenarios.support import HOST_KINDS
from tests.chaos.netns.conftest import requires_netns

pytestmark = [pytest.mark.chaos, requires_netns]

SEED = 7
DURATION = 5.0
# the faults only real hosts make (support.host_faults; kv-register's own subset)


@dataclass
class Run:
    report: ScenarioReport
    ops: list[Operation]
    inputs: dict[str, Any]

    @property
    def why(self) -> str:
        r = self.report
        return f"replay: {r.replay_hint()}: {r.error} {r.violations}"


def run_netns(name: str, request: pytest.FixtureRequest) -> Run:
    one = request.config.getoption("--seed") or os.environ.get("BA_SIM_SEED")
    seed = int(one) if one is not None else SEED
    workdir = request.getfixturevalue("tmp_path_factory").mktemp(name)
    report = run_scenario(name, seed, DURATION, workdir, progress=lambda _: None,
                          network="netns")
    ops: list[Operation] = []
    if report.history_path:
        ops = History.from_jsonl(Path(report.history_path).read_text()).operations()
    inputs_path = workdir / "inputs.json"
    inputs = json.loads(inputs_path.read_text()) if inputs_path.exists() else {}
    return Run(report, ops, inputs)


def assert_passed_on_netns(run: Run, host_kinds: Set[str], min_ok: int,
                           nodes: bool = True) -> None:
    """``nodes``: the scenario's node daemons keep JetStream buckets (consensus runs on
    core NATS only, kv-register has no node daemons)."""
    r = run.report
    assert r.error is None, run.why
    assert r.network == "netns", run.why
    roles = {h["role"] for h in r.hosts}
    assert {"nats-server", "harness"} <= roles, r.hosts
    injected = {f["kind"] for f in r.faults if f["action"] == "inject"}
    assert host_kinds & injected, (injected, run.why)  # a short run: a seeded selection
    # the nodes created the buckets, as a deployment's do: 3 replicas, leader-only reads
    assert not nodes or (r.buckets and all(b == {"replicas": 3, "direct": False}
                             for b in r.buckets.values())), (r.buckets, run.why)
    planned = {f["kind"] for f in r.fault_plan if f["action"] == "inject"}
    assert injected == planned, (injected, planned, run.why)
    assert all(f["error"] is None for f in r.faults), [f for f in r.faults if f["error"]]
    assert r.ops["ok"] >= min_ok, (r.ops, run.why)
    assert r.verdict == "ok", run.why
    assert run.ops and run.inputs, "the run recorded no history or no checker inputs"


# -- planting bugs in a recorded register history -------------------------------------

def acked_writes(ops: Sequence[Operation]) -> dict[str | None, list[Operation]]:
    out: dict[str | None, list[Operation]] = defaultdict(list)
    for op in ops:
        if op.f in ("write", "cas") and op.status == "ok":
            out[op.key].append(op)
    return out


def plant_stale_read(ops: Sequence[Operation]) -> list[Operation]:
    """A read from the second half of the history now returns a value that an
    acknowledged write had overwritten before the read began (values are unique, so
    nothing can write it again): no linearization explains it."""
    writes = acked_writes(ops)
    reads = [op for op in ops if op.f == "read" and op.status == "ok"]
    for read in reads[len(reads) // 2:]:
        before = [w for w in writes[read.key] if w.complete_time < read.invoke_time]
        for newer in before:
            old = [w for w in before if w.complete_time < newer.invoke_time
                   and freeze(written_value(w)) != freeze(read.result)]
            if old:
                stale = old[-1]
                return [op.model_copy(update={"result": written_value(stale)})
                        if op.op_id == read.op_id else op for op in ops]
    raise AssertionError("no read with an overwritten value before it: history too short")


def plant_lost_write(ops: Sequence[Operation], final: dict[str, Any]) -> dict[str, Any]:
    """The final state rolls one key back to a value that acknowledged writes superseded
    (as if the latest acknowledged ones were dropped)."""
    for key, acked in acked_writes(ops).items():
        if key is None or key not in final:
            continue
        latest = max(w.invoke_time for w in acked)
        live = {freeze(written_value(w)) for w in ops if w.key == key
                and w.f in ("write", "cas") and w.status != "fail"
                and not w.complete_time < latest}
        gone = [w for w in acked if w.complete_time < latest
                and freeze(written_value(w)) not in live]
        if gone:
            return {**final, key: written_value(gone[-1])}
    raise AssertionError("no superseded acknowledged write to roll back to")


def verdict(result: Any) -> str:
    return str(result.verdict)


# -- kv-register ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def kv_run(request: pytest.FixtureRequest) -> Run:
    return run_netns("kv-register", request)


def test_kv_register_passes_on_netns(kv_run: Run) -> None:
    assert_passed_on_netns(kv_run, {"bridge", "pause_server"}, min_ok=1000, nodes=False)


def test_kv_register_checkers_catch_planted_bugs(kv_run: Run) -> None:
    ops, final = kv_run.ops, kv_run.inputs["final"]
    assert verdict(check_register(ops)) == "ok"
    assert verdict(check_no_lost_writes(ops, final)) == "ok"
    assert verdict(check_register(plant_stale_read(ops))) == "violation"
    assert verdict(check_no_lost_writes(ops, plant_lost_write(ops, final))) == "violation"
    dropped = dict(final)
    dropped.pop(next(iter(dropped)))
    assert verdict(check_no_lost_writes(ops, dropped)) == "violation"


# -- consensus ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def consensus_run(request: pytest.FixtureRequest) -> Run:
    return run_netns("consensus", request)


def test_consensus_passes_on_netns(consensus_run: Run) -> None:
    assert_passed_on_netns(consensus_run, HOST_KINDS, min_ok=300, nodes=False)  # core NATS
    leaders = next(c for c in consensus_run.report.checks
                   if c.checker == "one-leader-per-term")
    assert leaders.details["elections_logged"] >= 1, consensus_run.why


def test_consensus_checkers_catch_planted_bugs(consensus_run: Run) -> None:
    ops, inputs = consensus_run.ops, consensus_run.inputs
    final = inputs["final"]
    observed = [(m, t, r) for m, t, r in inputs["leaders"]]
    recovered = [tuple(r) for r in inputs["recovered"]]
    assert verdict(check_register(ops)) == "ok"
    assert verdict(check_no_lost_writes(ops, final)) == "ok"
    assert verdict(check_one_leader_per_term(observed)) == "ok"
    assert verdict(check_leader_recovery(inputs["healed"], recovered)) == "ok"

    assert verdict(check_register(plant_stale_read(ops))) == "violation"
    assert verdict(check_no_lost_writes(ops, plant_lost_write(ops, final))) == "violation"
    # a second member claims a term that a recorded election (log or /metrics) gave
    member, term = next((m, t) for m, t, r in observed if r == "leader")
    usurper = next(m for m, _, _ in observed if m != member)
    assert verdict(check_one_leader_per_term(
        [*observed, (usurper, term, "leader")])) == "violation"
    late = [(inputs["healed"] + 5.0, *r[1:]) for r in recovered]
    assert verdict(check_leader_recovery(inputs["healed"], late)) == "violation"


# -- auction --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def auction_run(request: pytest.FixtureRequest) -> Run:
    return run_netns("auction", request)


def test_auction_passes_on_netns(auction_run: Run) -> None:
    assert_passed_on_netns(auction_run, HOST_KINDS, min_ok=50)


def test_auction_checkers_catch_planted_bugs(auction_run: Run) -> None:
    ops, inputs = auction_run.ops, auction_run.inputs
    awards, debits = inputs["final_awards"], inputs["debits"]
    balances, minted = inputs["balances"], inputs["minted"]
    snapshots = [tuple(s) for s in inputs["snapshots"]]
    assert verdict(check_awards(ops, awards, debits)) == "ok"
    assert verdict(check_balances({}, balances, snapshots, minted=minted)) == "ok"

    won = next(op for op in ops if op.status == "ok" and op.result[1] is not None)
    status, winner, price = won.result
    doubled = won.model_copy(update={"op_id": 10**9, "process": "twin",
                                     "result": [status, f"not-{winner}", price]})
    assert verdict(check_awards([*ops, doubled], awards, debits)) == "violation"
    assert debits, "no settlement was recorded"
    assert verdict(check_awards(ops, awards, [*debits, debits[0]])) == "violation"
    lost = {k: v for k, v in awards.items() if k != won.key}
    assert verdict(check_awards(ops, lost, debits)) == "violation"
    account = next(iter(balances))
    minted_from_nothing = {**balances, account: balances[account] + 1}
    assert verdict(check_balances({}, minted_from_nothing, snapshots,
                                  minted=minted)) == "violation"
    overdrawn = [*snapshots, (snapshots[-1][0], account, -1)]
    assert verdict(check_balances({}, balances, overdrawn, minted=minted)) == "violation"


# -- registry -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def registry_run(request: pytest.FixtureRequest) -> Run:
    return run_netns("registry", request)


def test_registry_passes_on_netns(registry_run: Run) -> None:
    assert_passed_on_netns(registry_run, HOST_KINDS, min_ok=50)
    assert registry_run.report.recovery["views_converged_s"] is not None, registry_run.why


def test_registry_checkers_catch_planted_bugs(registry_run: Run) -> None:
    inputs = registry_run.inputs
    ops = registry_run.ops + [Operation.model_validate(o) for o in inputs["reaper_ops"]]
    healed, within, final = inputs["healed"], inputs["converge_within"], inputs["final"]
    agreed = [(at, node, ok) for at, node, ok in inputs["agreement"]]
    snapshots = [(t, frozenset(keys)) for t, keys in inputs["snapshots"]]
    hosted = inputs["hosted"]
    assert verdict(check_convergence(healed, agreed, True, within)) == "ok"
    assert verdict(check_live_agents_registered(healed, snapshots, hosted, within)) == "ok"
    assert verdict(check_no_lost_writes(ops, final)) == "ok"

    # one node's view still differs from the bucket at its last sample
    last = max(range(len(agreed)), key=lambda i: agreed[i][0])
    stuck = [(at, node, ok and i != last) for i, (at, node, ok) in enumerate(agreed)]
    assert verdict(check_convergence(healed, stuck, True, within)) == "violation"
    at, keys = snapshots[-1]
    missing = [*snapshots[:-1], (at, keys - {hosted[0]})]
    assert verdict(check_live_agents_registered(healed, missing, hosted,
                                                within)) == "violation"
    assert verdict(check_no_lost_writes(ops, plant_lost_write(ops, final))) == "violation"
