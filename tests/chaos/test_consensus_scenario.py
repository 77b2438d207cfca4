"""The consensus scenario: how client outcomes are classified, how leadership is observed,
and one bounded run against 3 node daemons hosting a Raft group (marker ``chaos``).

Replay a failing run with ``pytest tests/chaos/test_consensus_scenario.py --seed N`` or
``broker-agents chaos run --scenario consensus --seed N``.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from broker_agents import codec
from broker_agents.core.errors import BrokerError, ErrorCode
from chaos.checkers import check_register
from chaos.checkers.leaders import elections_from_log, parse_raft_metrics
from chaos.history import History, Operation
from chaos.report import ScenarioReport
from chaos.scenarios import run_scenario
from chaos.scenarios.consensus import RegisterClient

NOT_LEADER = BrokerError(ErrorCode.NOT_LEADER, "not the leader", {"leader": None}).to_payload()


def ok(result: Any, leader: str = "node-1") -> dict[str, Any]:
    return {"result": result, "index": 1, "leader": leader}


class ScriptedNC:
    """Answers requests from a script: "timeout", "noresp" or a reply payload; the last
    step repeats. Remembers every request body."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.bodies: list[Any] = []

    async def request(self, subject: str, payload: bytes, timeout: float) -> Any:
        self.bodies.append(codec.decode(payload, None))
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if step == "timeout":
            raise NatsTimeout
        if step == "noresp":
            raise NoRespondersError
        return SimpleNamespace(data=codec.encode(step), headers=None)


def client(*script: Any) -> tuple[RegisterClient, ScriptedNC, History]:
    nc = ScriptedNC(*script)
    history = History()
    return RegisterClient("c0", nc, history, random.Random(0), op_timeout=0.3), nc, history


def only_op(history: History) -> Operation:
    (op,) = history.operations()
    return op


async def test_a_write_answered_only_not_leader_is_a_definite_fail() -> None:
    c, _, history = client(NOT_LEADER)
    await c.write("k")
    op = only_op(history)
    assert (op.status, op.error) == ("fail", ErrorCode.NOT_LEADER)


async def test_a_write_without_responders_is_a_definite_fail() -> None:
    c, _, history = client("noresp")
    await c.write("k")
    assert only_op(history).status == "fail"


async def test_a_write_that_timed_out_once_is_unknown_even_if_later_refused() -> None:
    c, _, history = client("timeout", NOT_LEADER)
    await c.write("k")
    op = only_op(history)
    assert op.status == "unknown"
    assert math.isinf(op.complete_time)


async def test_a_retried_write_keeps_one_request_id_and_is_ok_when_it_commits() -> None:
    c, nc, history = client("timeout", NOT_LEADER, ok({"ok": True, "version": 3}))
    await c.write("k")
    assert only_op(history).status == "ok"
    assert len(nc.bodies) == 3
    assert len({b["request_id"] for b in nc.bodies}) == 1


async def test_a_rejected_write_is_a_definite_fail() -> None:
    rejected = BrokerError(ErrorCode.REJECTED, "ValueError: bad").to_payload()
    c, _, history = client("timeout", rejected)
    await c.write("k")
    assert (only_op(history).status, only_op(history).error) == ("fail", ErrorCode.REJECTED)


async def test_a_committed_cas_that_did_not_match_is_a_fail_and_its_read_is_ok() -> None:
    c, nc, history = client(ok({"value": "a", "version": 1}),
                            ok({"ok": False, "value": "b", "version": 2}))
    await c.cas("k")
    read, cas = history.operations()
    assert (read.f, read.status, read.result) == ("read", "ok", "a")
    assert (cas.f, cas.status, cas.args) == ("cas", "fail", ["a", "c0-1"])
    assert nc.bodies[1]["command"] == {"op": "cas", "key": "k", "value": "c0-1",
                                       "expected": "a"}


async def test_a_read_that_timed_out_is_unknown() -> None:
    c, _, history = client("timeout")
    c.raft.attempt_timeout = 0.05
    assert await c.read("k") == (False, None)
    assert only_op(history).status == "unknown"


METRICS = """\
# HELP ba_raft_term Current Raft term
# TYPE ba_raft_term gauge
ba_raft_term{group="reg",member="node-2"} 7.0
ba_raft_term{group="other",member="node-2"} 99.0
# TYPE ba_raft_is_leader gauge
ba_raft_is_leader{group="reg",member="node-2"} 1.0
ba_raft_is_leader{group="other",member="node-2"} 0.0
ba_raft_commit_index{group="reg",member="node-2"} 42.0
"""


def test_metrics_give_each_members_term_and_role_for_the_group_only() -> None:
    assert parse_raft_metrics(METRICS, "reg") == {"node-2": (7, "leader")}
    assert parse_raft_metrics(METRICS, "other") == {"node-2": (99, "follower")}
    assert parse_raft_metrics("", "reg") == {}


def test_elected_log_lines_give_member_and_term_and_skip_other_lines() -> None:
    lines = [
        json.dumps({"event": "raft.elected", "group": "reg", "member": "node-1", "term": 3}),
        json.dumps({"event": "raft.elected", "group": "x", "member": "node-1", "term": 4}),
        json.dumps({"event": "raft.stepped_down", "group": "reg", "member": "node-1"}),
        "Traceback (most recent call last): raft.elected",
        json.dumps({"event": "raft.elected", "group": "reg", "member": "node-3", "term": 5}),
    ]
    assert elections_from_log(lines, "reg") == [("node-1", 3), ("node-3", 5)]


# -- the bounded run -----------------------------------------------------------------------


@pytest.fixture
def seed(sim_seeds: list[int]) -> int:
    return sim_seeds[0] if len(sim_seeds) == 1 else 1


def stale_read(ops: list[Operation]) -> list[Operation] | None:
    """The history with one read made stale: it returns a value an acknowledged write had
    already overwritten before the read began (so it must not be linearizable)."""
    by_key: dict[str | None, list[Operation]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    for key_ops in by_key.values():
        writes = [o for o in key_ops if o.f == "write" and o.status == "ok"]
        for old, new in itertools.pairwise(writes):
            if new.invoke_time <= old.complete_time:
                continue
            read = next((o for o in key_ops if o.f == "read" and o.status == "ok"
                         and o.invoke_time > new.complete_time), None)
            if read is not None:
                bad = read.model_copy(update={"result": old.args})
                return [bad if o.op_id == read.op_id else o for o in ops]
    return None


def hint(report: ScenarioReport, seed: int) -> str:
    return (f"replay: pytest {__file__} --seed {seed} (or {report.replay_hint()}): "
            f"{report.error} {report.violations}")


@pytest.mark.chaos
def test_raft_register_is_linearizable_with_one_leader_per_term_under_leader_kills(
        tmp_path: Path, seed: int) -> None:
    print(f"consensus scenario seed {seed}")
    report = run_scenario("consensus", seed, 15, tmp_path, progress=lambda _: None)
    why = hint(report, seed)
    assert report.error is None, why
    injected = [f for f in report.faults if f["action"] == "inject"]
    assert {"kill_leader", "isolate_leader", "isolate_client", "cut_server", "asymmetric_cut",
            "latency"} <= {f["kind"] for f in injected}, why
    assert any("(leader, term" in f["target"] for f in injected
               if f["kind"] == "kill_leader"), why
    assert all(f["error"] is None for f in report.faults), why
    assert sum(f["action"] == "heal" for f in report.faults) >= len(injected), why
    assert report.ops["ok"] > 500, why
    checks = {c.checker: c for c in report.checks}
    assert checks["one-leader-per-term"].details["elections_logged"] >= 2, why
    assert checks["one-leader-per-term"].details["observations"] > 50, why
    assert report.recovery["commit_after_heal_s"] is not None, why
    assert report.verdict == "ok", why
    # The same checker must reject this very history once one read is made stale.
    assert report.history_path is not None
    ops = History.from_jsonl(Path(report.history_path).read_text()).operations()
    tampered = stale_read(ops)
    assert tampered is not None, why
    assert check_register(tampered).verdict == "violation", why
