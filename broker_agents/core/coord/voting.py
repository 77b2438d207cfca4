"""Voting rules: turn each participant's answer into a decision with the work shown.

Pure: the driver asks the participants (in parallel, with a deadline) and hands the
answers here. A participant with no answer is a timeout. Abstentions, timeouts and errors
never count towards any option; they are listed in the result and, for unanimous and
quorum, they are why a rule can fail.

Before anyone is asked, the driver asks this module two questions: can the rule be met
by this many participants at all (``check_group``), and does it weigh by reputation
(``uses_reputation``, so the driver knows to look the scores up)?
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache

from broker_agents.core.coord.answers import Answer, AnswerStatus, ParticipantAnswer
from broker_agents.core.coord.models import VoteResult, VoteRule, VoteSpec, WeightSource
from broker_agents.core.errors import BrokerError, ErrorCode, LocalProtocolError


def check_group(spec: VoteSpec, n: int) -> None:
    """Refuse a rule that ``n`` participants can never meet (``too_few_participants``)."""
    if spec.rule is VoteRule.QUORUM and spec.quorum_count is not None and spec.quorum_count > n:
        raise BrokerError(
            ErrorCode.TOO_FEW_PARTICIPANTS,
            f"quorum_count {spec.quorum_count} needs at least {spec.quorum_count} "
            f"participants, have {n}", {"needed": spec.quorum_count, "have": n})


def uses_reputation(spec: VoteSpec) -> bool:
    """Whether the weights are reputation scores the driver must look up."""
    return spec.rule is VoteRule.WEIGHTED and spec.weight_source is WeightSource.REPUTATION


def participant_weights(
    spec: VoteSpec, participants: Sequence[str], scores: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Each participant's weight: 1 unless weighted; then explicit weights or ``scores``."""
    if spec.rule is not VoteRule.WEIGHTED:
        return {p: 1.0 for p in participants}
    source = spec.weights if scores is None else scores
    source = source or {}
    out: dict[str, float] = {}
    for p in participants:
        w = float(source.get(p, spec.default_weight))
        out[p] = w if w >= 0 else 0.0
    return out


def _normalise(
    participants: Sequence[str],
    answers: Mapping[str, Answer],
    options: Sequence[str] | None,
    weights: Mapping[str, float],
) -> list[ParticipantAnswer]:
    if len(set(participants)) != len(participants):
        raise LocalProtocolError(ErrorCode.BAD_REQUEST, "participants must be distinct")
    strangers = sorted(set(answers) - set(participants))
    if strangers:
        raise LocalProtocolError(
            ErrorCode.BAD_REQUEST, "answers from non-participants", {"ids": strangers}
        )
    allowed = set(options) if options is not None else None
    out = []
    for p in participants:
        a = answers.get(p) or Answer.timeout()
        if a.choice is not None and allowed is not None and a.choice not in allowed:
            a = Answer.failed(f"choice {a.choice!r} is not one of the options")
        out.append(_participant_answer(p, a.status, a.choice, a.error, weights.get(p, 1.0)))
    return out


@lru_cache(maxsize=8192)
def _participant_answer(participant: str, status: AnswerStatus, choice: str | None,
                        error: str | None, weight: float) -> ParticipantAnswer:
    """One shared instance per distinct answer (the model is frozen): a committee votes
    again and again, and validating a fresh model per participant was most of a tally's
    time (~190 µs of ~200 among 100)."""
    return ParticipantAnswer(participant=participant, status=status, choice=choice,
                             error=error, weight=weight)


def _leader(tally: Mapping[str, float]) -> tuple[str | None, bool]:
    """The option with the most votes and whether it leads alone (ties sort by name)."""
    if not tally:
        return None, False
    ranked = sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))
    unique = len(ranked) == 1 or ranked[0][1] > ranked[1][1]
    return ranked[0][0], unique


def _missing(pas: Sequence[ParticipantAnswer]) -> list[str]:
    return [f"{pa.participant} ({pa.status.value})" for pa in pas if pa.choice is None]


def _judge(
    spec: VoteSpec, pas: Sequence[ParticipantAnswer], tally: Mapping[str, float],
    leader: str | None, unique: bool, share: float,
) -> str | None:
    """None when the rule is met, else the reason it is not."""
    cast = [pa for pa in pas if pa.choice is not None]
    if not cast:
        return "no participant cast a vote"
    if spec.rule is VoteRule.UNANIMOUS:
        missing = _missing(pas)
        if missing:
            return "not unanimous: no vote from " + ", ".join(missing)
        if len(tally) > 1:
            return f"not unanimous: votes split {dict(sorted(tally.items()))}"
        return None
    if spec.rule is VoteRule.QUORUM:
        needed = spec.quorum_count or math.ceil(spec.quorum * len(pas) - 1e-9)
        if len(cast) < needed:
            return f"quorum not reached: {len(cast)} of {len(pas)} voted, {needed} needed"
    if spec.rule is VoteRule.WEIGHTED:
        total = sum(tally.values())
        if total <= 0:
            return "no weight was cast"
        if not (unique and share > spec.threshold):
            return (
                f"no option holds more than {spec.threshold:.3g} of the weight cast "
                f"(leading {leader!r} holds {share:.3g})"
            )
        return None
    if not (unique and share > 0.5):
        return (
            f"no majority: leading {leader!r} holds {share:.3g} of {len(cast)} votes cast"
        )
    return None


def tally_votes(
    spec: VoteSpec,
    participants: Sequence[str],
    answers: Mapping[str, Answer],
    *,
    options: Sequence[str] | None = None,
    scores: Mapping[str, float] | None = None,
) -> VoteResult:
    """Apply ``spec.rule`` to the answers of ``participants``.

    ``scores`` are reputation scores (weighted rule with ``weight_source=reputation``);
    without them explicit ``spec.weights`` are used. Missing answers are timeouts.
    """
    weights = participant_weights(spec, participants, scores)
    pas = _normalise(participants, answers, options, weights)
    tally: dict[str, float] = {}
    for pa in pas:
        if pa.choice is not None:
            tally[pa.choice] = tally.get(pa.choice, 0.0) + pa.weight
    leader, unique = _leader(tally)
    total = sum(tally.values())
    share = tally[leader] / total if leader is not None and total > 0 else 0.0
    reason = _judge(spec, pas, tally, leader, unique, share)
    return VoteResult(
        rule=spec.rule,
        decision=leader if reason is None else None,
        leading=leader,
        rule_met=reason is None,
        reason=reason,
        tally=tally,
        confidence=min(1.0, share),
        participants=len(pas),
        votes_cast=sum(1 for pa in pas if pa.choice is not None),
        answers=list(pas),
        abstained=[pa.participant for pa in pas if pa.status is AnswerStatus.ABSTAIN],
        timed_out=[pa.participant for pa in pas if pa.status is AnswerStatus.TIMEOUT],
        errored=[pa.participant for pa in pas if pa.status is AnswerStatus.ERROR],
    )


def outcome_settled(
    spec: VoteSpec, participants: Sequence[str], answers: Mapping[str, Answer],
    *, options: Sequence[str] | None = None, scores: Mapping[str, float] | None = None,
) -> bool:
    """True when no further answer can change the decision, so the driver may stop early.

    Conservative: all answered, or the leader already holds more than half of all
    participants' weight (majority/quorum/weighted at threshold 0.5 with quorum reached),
    or a unanimous vote is already broken.
    """
    if all(p in answers for p in participants):
        return True
    weights = participant_weights(spec, participants, scores)
    pas = _normalise([p for p in participants if p in answers], answers, options, weights)
    answers = {pa.participant: Answer(status=pa.status, choice=pa.choice) for pa in pas}
    if spec.rule is VoteRule.UNANIMOUS:
        return any(a.choice is None for a in answers.values()) or len(
            {a.choice for a in answers.values()}
        ) > 1
    tally: dict[str, float] = {}
    for p, a in answers.items():
        if a.choice is not None:
            tally[a.choice] = tally.get(a.choice, 0.0) + weights.get(p, 1.0)
    if not tally:
        return False
    total_possible = sum(weights.values())
    best = max(tally.values())
    if spec.rule is VoteRule.QUORUM:
        needed = spec.quorum_count or math.ceil(spec.quorum * len(participants) - 1e-9)
        voted = sum(1 for a in answers.values() if a.choice is not None)
        if voted < needed:
            return False
    threshold = spec.threshold if spec.rule is VoteRule.WEIGHTED else 0.5
    return total_possible > 0 and best > threshold * total_possible
