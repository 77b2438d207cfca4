"""The ``bank`` scenario on the netns cluster, and its conservation checker against
planted bugs.

One run (module-scoped): six accounts funded once through the treasury, money moved by
auctions whose sellers rotate and by treasury transfers, under kill -9/SIGSTOP of an
auctioneer's node and the host nemeses. It must pass with every host fault injected
without error. Then its recorded final state (``inputs.json``) is re-checked offline:
unmodified it passes; one balance changed, a negative balance seen by the watch, a
settlement debited but never credited, a treasury transfer half applied and a deposit
nobody asked for each turn the verdict into "violation".

Replay a run with ``broker-agents chaos run --network netns --scenario bank --seed N``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker_agents.core.budget import Account
from chaos.checkers import check_balances
from chaos.checkers.bank import Payment, check_conservation
from chaos.checkers.result import CheckResult
from chaos.report import ScenarioReport
from chaos.scenarios import run_scenario
from chaos.scenarios.support import HOST_KINDS
from tests.chaos.netns.conftest import requires_netns

pytestmark = pytest.mark.chaos



@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ScenarioReport, dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("bank")
    report = run_scenario("bank", 3, 6, workdir, progress=lambda _: None, network="netns")
    inputs = json.loads((workdir / "inputs.json").read_text()) if report.verdict == "ok" else {}
    return report, inputs


def hint(report: ScenarioReport) -> str:
    return f"replay: {report.replay_hint()}: {report.error} {report.violations}"


def conservation(inputs: dict[str, Any]) -> CheckResult:
    return check_conservation([Account.model_validate(a) for a in inputs["accounts"]],
                              [Payment(**p) for p in inputs["payments"]], inputs["treasury"],
                              transfers=[tuple(t) for t in inputs["transfers"]], final=True)


@requires_netns
def test_bank_conserves_money_under_host_partitions(
        run: tuple[ScenarioReport, dict[str, Any]]) -> None:
    report, _ = run
    why = hint(report)
    assert report.verdict == "ok", why
    assert report.network == "netns", why
    injected = [f for f in report.faults if f["action"] == "inject"]
    assert {f["kind"] for f in injected} & HOST_KINDS, why
    assert {"kill_node", "pause_node"} & {f["kind"] for f in injected}, why
    assert not [f for f in report.faults if f["error"]], why
    assert report.ops["ok"] > 40, why
    bank = next(c for c in report.checks if c.checker == "bank-conservation")
    assert bank.details["settled"] > 10 and bank.details["treasury_transfers"] > 5, why
    heals = next(c for c in report.checks if c.checker == "conserved-after-heals")
    assert heals.details["checks"] >= 1, why
    assert report.recovery["transfer_ok_s"] is not None, why


@requires_netns
def test_bank_checker_catches_planted_bugs(
        run: tuple[ScenarioReport, dict[str, Any]]) -> None:
    report, inputs = run
    assert report.verdict == "ok", hint(report)
    assert conservation(inputs).ok
    accounts = inputs["accounts"]

    changed = json.loads(json.dumps(inputs))
    changed["accounts"][0]["balance"] += 0.01  # money minted from nothing
    assert not conservation(changed).ok

    snapshots = [*inputs["snapshots"], [0.0, accounts[0]["owner"], -1]]
    balances = {a["owner"]: round(a["balance"] * 100) for a in accounts}
    assert check_balances({}, balances, [tuple(s) for s in inputs["snapshots"]],
                          minted=inputs["minted"]).ok
    assert not check_balances({}, balances, [tuple(s) for s in snapshots],
                              minted=inputs["minted"]).ok

    def owner(name: str) -> dict[str, Any]:
        return next(a for a in accounts if a["owner"] == name)

    # a settled payment whose seller could lose the credit without going below zero
    paid = next(p for p in inputs["payments"] if p["amount"] > 0
                and f"debit:{p['auction_id']}" in owner(p["payer"])["applied"]
                and owner(p["seller"])["balance"] >= p["amount"])
    uncredited = json.loads(json.dumps(inputs))
    seller = next(a for a in uncredited["accounts"] if a["owner"] == paid["seller"])
    seller["applied"].remove(f"credit:{paid['auction_id']}:{paid['payer']}")
    seller["balance"] -= paid["amount"]  # the credit lost, balance consistent with it
    result = conservation(uncredited)
    assert not result.ok and any("never credited" in v for v in result.violations)

    half = json.loads(json.dumps(inputs))
    deposited = {k for a in half["accounts"] for k in a["applied"]}
    into = next(d for _, d in half["transfers"] if d in deposited)
    for acc in half["accounts"]:
        if into in acc["applied"]:
            acc["applied"].remove(into)
            acc["balance"] -= half["treasury"][into]
    result = conservation(half)
    assert not result.ok and any("half applied" in v for v in result.violations)

    forged = json.loads(json.dumps(inputs))
    forged["accounts"][1]["applied"].append("deposit:forged")
    forged["accounts"][1]["balance"] += 5.0
    result = conservation(forged)
    assert not result.ok and any("nobody requested" in v for v in result.violations)


def test_in_flight_settlement_is_conserved_for_any_read_order() -> None:
    """A settlement read half done either way round is conserved (not a violation) while
    transfers go on; at the end it is one."""
    def acc(owner: str, balance: float, *applied: str) -> Account:
        return Account(owner=owner, balance=balance, applied=applied)

    treasury = {"deposit:fa": 100.0, "deposit:fb": 100.0}
    pay = [Payment("x", "a", "b", 30.0)]
    funded = ("deposit:fa",), ("deposit:fb",)
    debited_first = [acc("a", 70.0, *funded[0], "debit:x"), acc("b", 100.0, *funded[1])]
    credited_first = [acc("a", 100.0, *funded[0]),
                      acc("b", 130.0, *funded[1], "credit:x:a")]
    for state in (debited_first, credited_first):
        assert check_conservation(state, pay, treasury, label="mid-run").ok
        assert not check_conservation(state, pay, treasury, final=True).ok
    wrong = [acc("a", 70.0, *funded[0], "debit:x"), acc("b", 110.0, *funded[1])]
    assert not check_conservation(wrong, pay, treasury, label="mid-run").ok
