"""``bench all``: the suite registry's kwargs handling and a report that survives a crash."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from node.bench import report as report_mod
from node.bench import suites as suites_mod
from node.bench.suites import SUITES, Suite, SuiteTimeout, run_suite_sync
from node.cli import app


@pytest.fixture
def fake_suite(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """``node.bench.fake`` whose ``run_fake_bench`` records the kwargs it was called with."""
    calls: list[dict[str, Any]] = []

    async def run_fake_bench(runs: int = 100, size: int = 10) -> dict[str, Any]:
        calls.append({"runs": runs, "size": size})
        return {"suite": "fake", "runs": runs, "x_us_p50": 1.0, "x_us_p50_ci95": [0.9, 1.1]}

    module = types.ModuleType("node.bench.fake")
    module.run_fake_bench = run_fake_bench  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "node.bench.fake", module)
    monkeypatch.setitem(SUITES, "fake", Suite("fake", {"runs": 3, "gone_knob": 7}))
    return calls


def test_quick_counts_apply_and_unknown_kwargs_are_dropped_and_listed(
        fake_suite: list[dict[str, Any]]) -> None:
    quick = run_suite_sync("fake", quick=True, size=5)
    assert fake_suite[-1] == {"runs": 3, "size": 5}
    assert quick["ignored_kwargs"] == ["gone_knob"]
    full = run_suite_sync("fake", quick=False, timeout=30)
    assert fake_suite[-1] == {"runs": 100, "size": 10}
    assert "ignored_kwargs" not in full


def test_every_registered_suite_exists_with_its_quick_knobs() -> None:
    for suite in SUITES.values():
        fn = suite.function()
        kept, dropped = suites_mod.split_kwargs(fn, suite.quick)
        assert kept, f"{suite.name}: none of its quick kwargs is accepted ({dropped})"


def test_a_crashing_suite_is_recorded_and_the_others_still_run(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def fake_run(name: str, *, quick: bool, timeout: float | None) -> dict[str, Any]:
        if name == "registry":
            raise RuntimeError("boom")
        if name == "auction":
            raise SuiteTimeout("timed out after 300 s")
        if name == "variables":
            raise TimeoutError  # a request inside the suite: its own error, not ours
        return {"suite": name, "quick": quick}

    monkeypatch.setattr(report_mod, "run_suite_sync", fake_run)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["bench", "all", "--quick", "--out", str(out)])
    assert result.exit_code == 1, result.output
    report = json.loads(out.read_text())
    assert list(report["suites"]) == list(SUITES)
    assert report["suites"]["registry"]["error"] == "RuntimeError: boom"
    assert "timed out" in report["suites"]["auction"]["error"]
    assert report["suites"]["messaging"] == {"suite": "messaging", "quick": True}
    assert report["suites"]["variables"]["error"].startswith("TimeoutError")
    assert "traceback" in report["suites"]["variables"]
    assert report_mod.failed(report) == ["registry", "auction", "variables"]
    assert report["quick"] is True
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu_model"]
    assert report["versions"]["python"] and "nats_server" in report["versions"]
    assert set(report["git"]) == {"revision", "branch", "dirty"}
    assert set(report["load"]) == set(SUITES)


def test_all_suites_ok_exits_0_and_an_unknown_suite_is_a_usage_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_mod, "run_suite_sync",
                        lambda name, *, quick, timeout: {"suite": name})
    ok = CliRunner().invoke(app, ["bench", "all", "--suite", "messaging", "--json"])
    assert ok.exit_code == 0, ok.output
    assert list(json.loads(ok.stdout.strip().splitlines()[-1])["suites"]) == ["messaging"]
    bad = CliRunner().invoke(app, ["bench", "all", "--suite", "nope"])
    assert bad.exit_code == 2


REPO = Path(__file__).resolve().parents[3]
FAKE_CLI = """#!/usr/bin/env bash
echo "fake $*" >> "$(dirname "$0")/../../calls.log"
if [ "$2" = all ]; then
  out="${@: -1}"; echo '{"suites": {}}' > "$out"; exit 1
fi
echo "compare table"; exit 1
"""


@pytest.mark.parametrize("tests_exit", [0, 3])
def test_ci_keeps_the_test_commands_exit_code_whatever_the_benchmarks_say(
        tmp_path: Path, tests_exit: int) -> None:
    """.ci/run: the tests decide; ``bench all`` failing and ``bench compare`` finding a
    regression are printed only."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    for path, text in ((tmp_path / "scripts" / "bootstrap", f"#!/bin/sh\nexit {tests_exit}\n"),
                       (tmp_path / ".venv" / "bin" / "broker-agents", FAKE_CLI),
                       (tmp_path / "bench" / "baseline.json", "{}")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
    env = {**os.environ, "BA_CI_BENCH_OUT": str(tmp_path / "new.json")}
    env.pop("BA_CI_BENCH", None)  # a CI run made with the benchmarks off must not leak in
    done = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == tests_exit, done.stdout + done.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls[0].startswith("fake bench all --quick --json --out")
    assert calls[1] == f"fake bench compare bench/baseline.json {tmp_path / 'new.json'}"
    assert "compare table" in done.stdout


def test_a_suite_overrunning_its_time_is_told_apart_from_a_timeout_inside_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def run_slow_bench() -> dict[str, Any]:
        await asyncio.Event().wait()  # never set: only the limit ends it
        return {}

    async def run_inner_bench() -> dict[str, Any]:
        raise TimeoutError

    for name, fn in (("slow", run_slow_bench), ("inner", run_inner_bench)):
        module = types.ModuleType(f"node.bench.{name}")
        setattr(module, f"run_{name}_bench", fn)
        monkeypatch.setitem(sys.modules, f"node.bench.{name}", module)
        monkeypatch.setitem(SUITES, name, Suite(name))
    with pytest.raises(SuiteTimeout):
        run_suite_sync("slow", timeout=0.05)
    with pytest.raises(TimeoutError):
        run_suite_sync("inner", timeout=30)


def test_in_process_is_refused_clearly_by_a_consensus_bench_without_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def run_consensus_bench(proposals: int = 10) -> dict[str, Any]:
        return {"proposals": proposals}

    module = types.ModuleType("node.bench.consensus_old")
    module.run_consensus_old_bench = run_consensus_bench  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "node.bench.consensus_old", module)
    monkeypatch.setitem(SUITES, "consensus", Suite("consensus_old"))
    refused = CliRunner().invoke(app, ["bench", "consensus", "--in-process"])
    assert refused.exit_code == 2
    assert "in-process" in refused.stderr
    ran = CliRunner().invoke(app, ["bench", "consensus", "--json", "--proposals", "3"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout.strip().splitlines()[-1]) == {"proposals": 3}
