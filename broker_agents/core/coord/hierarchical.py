"""Hierarchical consensus as a pure planner with the one core face (``core.machine``).

Events in: ``MembersKnown`` (who takes part, with what partitioning groups by, and the
reputation scores when the rule weighs by them), then one ``ClusterAnswered`` per asked
cluster. Effects out: ``AskClusters`` (ask these clusters' agents, all at once), then
``Finished`` with the whole tree.

Level 0 partitions all participants into ``ceil(n / cluster_size)`` balanced clusters
(sizes differ by at most one); those are the clusters the driver asks. Each cluster
decides by the request's rule and a delegate (a member who voted for the cluster's
decision, chosen with the injected ``Random``) carries the decision up. At level >= 1
each delegate's answer is its cluster's decision (an abstention if the cluster decided
nothing), so the planner decides the upper levels itself. Under the weighted rule a
delegate weighs what its whole cluster weighed. The level at ``max_depth - 1`` is one
cluster of all delegates, so the tree never grows beyond ``max_depth`` levels.

Partitioning: ``random`` shuffles; ``node`` and ``capability`` sort by node (or by the
first capability) before chunking, so co-located or like agents share clusters while the
cluster count stays ``ceil(n / cluster_size)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker_agents.core.coord.answers import Answer
from broker_agents.core.coord.models import (
    ClusterReport,
    HierarchicalRequest,
    HierarchicalResult,
    LevelReport,
    Member,
    Partition,
    VoteResult,
)
from broker_agents.core.coord.voting import check_group as check_vote_group
from broker_agents.core.coord.voting import participant_weights, tally_votes
from broker_agents.core.errors import ErrorCode, LocalProtocolError

if TYPE_CHECKING:
    from random import Random


@dataclass(frozen=True, slots=True)
class Cluster:
    """A group the driver must ask: ``members`` are agent ids."""

    cluster_id: str
    level: int
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MembersKnown:
    """Who takes part; ``scores`` are reputation scores (weighted rule, by reputation)."""

    members: tuple[Member, ...]
    scores: Mapping[str, float] | None = None


@dataclass(frozen=True, slots=True)
class ClusterAnswered:
    """What the members of an asked cluster answered (a missing one is a timeout)."""

    cluster_id: str
    answers: Mapping[str, Answer]


@dataclass(frozen=True, slots=True)
class AskClusters:
    """Ask every member of these clusters (all clusters at once)."""

    clusters: tuple[Cluster, ...]


@dataclass(frozen=True, slots=True)
class Finished:
    """The top cluster decided: the result, with every level's clusters."""

    result: HierarchicalResult


Event = MembersKnown | ClusterAnswered
Effect = AskClusters | Finished


def check_group(spec: HierarchicalRequest, n: int) -> None:
    """Refuse a rule that a cluster of ``n`` participants can never meet."""
    check_vote_group(spec, min(n, spec.cluster_size))


def balanced_chunks(items: Sequence[str], k: int) -> list[tuple[str, ...]]:
    """Split into ``k`` consecutive chunks whose sizes differ by at most one."""
    n = len(items)
    out, start = [], 0
    for i in range(k):
        size = n // k + (1 if i < n % k else 0)
        out.append(tuple(items[start : start + size]))
        start += size
    return out


def partition(
    members: Sequence[Member], cluster_size: int, how: Partition, rng: Random,
    *, single: bool = False,
) -> list[tuple[str, ...]]:
    """Clusters of member ids: one cluster if ``single``, else ``ceil(n / cluster_size)``."""
    if not members:
        return []
    order = sorted(members, key=lambda m: m.id)
    rng.shuffle(order)
    if how is Partition.NODE:
        order.sort(key=lambda m: m.node or "")
    elif how is Partition.CAPABILITY:
        order.sort(key=lambda m: min(m.capabilities) if m.capabilities else "")
    k = 1 if single else math.ceil(len(order) / cluster_size)
    return balanced_chunks([m.id for m in order], k)


class HierarchicalPlanner:
    """Plans the tree: the driver asks the level-0 clusters, the planner decides the rest."""

    def __init__(self, spec: HierarchicalRequest, rng: Random) -> None:
        self._spec = spec
        self._rng = rng
        self._members: dict[str, Member] = {}
        self._weights: dict[str, float] = {}
        self._levels: list[LevelReport] = []
        self._results: dict[str, VoteResult] = {}
        self._level = 0
        self._clusters: list[Cluster] = []
        self._result: HierarchicalResult | None = None

    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, MembersKnown):
            return self._start(event)
        return self._answered(event)

    def _start(self, event: MembersKnown) -> list[Effect]:
        if self._members:
            raise LocalProtocolError(ErrorCode.CONFLICT, "members are already known")
        ids = [m.id for m in event.members]
        if not ids:
            raise LocalProtocolError(ErrorCode.TOO_FEW_PARTICIPANTS, "no participants")
        if len(set(ids)) != len(ids):
            raise LocalProtocolError(ErrorCode.BAD_REQUEST, "member ids must be distinct")
        check_group(self._spec, len(ids))
        self._members = {m.id: m for m in event.members}
        self._weights = participant_weights(self._spec, ids, event.scores)
        self._clusters = self._plan(list(event.members))
        return [AskClusters(tuple(self._clusters))]

    def _answered(self, event: ClusterAnswered) -> list[Effect]:
        if self._result is not None:
            raise LocalProtocolError(ErrorCode.CONFLICT, "the hierarchy already decided")
        self._record(self._cluster(event.cluster_id), event.answers)
        if any(c.cluster_id not in self._results for c in self._clusters):
            return []
        return [Finished(self._climb())]

    def _plan(self, members: list[Member]) -> list[Cluster]:
        single = self._level >= self._spec.max_depth - 1
        groups = partition(
            members, self._spec.cluster_size, self._spec.partition, self._rng, single=single
        )
        return [
            Cluster(f"L{self._level}C{i}", self._level, g) for i, g in enumerate(groups)
        ]

    def _cluster(self, cluster_id: str) -> Cluster:
        for c in self._clusters:
            if c.cluster_id == cluster_id:
                return c
        raise LocalProtocolError(ErrorCode.NOT_FOUND, f"no cluster {cluster_id} at this level")

    def _record(self, cluster: Cluster, answers: Mapping[str, Answer]) -> None:
        """Decide one cluster from its members' answers (missing ones are timeouts)."""
        if cluster.cluster_id in self._results:
            raise LocalProtocolError(ErrorCode.DUPLICATE, f"{cluster.cluster_id} already recorded")
        self._results[cluster.cluster_id] = tally_votes(
            self._spec, cluster.members, answers, options=self._spec.options,
            scores=self._weights,
        )

    def _delegate(self, cluster: Cluster, result: VoteResult) -> str:
        backers = [a.participant for a in result.answers if a.choice == result.decision]
        voters = [a.participant for a in result.answers if a.choice is not None]
        pool = (backers if result.decision is not None else voters) or list(cluster.members)
        return self._rng.choice(sorted(pool))

    def _climb(self) -> HierarchicalResult:
        """Close each decided level and decide the next from what delegates carry."""
        while True:
            carried = self._close_level()
            if len(self._clusters) == 1:
                top = self._results[self._clusters[0].cluster_id]
                self._result = HierarchicalResult(
                    decision=top.decision, rule_met=top.rule_met, reason=top.reason,
                    depth=len(self._levels), levels=self._levels,
                )
                return self._result
            self._level += 1
            self._results = {}
            self._clusters = self._plan([self._members[d] for d in carried])
            for c in self._clusters:
                self._record(c, {m: carried[m] for m in c.members})

    def _close_level(self) -> dict[str, Answer]:
        """Report this level; each delegate's carried answer, its weight the cluster's."""
        reports = []
        weights: dict[str, float] = {}
        carried: dict[str, Answer] = {}
        for c in self._clusters:
            res = self._results[c.cluster_id]
            d = self._delegate(c, res)
            reports.append(ClusterReport(
                cluster_id=c.cluster_id, members=list(c.members), delegate=d,
                decision=res.decision, result=res,
            ))
            weights[d] = sum(self._weights.get(m, 0.0) for m in c.members)
            carried[d] = Answer.vote(res.decision) if res.decision else Answer.abstain()
        self._levels.append(LevelReport(level=self._level, clusters=reports))
        self._weights = weights
        return carried
