"""Drivers of the answer-collecting protocols: vote, hierarchical, ensemble, auto.

Each driver asks real agents over NATS (in parallel, with the request's deadline), hands
what they answered to the pure core and returns the core's result model as is. A
participant that did not answer is reported as a timeout; an error reply is reported as
an error with its code: nothing is dropped or guessed.

Votes and predictions are acts of the participants asked. Their answers land in this
node's inbox, where only nodes may publish, and a node speaks for the agents it hosts:
that is what authenticates them (``broker_agents.gather``); an answer signed by anyone but
the participant asked is that participant's ``unauthorized`` error. Answers are not
signed: a signature would prove no more than the permission does, at ~85 µs a voter.
A group found by capability is bounded like a named one (``core.coord.bounds``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NATS
from pydantic import BaseModel

from broker_agents.coord.metrics import PARTICIPANT_ANSWERS
from broker_agents.coord.models import AutoResult
from broker_agents.coord.wire import InfoAsk, PredictAnswer, PredictAsk, VoteAnswer, VoteAsk
from broker_agents.core.coord import bounds as coord_bounds
from broker_agents.core.coord import ensemble, hierarchical, voting
from broker_agents.core.coord.answers import Answer, AnswerStatus
from broker_agents.core.coord.bounds import Bounds
from broker_agents.core.coord.hierarchical import (
    AskClusters,
    ClusterAnswered,
    Finished,
    HierarchicalPlanner,
    MembersKnown,
)
from broker_agents.core.coord.models import (
    AutoRequest,
    EnsembleRequest,
    EnsembleResult,
    HierarchicalRequest,
    HierarchicalResult,
    Member,
    Partition,
    PbftRequest,
    Prediction,
    VoteRequest,
    VoteResult,
)
from broker_agents.core.coord.selector import select_protocol
from broker_agents.core.errors import BrokerError, ErrorCode, LocalProtocolError
from broker_agents.discovery import Discovery, ParticipantInfo
from broker_agents.gather import Outcome, ask_all, parse_answer
from broker_agents.messages import new_message_id
from broker_agents.reputation import open_reputation
from broker_agents.subjects import Subjects


@dataclass
class CoordEnv:
    """What every driver needs: the connection, subjects, participant discovery."""

    nc: NATS
    subjects: Subjects
    discovery: Discovery
    node_id: str
    rng: random.Random
    pbft: Callable[[PbftRequest], Awaitable[BaseModel]] | None = None
    bounds: Bounds = field(default_factory=Bounds)


async def resolve(env: CoordEnv, req: Any) -> list[str]:
    """The request's participants, within the bounds however they were found."""
    ids = await env.discovery.resolve(req)
    coord_bounds.check_group(env.bounds, len(ids))
    return ids


def _error_text(err: BrokerError) -> str:
    return f"{err.code}: {err.message}"[:1024]


_ANSWER_COUNTERS = {s.value: PARTICIPANT_ANSWERS.labels(s.value) for s in AnswerStatus}
_ABSTAIN = Answer.abstain()
_TIMEOUT = Answer.timeout()
_VOTES: dict[str, Answer] = {}


def _fast_vote(outcome: Outcome) -> Answer | None:
    """The common answer ``{"choice": "<str>"}`` without a validation round (cached)."""
    if type(outcome) is dict and len(outcome) == 1:
        choice = outcome.get("choice")
        if type(choice) is str and 0 < len(choice) <= 256:
            answer = _VOTES.get(choice)
            if answer is None:
                answer = Answer.vote(choice)
                if len(_VOTES) < 4096:
                    _VOTES[choice] = answer
            return answer
    return None


def to_answers(outcomes: dict[str, Outcome]) -> dict[str, Answer]:
    """Each participant's ``Answer``, counted once per status, not once per answer."""
    answers = {p: _answer_of(o) for p, o in outcomes.items()}
    counts: dict[AnswerStatus, int] = {}
    for answer in answers.values():
        counts[answer.status] = counts.get(answer.status, 0) + 1
    for status, n in counts.items():
        _ANSWER_COUNTERS[status.value].inc(n)
    return answers


def _answer_of(outcome: Outcome) -> Answer:
    answer = _fast_vote(outcome)
    if answer is None:
        parsed = parse_answer(outcome, VoteAnswer)
        if isinstance(parsed, BrokerError):
            answer = _TIMEOUT if parsed.code == ErrorCode.TIMEOUT else Answer.failed(
                _error_text(parsed))
        elif parsed.choice is not None and not parsed.abstain:
            answer = Answer.vote(parsed.choice)
        else:
            answer = _ABSTAIN
    return answer


async def reputation_of(env: CoordEnv, wanted: bool,
                        ids: Sequence[str]) -> dict[str, float] | None:
    """Reputation scores when the core says the rule weighs by them, else None."""
    if not wanted:
        return None
    return await (await open_reputation(env.nc.jetstream(), env.subjects)).scores(ids)


async def members_of(env: CoordEnv, ids: Sequence[str], timeout: float) -> list[Member]:
    """Members with node and capabilities (asked with ``coord_info`` when unknown)."""
    known = env.discovery.known
    unknown = [i for i in ids if i not in known]
    if unknown:
        answers = await ask_all(env.nc, env.subjects, unknown, InfoAsk(), timeout)
        for agent_id, outcome in answers.items():
            info = parse_answer(outcome, ParticipantInfo)
            if isinstance(info, ParticipantInfo):
                known[agent_id] = info
    out = []
    for i in ids:
        info = known.get(i)
        out.append(Member(id=i, node=info.node_id if info else None,
                          capabilities=tuple(info.capabilities) if info else ()))
    return out


async def ask_votes(env: CoordEnv, ids: Sequence[str], ask: VoteAsk,
                    timeout_ms: int) -> dict[str, Answer]:
    return to_answers(await ask_all(env.nc, env.subjects, ids, ask, timeout_ms / 1000))


async def run_vote(env: CoordEnv, req: VoteRequest) -> VoteResult:
    ids = await resolve(env, req)
    voting.check_group(req, len(ids))
    scores = await reputation_of(env, voting.uses_reputation(req), ids)
    ask = VoteAsk(vote_id=new_message_id(), proposal=req.proposal, options=req.options)
    answers = await ask_votes(env, ids, ask, req.timeout_ms)
    return voting.tally_votes(req, ids, answers, options=req.options, scores=scores)


async def run_hierarchical(env: CoordEnv, req: HierarchicalRequest) -> HierarchicalResult:
    """The planner names the level-0 clusters; their agents are asked all at once, and
    the planner decides the levels above from what each delegate carries."""
    ids = await resolve(env, req)
    hierarchical.check_group(req, len(ids))
    if req.partition is Partition.RANDOM:
        members = [Member(id=i) for i in ids]
    else:
        members = await members_of(env, ids, req.timeout_ms / 1000)
    scores = await reputation_of(env, voting.uses_reputation(req), ids)
    planner = HierarchicalPlanner(req, env.rng)
    vote_id = new_message_id()
    effects = planner.step(MembersKnown(tuple(members), scores))
    while effects:
        effect = effects.pop(0)
        if isinstance(effect, Finished):
            return effect.result
        effects += await _ask_clusters(env, req, vote_id, planner, effect)
    raise LocalProtocolError(ErrorCode.INTERNAL, "the planner stopped without a result")


async def _ask_clusters(env: CoordEnv, req: HierarchicalRequest, vote_id: str,
                        planner: HierarchicalPlanner,
                        ask: AskClusters) -> list[AskClusters | Finished]:
    asked = await asyncio.gather(*(
        ask_all(env.nc, env.subjects, c.members,
                VoteAsk(vote_id=vote_id, proposal=req.proposal, options=req.options,
                        level=c.level, cluster=c.cluster_id), req.timeout_ms / 1000)
        for c in ask.clusters))
    effects: list[AskClusters | Finished] = []
    for c, outcomes in zip(ask.clusters, asked, strict=True):
        answers = to_answers(outcomes)
        effects += planner.step(ClusterAnswered(c.cluster_id, answers))
    return effects


def to_prediction(participant: str, outcome: Outcome) -> Prediction:
    parsed = parse_answer(outcome, PredictAnswer)
    if isinstance(parsed, BrokerError):
        status = "timeout" if parsed.code == ErrorCode.TIMEOUT else "error"
        pred = Prediction(participant=participant, status=status,
                          error=None if status == "timeout" else _error_text(parsed))
    elif parsed.abstain or (parsed.label is None and parsed.value is None):
        pred = Prediction(participant=participant, status="abstain")
    else:
        pred = Prediction(participant=participant, label=parsed.label, value=parsed.value)
    PARTICIPANT_ANSWERS.labels(pred.status).inc()
    return pred


async def run_ensemble(env: CoordEnv, req: EnsembleRequest) -> EnsembleResult:
    ids = await resolve(env, req)
    scores = await reputation_of(env, ensemble.uses_reputation(req), ids)
    ask = PredictAsk(ensemble_id=new_message_id(), question=req.question)
    outcomes = await ask_all(env.nc, env.subjects, ids, ask, req.timeout_ms / 1000)
    preds = {p: to_prediction(p, o) for p, o in outcomes.items()}
    return ensemble.aggregate(req, ids, preds, scores=scores)


async def run_auto(env: CoordEnv, req: AutoRequest) -> AutoResult:
    """Resolve the group, let the selector pick (it says why), run what it picked."""
    ids = await resolve(env, req)
    sized = req.model_copy(update={"group_size": len(ids)})
    selection = select_protocol(sized)
    common: dict[str, Any] = {"participants": ids, "timeout_ms": req.timeout_ms}
    result: BaseModel
    if selection.protocol == "pbft":
        if env.pbft is None:
            raise BrokerError(ErrorCode.UNAVAILABLE, "pbft is not available here")
        result = await env.pbft(PbftRequest(**common, operation=req.proposal,
                                            f=int(str(selection.params["f"]))))
    elif selection.protocol == "hierarchical":
        p = selection.params
        result = await run_hierarchical(env, HierarchicalRequest(
            **common, proposal=req.proposal, options=req.options, rule=req.rule,
            cluster_size=int(str(p["cluster_size"])), max_depth=int(str(p["max_depth"]))))
    else:
        result = await run_vote(env, VoteRequest(**common, proposal=req.proposal,
                                                 options=req.options, rule=req.rule))
    return AutoResult(selection=selection, result=result.model_dump(mode="json"))
