"""Bounded runs of the node-daemon scenarios (registry, auction) against real processes.

Replay a failing run with ``pytest tests/chaos/test_node_scenarios.py --seed N`` or
``broker-agents chaos run --scenario <name> --seed N``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.report import ScenarioReport
from chaos.scenarios import run_scenario

pytestmark = pytest.mark.chaos

@pytest.fixture
def seed(sim_seeds: list[int]) -> int:
    return sim_seeds[0] if len(sim_seeds) == 1 else 1


def hint(report: ScenarioReport, seed: int) -> str:
    return (f"replay: pytest {__file__} --seed {seed} (or {report.replay_hint()}): "
            f"{report.error} {report.violations}")


def injected_kinds(report: ScenarioReport) -> set[str]:
    return {f["kind"] for f in report.faults if f["action"] == "inject"}


def test_registry_views_converge_and_no_registration_is_lost(tmp_path: Path, seed: int) -> None:
    report = run_scenario("registry", seed, 12, tmp_path, progress=lambda _: None)
    why = hint(report, seed)
    assert report.error is None, why
    assert {"isolate_client", "cut_server", "kill_node", "pause_node", "cpu_starve"} <= \
        injected_kinds(report), why
    assert all(f["error"] is None for f in report.faults), why
    assert report.ops["ok"] > 200, why
    checks = {c.checker: c for c in report.checks}
    assert checks["dead-node-agents-reaped"].details["outages_checked"] >= 1, why
    assert report.recovery["views_converged_s"] is not None, why
    assert report.verdict == "ok", why


def test_auctions_award_once_and_conserve_money_under_kills_and_partitions(
        tmp_path: Path, seed: int) -> None:
    report = run_scenario("auction", seed, 12, tmp_path, progress=lambda _: None)
    why = hint(report, seed)
    assert report.verdict == "ok", why
    assert {"kill_node", "pause_node", "cpu_starve", "isolate_client",
            "cut_server"} <= injected_kinds(report), why
    assert report.ops["ok"] > 50, why
    awards = next(c for c in report.checks if c.checker == "awards-exactly-once")
    assert awards.details["settled"] > 50, why
    assert report.recovery["auction_ok_s"] is not None, why
