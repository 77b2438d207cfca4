"""What a coordination run's ``finished`` event carries for readers (the dashboard): the
proposal and every participant's answer, or its timeout or error.

``events.coord.<protocol>.finished`` is read by observers, so it carries no more than a
result reply does (answers already travel in results), bounded to ``MAX_ANSWERS``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from broker_agents.core.coord.models import HierarchicalResult, PbftResult, VoteResult

MAX_ANSWERS = 256
MAX_TEXT = 200


def _vote_answers(result: VoteResult, **where: Any) -> list[dict[str, Any]]:
    return [{"participant": a.participant, "answer": a.choice, "status": str(a.status),
             "error": (a.error or "")[:MAX_TEXT] or ("timeout" if a.status == "timeout"
                                                     else None), **where}
            for a in result.answers]


def run_summary(request: BaseModel | None, result: BaseModel | None) -> dict[str, Any]:
    """``proposal`` (or PBFT ``operation``) and ``answers`` of one run, for its event."""
    proposal = getattr(request, "proposal", None) or getattr(request, "operation", None)
    answers: list[dict[str, Any]] = []
    if isinstance(result, VoteResult):
        answers = _vote_answers(result)
    elif isinstance(result, HierarchicalResult):
        for level in result.levels:
            for c in level.clusters:
                answers += _vote_answers(c.result, level=level.level,
                                         cluster=c.cluster_id)
    elif isinstance(result, PbftResult):
        answers = [{"participant": r.replica, "answer": r.operation, "status":
                    "decided" if r.decided else "undecided", "seq": r.seq,
                    "error": None if r.decided else "not decided"} for r in result.replicas]
    text = proposal if isinstance(proposal, str) else None
    return {"proposal": text[:MAX_TEXT] if text else None, "answers": answers[:MAX_ANSWERS]}
