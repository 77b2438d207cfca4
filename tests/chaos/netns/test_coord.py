"""The ``coord`` scenario on the netns cluster: one run, then its checkers re-run on that
run's own history and tapped PBFT decisions with a planted bug each (a vote decision the
counted answers contradict, a forged answer, a PBFT instance deciding a second value, a
value nobody proposed) to show they catch it.

Replay with ``broker-agents chaos run --network netns --scenario coord --seed N``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.checkers.coord import Decision, Silence, check_pbft, check_votes
from chaos.history import History, Operation
from chaos.report import ScenarioReport
from chaos.scenarios import run_scenario
from chaos.scenarios.coord import DECISIONS, INPUTS, PREFS, load_decisions, load_silences
from chaos.scenarios.support import HOST_KINDS
from tests.chaos.netns.conftest import requires_netns

pytestmark = [pytest.mark.chaos, requires_netns]

SEED = 7
DURATION = 6.0


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ScenarioReport, Path]:
    workdir = tmp_path_factory.mktemp("coord")
    report = run_scenario("coord", SEED, DURATION, workdir, progress=lambda _: None,
                          network="netns")
    return report, workdir


def load(workdir: Path) -> tuple[list[Operation], list[Decision]]:
    ops = History.from_jsonl((workdir / "history.jsonl").read_text()).operations()
    return ops, load_decisions(workdir / DECISIONS)


def test_votes_decide_what_the_answers_imply_and_pbft_decides_one_value(
        run: tuple[ScenarioReport, Path]) -> None:
    report, _ = run
    why = f"replay: {report.replay_hint()}: {report.error} {report.violations}"
    assert report.network == "netns", why
    assert report.verdict == "ok", why
    injected = {f["kind"] for f in report.faults if f["action"] == "inject"}
    assert injected & HOST_KINDS, why
    assert all(f["error"] is None for f in report.faults), why
    checks = {c.checker: c for c in report.checks}
    assert checks["vote-decisions-implied"].details["decided"] > 20, why
    assert checks["pbft-one-value"].details["decided"] > 10, why
    assert checks["pbft-one-value"].details["replies"] > 30, why
    assert report.recovery["vote_ok_s"] is not None, why
    assert report.recovery["pbft_ok_s"] is not None, why


def decided_votes(ops: list[Operation]) -> list[Operation]:
    return [o for o in ops if o.f == "vote" and o.status == "ok" and o.result["decision"]]


def test_the_vote_checker_catches_a_contradicting_decision_in_this_history(
        run: tuple[ScenarioReport, Path]) -> None:
    ops, _ = load(run[1])
    assert check_votes(ops, PREFS).ok
    victim = decided_votes(ops)[0]
    victim.result["decision"] = "no" if victim.result["decision"] == "yes" else "yes"
    res = check_votes(ops, PREFS)
    assert not res.ok and f"op {victim.op_id} " in res.violations[0]


def test_the_vote_checker_catches_a_forged_answer_in_this_history(
        run: tuple[ScenarioReport, Path]) -> None:
    ops, _ = load(run[1])
    victim = decided_votes(ops)[-1]
    counted = next(a for a in victim.result["answers"] if a["status"] == "choice")
    counted["choice"] = "no" if counted["choice"] == "yes" else "yes"
    res = check_votes(ops, PREFS)
    assert not res.ok
    assert any(f"{counted['participant']} counted as" in v for v in res.violations)


def test_the_pbft_checker_catches_a_second_value_in_this_history(
        run: tuple[ScenarioReport, Path]) -> None:
    ops, decisions = load(run[1])
    assert check_pbft(decisions, ops).ok
    first, other = decisions[0], next(d for d in decisions if d.group != decisions[0].group)
    planted = [*decisions, Decision(first.group, "r-planted", first.seq, other.operation)]
    res = check_pbft(planted, ops)
    assert not res.ok and any(f"group {first.group} decided 2 values" in v
                              for v in res.violations)
    unproposed = [*decisions, Decision("g-planted", "r1", 1, "never-proposed")]
    assert any("no client proposed" in v for v in check_pbft(unproposed, ops).violations)


def test_the_vote_checker_catches_a_stale_answer_in_this_history(
        run: tuple[ScenarioReport, Path]) -> None:
    """A voter whose node was killed or paused for a whole vote answered it: planted by
    recording a pause of a voter's node over a vote it answered (whether a vote fell
    inside a real pause of the run is timing, not a property of the checker)."""
    ops, _ = load(run[1])
    silences = load_silences(run[1] / INPUTS)
    assert check_votes(ops, PREFS, silences).ok
    victim, answer = next((o, a) for o in ops if o.f == "vote" and o.status == "ok"
                          for a in o.result["answers"] if a["status"] in ("choice", "abstain"))
    voter = answer["participant"]
    paused = Silence(frozenset({voter}), victim.invoke_time, victim.complete_time, "paused")
    res = check_votes(ops, PREFS, [*silences, paused])
    assert not res.ok
    assert any(f"{voter} answered" in v and "while its node was paused" in v
               for v in res.violations), res.violations
