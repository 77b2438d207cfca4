"""Hierarchical planner: cluster shapes, level-by-level decisions, the reported tree."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core.coord.answers import Answer
from broker_agents.core.coord.hierarchical import (
    AskClusters,
    Cluster,
    ClusterAnswered,
    Finished,
    HierarchicalPlanner,
    MembersKnown,
    balanced_chunks,
    partition,
)
from broker_agents.core.coord.models import (
    HierarchicalRequest,
    HierarchicalResult,
    Member,
    Partition,
    VoteRule,
)
from broker_agents.core.errors import LocalProtocolError


def req(n: int, **kw: object) -> HierarchicalRequest:
    return HierarchicalRequest(
        proposal="p", participants=[f"a{i}" for i in range(n)], **kw  # type: ignore[arg-type]
    )


def members(n: int) -> list[Member]:
    return [Member(id=f"a{i}", node=f"n{i % 2}", capabilities=(f"c{i % 3}",)) for i in range(n)]


def start(planner: HierarchicalPlanner, ms: list[Member]) -> tuple[Cluster, ...]:
    """The clusters the planner asks once it knows the members."""
    [ask] = planner.step(MembersKnown(tuple(ms)))
    assert isinstance(ask, AskClusters)
    return ask.clusters


def run(planner: HierarchicalPlanner, clusters: tuple[Cluster, ...],
        vote_of: dict[str, str]) -> HierarchicalResult:
    """Drive the planner the way the IO driver does: answer each asked cluster."""
    effects = []
    for c in clusters:
        answers = {m: Answer.vote(vote_of[m]) for m in c.members if m in vote_of}
        effects = planner.step(ClusterAnswered(c.cluster_id, answers))
    [done] = effects
    assert isinstance(done, Finished)
    return done.result


def test_fifteen_agents_cluster_three_depth_three_has_the_documented_shape() -> None:
    p = HierarchicalPlanner(req(15, cluster_size=3, max_depth=3), random.Random(1))
    result = run(p, start(p, members(15)), {f"a{i}": "yes" for i in range(15)})
    shapes = [[len(c.members) for c in lvl.clusters] for lvl in result.levels]
    assert shapes == [[3, 3, 3, 3, 3], [3, 2], [2]]
    assert result.decision == "yes" and result.depth == 3


def test_last_allowed_level_is_one_cluster() -> None:
    p = HierarchicalPlanner(req(15, cluster_size=3, max_depth=2), random.Random(1))
    result = run(p, start(p, members(15)), {f"a{i}": "yes" for i in range(15)})
    assert [len(lvl.clusters) for lvl in result.levels] == [5, 1]
    assert len(result.levels[1].clusters[0].members) == 5


def test_cluster_decisions_carry_upward_and_minority_clusters_lose() -> None:
    p = HierarchicalPlanner(req(9, cluster_size=3), random.Random(3))
    clusters = start(p, members(9))
    level0 = {c.cluster_id: c.members for c in clusters}
    votes = {}
    for i, ms in enumerate(level0.values()):
        for m in ms:
            votes[m] = "no" if i == 0 else "yes"
    result = run(p, clusters, votes)
    assert result.decision == "yes"
    decisions = [c.decision for c in result.levels[0].clusters]
    assert decisions.count("no") == 1 and decisions.count("yes") == 2
    for c in result.levels[0].clusters:
        assert c.delegate in c.members
        assert votes[c.delegate] == c.decision


def test_cluster_without_decision_sends_an_abstaining_delegate() -> None:
    p = HierarchicalPlanner(req(6, cluster_size=3), random.Random(0))
    first, second = start(p, members(6))
    p.step(ClusterAnswered(first.cluster_id, {}))  # everybody timed out
    [done] = p.step(ClusterAnswered(second.cluster_id,
                                    {m: Answer.vote("yes") for m in second.members}))
    assert isinstance(done, Finished)
    nxt = done.result.levels[1].clusters
    assert isinstance(nxt, list) and len(nxt) == 1
    carried = nxt[0].result.answers
    assert sorted(a.status.value for a in carried) == ["abstain", "choice"]


def test_no_result_while_clusters_are_pending_and_no_cluster_answers_twice() -> None:
    p = HierarchicalPlanner(req(6, cluster_size=3), random.Random(0))
    first, _ = start(p, members(6))
    assert p.step(ClusterAnswered(first.cluster_id, {})) == []
    with pytest.raises(LocalProtocolError):
        p.step(ClusterAnswered(first.cluster_id, {}))


def test_partition_by_node_keeps_node_mates_together() -> None:
    ms = [Member(id=f"a{i}", node=f"n{i % 2}") for i in range(6)]
    groups = partition(ms, 3, Partition.NODE, random.Random(5))
    for g in groups:
        assert len({int(m[1:]) % 2 for m in g}) == 1


def test_weighted_rule_delegate_carries_its_cluster_weight() -> None:
    spec = req(4, cluster_size=2, rule=VoteRule.WEIGHTED, partition=Partition.CAPABILITY,
               weights={"a0": 10, "a1": 10, "a2": 1, "a3": 1})
    ms = [Member(id=f"a{i}", capabilities=("h" if i < 2 else "l",)) for i in range(4)]
    p = HierarchicalPlanner(spec, random.Random(0))
    result = run(p, start(p, ms), {"a0": "heavy", "a1": "heavy", "a2": "light", "a3": "light"})
    assert sorted(sorted(c.members) for c in result.levels[0].clusters) == [
        ["a0", "a1"], ["a2", "a3"]]
    # one delegate each: only the carried cluster weight (20 vs 2) breaks the tie
    assert result.decision == "heavy"
    assert result.levels[1].clusters[0].result.tally == {"heavy": 20.0, "light": 2.0}


@given(st.integers(1, 60), st.integers(2, 8), st.integers(1, 5),
       st.sampled_from(list(Partition)), st.integers(0, 2**32))
def test_every_participant_appears_once_at_level_zero_and_levels_shrink(
    n: int, size: int, depth: int, how: Partition, seed: int
) -> None:
    p = HierarchicalPlanner(req(n, cluster_size=size, max_depth=depth, partition=how),
                            random.Random(seed))
    clusters = start(p, members(n))
    level0 = [m for c in clusters for m in c.members]
    assert sorted(level0) == sorted(f"a{i}" for i in range(n))
    result = run(p, clusters, {f"a{i}": "yes" for i in range(n)})
    counts = [sum(len(c.members) for c in lvl.clusters) for lvl in result.levels]
    assert counts[0] == n
    assert all(b < a for a, b in itertools.pairwise(counts))
    assert len(result.levels) <= depth and len(result.levels[-1].clusters) == 1
    for lvl in result.levels[:-1]:
        sizes = [len(c.members) for c in lvl.clusters]
        assert max(sizes) <= size and max(sizes) - min(sizes) <= 1
    assert result.decision == "yes"


@given(st.lists(st.text(min_size=1, max_size=3), max_size=30, unique=True), st.integers(1, 10))
def test_balanced_chunks_preserve_order_and_balance(items: list[str], k: int) -> None:
    chunks = balanced_chunks(items, k)
    assert [x for c in chunks for x in c] == items
    assert max(map(len, chunks)) - min(map(len, chunks)) <= 1
