"""The rolling upgrade and rollback under load, with real processes (issue 18, item 5):
3 node daemons on build N restarted one by one onto N+1, then one rolled back to N.

Replay with ``pytest tests/chaos/test_rolling_upgrade.py --seed N`` or
``broker-agents chaos run --scenario rolling-upgrade --seed N``. The commit gap of each
restart is printed and, with ``$BA_TEST_ARTIFACTS`` set, written to
``rolling_upgrade.json`` there.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from chaos.scenarios import run_scenario
from chaos.scenarios.rolling_load import FeatureAdmin

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(420)]


@pytest.fixture
def seed(sim_seeds: list[int]) -> int:
    return sim_seeds[0] if len(sim_seeds) == 1 else 1


def test_rolling_upgrade_then_rollback_under_load_loses_nothing(tmp_path: Path,
                                                                 seed: int) -> None:
    began = time.monotonic()
    report = run_scenario("rolling-upgrade", seed, 0, tmp_path, progress=print)
    runtime = time.monotonic() - began
    restarts = json.loads((tmp_path / "restarts.json").read_text()) \
        if (tmp_path / "restarts.json").exists() else []
    checks = {c.checker: c for c in report.checks}
    summary = {"seed": seed, "runtime_s": round(runtime, 1), "verdict": report.verdict,
               "ops": report.ops, "restarts": restarts,
               "failed_requests": checks["no-failed-requests"].details.get("failed")
               if "no-failed-requests" in checks else None,
               "checks": {c.checker: {"verdict": c.verdict, **c.details}
                          for c in report.checks if c.checker != "feature-flag-gated"},
               "feature_flag": checks["feature-flag-gated"].details
               if "feature-flag-gated" in checks else None}
    for r in restarts:
        print(f"restart {r['node']}{' (leader)' if r['was_leader'] else ''} "
              f"{r['from_build']}->{r['to_build']}: commit gap "
              f"{r['commit_gap_s']} s (at {r['commit_gap_at_s']} s; while stopping "
              f"{r['stop_commit_gap_s']} s), stop {r['stop_s']} s, start {r['start_s']} s, "
              f"catch-up {r['catch_up_s']} s, {r['commits']} commits meanwhile")
    baseline = report.recovery.get("baseline_commit_gap_s")
    summary["baseline_commit_gap_s"] = None if baseline is None else round(baseline, 4)
    print(f"baseline commit gap (no restart, same run): {summary['baseline_commit_gap_s']} s")
    print(f"failed requests: {summary['failed_requests']}, runtime {runtime:.1f} s")
    artifacts = os.environ.get("BA_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        (Path(artifacts) / "rolling_upgrade.json").write_text(
            json.dumps(summary, indent=2, default=str))
    why = f"replay: pytest {__file__} --seed {seed}: {report.error} {report.violations}"
    assert report.error is None, why
    assert sorted(r["node"] for r in restarts[:3]) == ["node-1", "node-2", "node-3"], why
    assert [r["to_build"] for r in restarts] == ["N+1", "N+1", "N+1", "N"], why
    assert checks["no-failed-requests"].details["failed"] == 0, why
    assert checks["acked-writes-readable"].details["acked"] > 50, why
    assert checks["awards-exactly-once"].details["settled"] > 3, why
    assert checks["unknown-fields-kept"].details["writes_after_marked"] > 3, why
    assert all(r["commits"] > 0 and r["commit_gap_s"] is not None for r in restarts), why
    if FeatureAdmin.available():  # once the build has feature flags, they are checked
        flag = checks["feature-flag-gated"].details
        accepted = [s["step"] for s in flag["steps"] if s.get("accepted") and "builds" in s]
        assert accepted == [f"{restarts[2]['node']} on N+1"], why
        assert checks["incr-exactly-once"].details["acked"] >= 5, why
    assert report.verdict == "ok", why
