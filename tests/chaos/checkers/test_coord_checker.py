"""The coord checkers catch planted bugs: a decision the counted answers do not imply, a
forged or doubled answer, a PBFT instance with two decided values, a decided value no
client proposed. Honest results come from the product's own vote core."""

from __future__ import annotations

from typing import Any

from broker_agents.core.coord.answers import Answer
from broker_agents.core.coord.models import VoteSpec
from broker_agents.core.coord.voting import tally_votes
from chaos.checkers.coord import Decision, Silence, check_pbft, check_votes, implied
from tests.chaos.checkers.histories import op

PREFS: dict[str, str | None] = {"a": "yes", "b": "yes", "c": "no", "d": None, "e": "no"}


def vote(op_id: int, rule: str, reachable: list[str], asked: list[str] | None = None
         ) -> Any:
    """An acknowledged vote as the product computes it: reachable voters answer their
    preference, the others time out."""
    asked = asked or sorted(PREFS)
    answers = {p: (Answer.abstain() if PREFS[p] is None else Answer.vote(str(PREFS[p])))
               for p in reachable}
    result = tally_votes(VoteSpec(rule=rule), asked, answers, options=["yes", "no"])
    return op(op_id, "vote", {"participants": asked, "rule": rule},
              result.model_dump(mode="json"), t=(op_id, op_id + 0.5), key=None)


def honest() -> list[Any]:
    return [vote(0, "majority", sorted(PREFS)), vote(1, "majority", ["a", "c", "e"]),
            vote(2, "quorum", ["a", "b", "c"]), vote(3, "quorum", ["a", "b", "c", "e"]),
            vote(4, "unanimous", ["a", "b"], ["a", "b"]), vote(5, "unanimous", ["a", "b"])]


def test_honest_votes_pass_and_count() -> None:
    res = check_votes(honest(), PREFS)
    assert res.ok, res.violations
    assert res.details["decided"] == 2 and res.details["undecided"] == 4


def test_the_independent_rules_agree_with_the_core() -> None:
    assert implied("majority", 5, ["yes", "yes", "no"]) == ("yes", None)
    assert implied("majority", 5, ["yes", "no"])[0] is None
    assert implied("quorum", 6, ["yes", "yes", "yes"])[1] == "quorum not reached"
    assert implied("quorum", 6, ["yes", "yes", "yes", "no"])[0] == "yes"
    assert implied("unanimous", 3, ["no", "no"])[0] is None


def test_a_decision_the_counted_answers_do_not_imply_is_caught() -> None:
    ops = honest()
    ops[1].result["decision"] = "yes"  # counted: a yes, c no, e no -> "no"
    res = check_votes(ops, PREFS)
    assert not res.ok and "imply 'no'" in res.violations[0]


def test_a_decision_without_quorum_is_caught() -> None:
    ops = honest()
    assert ops[2].result["decision"] is None  # 3 of 5 voted: quorum (2/3) not reached
    ops[2].result.update(decision="yes", rule_met=True, reason=None)
    res = check_votes(ops, PREFS)
    assert not res.ok and any("quorum not reached" in v for v in res.violations)


def test_a_forged_or_stale_answer_is_caught() -> None:
    ops = honest()
    answers = ops[0].result["answers"]
    forged = next(a for a in answers if a["participant"] == "c")
    forged["choice"] = "yes"  # c prefers no
    res = check_votes(ops, PREFS)
    assert not res.ok and any("c counted as 'yes'" in v for v in res.violations)


def test_a_doubled_or_foreign_answer_is_caught() -> None:
    ops = honest()
    ops[1].result["answers"].append(dict(ops[1].result["answers"][0]))
    res = check_votes(ops, PREFS)
    assert not res.ok and any("answers name" in v for v in res.violations)


def pbft(op_id: int, operation: str, decided: bool = True) -> Any:
    views = [{"replica": r, "decided": decided, "seq": 1, "operation": operation}
             for r in ("r1", "r2", "r3")]
    return op(op_id, "pbft", operation, {"decided": True, "seq": 1, "operation": operation,
                                         "replicas": views}, t=(op_id, op_id + 0.5), key=None)


def replies(group: str, operation: str, seq: int = 1) -> list[Decision]:
    return [Decision(group, r, seq, operation) for r in ("r1", "r2", "r3", "r4")]


def test_one_value_per_instance_passes() -> None:
    res = check_pbft(replies("g1", "x") + replies("g2", "y"), [pbft(0, "x"), pbft(1, "y")])
    assert res.ok, res.violations
    assert res.details["instances"] == 2


def test_an_instance_with_two_decided_values_is_caught() -> None:
    seen = replies("g1", "x") + replies("g2", "y")
    seen[3] = Decision("g1", "r4", 1, "y")  # r4 decided y where r1..r3 decided x
    res = check_pbft(seen, [pbft(0, "x"), pbft(1, "y")])
    assert not res.ok and "decided 2 values" in res.violations[0]


def test_one_value_at_two_sequences_is_caught() -> None:
    seen = replies("g1", "x")
    seen[0] = Decision("g1", "r1", 2, "x")
    res = check_pbft(seen, [pbft(0, "x")])
    assert not res.ok


def test_a_value_nobody_proposed_is_caught() -> None:
    res = check_pbft(replies("g1", "x") + replies("g9", "forged"), [pbft(0, "x")])
    assert not res.ok and "no client proposed" in res.violations[0]


def test_a_client_result_that_disagrees_with_its_replicas_is_caught() -> None:
    bad = pbft(0, "x")
    bad.result["replicas"][1]["operation"] = "y"
    res = check_pbft(replies("g1", "x"), [bad])
    assert not res.ok and "replica r2" in res.violations[0]


def test_an_answer_from_a_silenced_voter_is_caught() -> None:
    ops = honest()
    silences = [Silence(frozenset({"b"}), 0.9, 1.6, "killed")]
    res = check_votes(ops, PREFS, silences)  # op 1 (t 1..1.5): b timed out, as it must
    assert res.ok and res.details["during_silence"] == 1, res.violations
    stale = ops[1].result
    b = next(a for a in stale["answers"] if a["participant"] == "b")
    b.update(status="choice", choice="yes")
    stale.update(votes_cast=4, decision=None, rule_met=False)  # yes 2, no 2: a tie
    res = check_votes(ops, PREFS, silences)
    assert not res.ok and "b answered 'yes' while its node was killed" in res.violations[0]
