"""What a live node rewrites or removes so the agents bucket says what it really hosts.

A node knows which agents it runs and the record it advertised for each. Anything else
under those keys is damage (a delete, a corrupt value, another agent's or another node's
record, an overwrite) and the node writes its record back: ``damage``. Reaper marks are not
damage: the heartbeat's ``reaper.restorations`` undo those.

A record that claims this node for an agent it does not run (a Sybil voter, or a leftover
of an earlier run) is removed, but only once it was seen so at two consecutive passes with
the same revision: an advertisement or a deregistration in flight between the supervisor
and the bucket is never mistaken for one (``orphans``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from enum import StrEnum

from broker_agents.core.registry.record import AgentRecord


class HealReason(StrEnum):
    """Why a node rewrote (or, ``orphan``, removed) a record: a bounded metric label."""

    DELETED = "deleted"
    CORRUPT = "corrupt"
    FOREIGN = "foreign"
    OVERWRITTEN = "overwritten"
    ORPHAN = "orphan"


def damage(expected: AgentRecord, current: AgentRecord | None,
           unusable: HealReason | None = None) -> HealReason | None:
    """Why the bucket's ``current`` record of a hosted agent must be rewritten, or None.

    ``current`` is None when the key holds nothing usable; ``unusable`` then says whether
    a value was there and why it was skipped (``CORRUPT`` or ``FOREIGN``); absent, the
    record was deleted.
    """
    if current is None:
        return unusable or HealReason.DELETED
    if current == expected:
        return None
    if current.agent_id != expected.agent_id or current.node_id != expected.node_id:
        return HealReason.FOREIGN
    if current.reaped is not None and current.model_copy(
            update={"health": current.reaped.prior_health, "reaped": None}) == expected:
        return None  # a reaper's mark: the heartbeat restores it
    return HealReason.OVERWRITTEN


def heal_plan(expected: Mapping[str, AgentRecord], current: Mapping[str, AgentRecord],
              unusable: Mapping[str, HealReason]) -> list[tuple[str, HealReason]]:
    """Every hosted agent (``expected``: id -> advertised record) whose record is damaged,
    sorted by id, with why."""
    plan = []
    for agent_id in sorted(expected):
        reason = damage(expected[agent_id], current.get(agent_id), unusable.get(agent_id))
        if reason is not None:
            plan.append((agent_id, reason))
    return plan


def orphans(node_id: str, running: Collection[str],
            agents: Iterable[tuple[AgentRecord, int]], suspects: Mapping[str, int],
            ) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """Records to remove (id, revision: delete with CAS), and the suspects to hand in at
    the next pass: records claiming ``node_id`` for an agent not in ``running``, each with
    the revision seen now. Removed only when a suspect is seen again at the same revision.
    """
    seen = {record.agent_id: revision for record, revision in agents
            if record.node_id == node_id and record.agent_id not in running}
    remove = sorted((aid, rev) for aid, rev in seen.items() if suspects.get(aid) == rev)
    return remove, seen
