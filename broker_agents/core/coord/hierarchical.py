"""Hierarchical consensus as a pure planner the driver walks level by level.

Level 0 partitions all participants into ``ceil(n / cluster_size)`` balanced clusters
(sizes differ by at most one). The driver asks each cluster's real agents and records
their answers; each cluster decides by the request's rule and a delegate (a member who
voted for the cluster's decision, chosen with the injected ``Random``) carries the
decision up. At level >= 1 each delegate's answer is its cluster's decision (an
abstention if the cluster decided nothing); the driver may feed ``carried_answers`` or
ask the delegates to confirm. Under the weighted rule a delegate weighs what its whole
cluster weighed. The level at ``max_depth - 1`` is one cluster of all delegates, so the
tree never grows beyond ``max_depth`` levels.

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
from broker_agents.core.coord.voting import participant_weights, tally_votes
from broker_agents.core.errors import ErrorCode, LocalProtocolError

if TYPE_CHECKING:
    from random import Random


@dataclass(frozen=True)
class Cluster:
    """A group the driver must ask: ``members`` are agent ids."""

    cluster_id: str
    level: int
    members: tuple[str, ...]


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
    """Plans each level; the driver runs the clusters and records their answers."""

    def __init__(
        self, spec: HierarchicalRequest, members: Sequence[Member], rng: Random,
        *, scores: Mapping[str, float] | None = None,
    ) -> None:
        ids = [m.id for m in members]
        if not ids:
            raise LocalProtocolError(ErrorCode.TOO_FEW_PARTICIPANTS, "no participants")
        if len(set(ids)) != len(ids):
            raise LocalProtocolError(ErrorCode.BAD_REQUEST, "member ids must be distinct")
        self.spec = spec
        self.rng = rng
        self._members = {m.id: m for m in members}
        self._weights = participant_weights(spec, ids, scores)
        self._levels: list[LevelReport] = []
        self._results: dict[str, VoteResult] = {}
        self._carried: dict[str, Answer] = {}
        self.level = 0
        self.clusters: list[Cluster] = self._plan(list(members))
        self.result: HierarchicalResult | None = None

    def _plan(self, members: list[Member]) -> list[Cluster]:
        single = self.level >= self.spec.max_depth - 1
        groups = partition(
            members, self.spec.cluster_size, self.spec.partition, self.rng, single=single
        )
        return [
            Cluster(f"L{self.level}C{i}", self.level, g) for i, g in enumerate(groups)
        ]

    def pending(self) -> list[Cluster]:
        """Clusters of the current level still waiting for answers."""
        return [c for c in self.clusters if c.cluster_id not in self._results]

    def carried_answers(self, cluster_id: str) -> dict[str, Answer]:
        """At level >= 1: what each delegate carries up (its cluster's decision)."""
        cluster = self._cluster(cluster_id)
        return {m: self._carried[m] for m in cluster.members if m in self._carried}

    def _cluster(self, cluster_id: str) -> Cluster:
        for c in self.clusters:
            if c.cluster_id == cluster_id:
                return c
        raise LocalProtocolError(ErrorCode.NOT_FOUND, f"no cluster {cluster_id} at this level")

    def record(self, cluster_id: str, answers: Mapping[str, Answer]) -> VoteResult:
        """Decide one cluster from its members' answers (missing ones are timeouts)."""
        cluster = self._cluster(cluster_id)
        if cluster_id in self._results:
            raise LocalProtocolError(ErrorCode.DUPLICATE, f"{cluster_id} already recorded")
        result = tally_votes(
            self.spec, cluster.members, answers, options=self.spec.options,
            scores=self._weights,
        )
        self._results[cluster_id] = result
        return result

    def _delegate(self, cluster: Cluster, result: VoteResult) -> str:
        backers = [a.participant for a in result.answers if a.choice == result.decision]
        voters = [a.participant for a in result.answers if a.choice is not None]
        pool = (backers if result.decision is not None else voters) or list(cluster.members)
        return self.rng.choice(sorted(pool))

    def advance(self) -> list[Cluster] | HierarchicalResult:
        """After every cluster is recorded: the next level's clusters, or the final result."""
        if self.result is not None:
            return self.result
        waiting = self.pending()
        if waiting:
            raise LocalProtocolError(
                ErrorCode.CONFLICT, "clusters still pending",
                {"pending": [c.cluster_id for c in waiting]},
            )
        reports, delegates = [], []
        weights: dict[str, float] = {}
        carried: dict[str, Answer] = {}
        for c in self.clusters:
            res = self._results[c.cluster_id]
            d = self._delegate(c, res)
            reports.append(ClusterReport(
                cluster_id=c.cluster_id, members=list(c.members), delegate=d,
                decision=res.decision, result=res,
            ))
            delegates.append(self._members[d])
            weights[d] = sum(self._weights.get(m, 0.0) for m in c.members)
            carried[d] = Answer.vote(res.decision) if res.decision else Answer.abstain()
        self._levels.append(LevelReport(level=self.level, clusters=reports))
        if len(self.clusters) == 1:
            top = self._results[self.clusters[0].cluster_id]
            self.result = HierarchicalResult(
                decision=top.decision, rule_met=top.rule_met, reason=top.reason,
                depth=len(self._levels), levels=self._levels,
            )
            return self.result
        self.level += 1
        self._weights = weights
        self._carried = carried
        self._results = {}
        self.clusters = self._plan(delegates)
        return list(self.clusters)
