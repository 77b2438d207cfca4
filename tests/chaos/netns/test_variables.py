"""The ``variables`` scenario on the netns cluster: one run, then its checkers re-run on
that run's own data with a planted bug each (a member whose history diverges, a change
while frozen, a lost acknowledged set) to show they catch it.

Replay with ``broker-agents chaos run --network netns --scenario variables --seed N``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.checkers.variables import Entry, check_frozen, check_one_history, check_sets
from chaos.history import History, Operation
from chaos.report import ScenarioReport
from chaos.scenarios import run_scenario
from chaos.scenarios.support import HOST_KINDS
from chaos.scenarios.variables import DEFAULTS, TRUSTED, windows
from tests.chaos.netns.conftest import requires_netns

pytestmark = [pytest.mark.chaos, requires_netns]

SEED = 7
DURATION = 6.0
Histories = dict[str, dict[str, list[Entry]]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ScenarioReport, Path]:
    workdir = tmp_path_factory.mktemp("variables")
    report = run_scenario("variables", SEED, DURATION, workdir, progress=lambda _: None,
                          network="netns")
    return report, workdir


def load(workdir: Path) -> tuple[list[Operation], Histories]:
    ops = History.from_jsonl((workdir / "history.jsonl").read_text()).operations()
    raw = json.loads((workdir / "inputs.json").read_text())["histories"]
    return ops, {m: {k: [Entry(*e) for e in es] for k, es in h.items()}
                 for m, h in raw.items()}


def test_members_converge_to_one_history_and_frozen_variables_never_change(
        run: tuple[ScenarioReport, Path]) -> None:
    report, _ = run
    why = f"replay: {report.replay_hint()}: {report.error} {report.violations}"
    assert report.network == "netns", why
    assert report.verdict == "ok", why
    injected = {f["kind"] for f in report.faults if f["action"] == "inject"}
    assert injected & HOST_KINDS, why
    assert {"kill_node", "pause_node"} & injected, why  # a short run: one of the two
    assert all(f["error"] is None for f in report.faults), why
    checks = {c.checker: c for c in report.checks}
    assert checks["sets-exactly-once"].details["acknowledged"] > 50, why
    assert checks["frozen-never-changes"].details["closed"] >= 1, why
    assert report.recovery["converged_s"] is not None, why


def test_the_checkers_catch_bugs_planted_in_the_runs_own_data(
        run: tuple[ScenarioReport, Path]) -> None:
    report, workdir = run
    assert report.error is None, report.error
    ops, held = load(workdir)
    assert check_one_history(held).ok
    assert check_sets(ops, held, limit=100, trusted=TRUSTED, defaults=DEFAULTS).ok
    wins = windows(ops)
    assert check_frozen(wins, held).ok

    member = sorted(held)[-1]
    diverged = {m: dict(h) for m, h in held.items()}
    key = next(k for k, es in held[member].items() if len(es) > 2)
    last = diverged[member][key][-1]
    diverged[member][key] = [*diverged[member][key][:-1], last._replace(value=-1)]
    assert not check_one_history(diverged).ok

    acked = next(o for o in ops if o.f == "set" and o.status == "ok"
                 and any(e.version == o.result for e in held[member][o.key or ""]))
    lost = {m: {k: [e for e in es if e.version != acked.result] for k, es in h.items()}
            for m, h in held.items()}
    assert not check_sets(ops, lost, limit=100, trusted=TRUSTED, defaults=DEFAULTS).ok

    w = next(w for w in wins if w.unfrozen_at is not None and w.unfrozen_at > w.frozen_at + 1)
    changed = {m: {k: list(es) for k, es in h.items()} for m, h in held.items()}
    changed[member][w.key].append(Entry(w.frozen_at + 1, 123, "c0"))
    assert not check_frozen(wins, changed).ok
