"""Voting rules: decisions, per-participant reporting, and rule properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core.coord.answers import Answer
from broker_agents.core.coord.models import VoteRequest, VoteRule, VoteSpec, parse_request
from broker_agents.core.coord.voting import outcome_settled, tally_votes
from broker_agents.core.errors import BrokerError, LocalProtocolError

P = ["a", "b", "c", "d", "e"]


def votes(**kw: str) -> dict[str, Answer]:
    return {k: Answer.vote(v) for k, v in kw.items()}


def test_majority_decides_when_winner_holds_more_than_half_of_votes_cast() -> None:
    r = tally_votes(VoteSpec(), P, votes(a="x", b="x", c="x", d="y", e="y"))
    assert r.decision == "x" and r.rule_met
    assert r.tally == {"x": 3.0, "y": 2.0}
    assert r.confidence == pytest.approx(0.6)


def test_majority_tie_has_no_decision_and_says_why() -> None:
    r = tally_votes(VoteSpec(), ["a", "b"], votes(a="x", b="y"))
    assert r.decision is None and not r.rule_met
    assert "no majority" in (r.reason or "")
    assert r.leading == "x"


def test_timeouts_and_abstentions_are_reported_per_participant_not_counted() -> None:
    answers = votes(a="x", b="x")
    answers["c"] = Answer.abstain()
    answers["d"] = Answer.failed("boom")
    r = tally_votes(VoteSpec(), P, answers)  # e never answered
    assert r.decision == "x"
    assert r.votes_cast == 2
    assert r.abstained == ["c"] and r.errored == ["d"] and r.timed_out == ["e"]
    assert sum(r.tally.values()) == 2
    assert [a.participant for a in r.answers] == P


def test_unanimous_fails_naming_who_did_not_vote() -> None:
    answers = votes(a="x", b="x", c="x", d="x")
    answers["e"] = Answer.abstain()
    r = tally_votes(VoteSpec(rule=VoteRule.UNANIMOUS), P, answers)
    assert r.decision is None
    assert "e (abstain)" in (r.reason or "")


def test_unanimous_decides_when_everyone_agrees() -> None:
    r = tally_votes(VoteSpec(rule=VoteRule.UNANIMOUS), P, {p: Answer.vote("x") for p in P})
    assert r.decision == "x" and r.confidence == 1.0


def test_quorum_fails_when_too_few_vote_even_if_all_agree() -> None:
    spec = VoteSpec(rule=VoteRule.QUORUM, quorum=0.8)
    r = tally_votes(spec, P, votes(a="x", b="x", c="x"))
    assert r.decision is None
    assert "3 of 5 voted, 4 needed" in (r.reason or "")
    r = tally_votes(spec, P, votes(a="x", b="x", c="x", d="y"))
    assert r.decision == "x"


def test_quorum_count_overrides_fraction() -> None:
    spec = VoteSpec(rule=VoteRule.QUORUM, quorum_count=2)
    assert tally_votes(spec, P, votes(a="x", b="x")).decision == "x"


def test_weighted_uses_explicit_weights() -> None:
    spec = VoteSpec(rule=VoteRule.WEIGHTED, weights={"a": 5, "b": 1, "c": 1})
    r = tally_votes(spec, ["a", "b", "c"], votes(a="x", b="y", c="y"))
    assert r.decision == "x"
    assert r.tally == {"x": 5.0, "y": 2.0}


def test_weighted_uses_reputation_scores_over_explicit_weights() -> None:
    spec = VoteSpec(rule=VoteRule.WEIGHTED, weights={"a": 5})
    r = tally_votes(spec, ["a", "b"], votes(a="x", b="y"), scores={"a": 0.1, "b": 0.9})
    assert r.decision == "y"


def test_weighted_threshold_is_strict() -> None:
    spec = VoteSpec(rule=VoteRule.WEIGHTED, threshold=0.6, weights={"a": 3, "b": 2})
    assert tally_votes(spec, ["a", "b"], votes(a="x", b="y")).decision is None


def test_choice_outside_options_is_an_error_for_that_participant() -> None:
    r = tally_votes(VoteSpec(), ["a", "b"], votes(a="x", b="z"), options=["x", "y"])
    assert r.errored == ["b"]
    assert r.decision == "x"


def test_answers_from_strangers_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        tally_votes(VoteSpec(), ["a"], votes(a="x", z="x"))


def test_no_votes_at_all_is_reported() -> None:
    r = tally_votes(VoteSpec(), P, {})
    assert r.decision is None and r.timed_out == P and r.reason == "no participant cast a vote"


def test_outcome_settled_once_majority_of_all_participants_agree() -> None:
    assert not outcome_settled(VoteSpec(), P, votes(a="x", b="x"))
    assert outcome_settled(VoteSpec(), P, votes(a="x", b="x", c="x"))


def test_request_validation_names_the_field() -> None:
    with pytest.raises(BrokerError) as ei:
        parse_request(VoteRequest, {"proposal": "p", "participants": ["a"], "quorum": 3})
    assert ei.value.code == "validation_error"
    assert ei.value.details["fields"][0]["field"] == "quorum"
    with pytest.raises(BrokerError) as ei:
        parse_request(VoteRequest, {"proposal": "p"})
    assert "participants or capability" in str(ei.value.details)


choices = st.sampled_from(["x", "y", "z"])
answer = st.one_of(
    choices.map(Answer.vote), st.just(Answer.abstain()), st.just(Answer.timeout()),
    st.just(Answer.failed("e")),
)
ballots = st.lists(answer, min_size=1, max_size=12).map(
    lambda ans: {f"p{i}": a for i, a in enumerate(ans)}
)
rules = st.sampled_from(list(VoteRule))


@given(ballots, rules)
def test_every_participant_is_reported_exactly_once(b: dict[str, Answer], rule: VoteRule) -> None:
    r = tally_votes(VoteSpec(rule=rule), list(b), b)
    assert sorted(a.participant for a in r.answers) == sorted(b)
    non_votes = len(r.abstained) + len(r.timed_out) + len(r.errored)
    assert r.votes_cast + non_votes == len(b)
    assert sum(r.tally.values()) == pytest.approx(r.votes_cast)


@given(ballots, rules)
def test_a_decision_always_has_more_than_half_of_votes_cast(
    b: dict[str, Answer], rule: VoteRule
) -> None:
    r = tally_votes(VoteSpec(rule=rule), list(b), b)
    assert r.rule_met == (r.decision is not None)
    if r.decision is not None:
        assert r.tally[r.decision] * 2 > sum(r.tally.values())
        assert r.confidence > 0.5


@given(ballots)
def test_unanimous_implies_majority_and_quorum(b: dict[str, Answer]) -> None:
    u = tally_votes(VoteSpec(rule=VoteRule.UNANIMOUS), list(b), b)
    if u.decision is not None:
        for rule in (VoteRule.MAJORITY, VoteRule.QUORUM, VoteRule.WEIGHTED):
            assert tally_votes(VoteSpec(rule=rule), list(b), b).decision == u.decision


@given(ballots, st.dictionaries(st.sampled_from([f"p{i}" for i in range(12)]),
                                st.floats(0, 10), max_size=12))
def test_weighted_decision_exceeds_threshold_of_weight_cast(
    b: dict[str, Answer], w: dict[str, float]
) -> None:
    spec = VoteSpec(rule=VoteRule.WEIGHTED, weights=w)
    r = tally_votes(spec, list(b), b)
    if r.decision is not None:
        assert r.tally[r.decision] > 0.5 * sum(r.tally.values())


@given(ballots, rules)
def test_settled_outcome_matches_final_outcome(b: dict[str, Answer], rule: VoteRule) -> None:
    """If the driver stops early, the full vote would have decided the same."""
    spec = VoteSpec(rule=rule)
    ids = list(b)
    for cut in range(len(ids) + 1):
        partial = {k: b[k] for k in ids[:cut]}
        if outcome_settled(spec, ids, partial):
            early = tally_votes(spec, ids, partial).decision
            assert early == tally_votes(spec, ids, b).decision
            break
