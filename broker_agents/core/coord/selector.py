"""The ``auto`` protocol selector: pick a protocol from the request and say why.

Rules, in order:
1. Byzantine faults need PBFT (voting trusts answers; a liar could swing it). PBFT needs
   n >= 3f + 1 with f >= 1, so fewer than 4 participants is ``too_few_participants``.
   PBFT costs three message rounds; if the latency budget cannot fit them the selection
   still says pbft (safety first) and the reason warns.
2. Crash faults, small groups (<= ``flat_limit``): a flat vote, one round.
3. Crash faults, large groups: hierarchical voting (clusters bound fan-in per decider),
   unless the latency budget cannot fit its levels, then a flat vote.
"""

from __future__ import annotations

import math

from broker_agents.core.coord.models import AutoRequest, FaultModel, Selection
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.pbft.config import check_group_size

FLAT_LIMIT = 50
ROUND_MS = 5.0
"""Estimated cost of one request/reply round to a group, for budget arithmetic."""
CLUSTER_SIZE = 7


def select_protocol(
    req: AutoRequest, *, flat_limit: int = FLAT_LIMIT, round_ms: float = ROUND_MS
) -> Selection:
    n = req.group_size if req.group_size is not None else len(req.participants or [])
    if n < 1:
        raise BrokerError(ErrorCode.NO_AGENTS, "no participants to coordinate")
    budget = req.latency_budget_ms
    if req.fault_model is FaultModel.BYZANTINE:
        f = check_group_size(n)
        reason = (
            f"byzantine fault model: PBFT tolerates f={f} liars among n={n} (n >= 3f+1); "
            "a vote would trust every answer"
        )
        if budget is not None and budget < 3 * round_ms:
            reason += (
                f"; warning: 3 rounds (~{3 * round_ms:g} ms) may exceed the "
                f"{budget:g} ms budget"
            )
        return Selection(protocol="pbft", reason=reason, params={"f": f, "n": n})
    if n <= flat_limit:
        return Selection(
            protocol="vote",
            reason=f"crash fault model, {n} participants <= {flat_limit}: one flat "
            f"{req.rule.value} vote round is cheapest",
            params={"rule": req.rule.value},
        )
    depth = max(1, math.ceil(math.log(n, CLUSTER_SIZE)))
    if budget is not None and budget < depth * round_ms:
        return Selection(
            protocol="vote",
            reason=f"crash fault model, {n} participants, but {depth} hierarchical levels "
            f"(~{depth * round_ms:g} ms) exceed the {budget:g} ms budget: flat vote",
            params={"rule": req.rule.value},
        )
    return Selection(
        protocol="hierarchical",
        reason=f"crash fault model, {n} participants > {flat_limit}: clusters of "
        f"{CLUSTER_SIZE} over {depth} levels bound each decider's fan-in",
        params={"rule": req.rule.value, "cluster_size": CLUSTER_SIZE, "max_depth": depth},
    )
