"""Seeded simulations of a Raft group that changes its membership under faults: members
added (fresh ids, as learners first), removed (the leader included), replaced (add the
new, then remove the old) and leadership transferred, interleaved with client requests,
drops, duplicates, reordering, partitions, freezes and crash/restart from storage.

Besides every invariant of ``cluster.Checker`` (one leader per term across all
configurations, leader completeness, state-machine safety, exactly-once) after every
step: a leader's log never holds two uncommitted CONFIG entries; every acknowledged
change is a committed configuration; and at the end, with all faults healed, the group
elects a leader of its final configuration, every member of it catches up, and a fresh
proposal commits.

Replay one failing seed with ``pytest tests/sim/test_raft_membership_sim.py --seed N`` (or
``BA_SIM_SEED=N``); run more with ``--seeds N`` (``BA_SIM_SEEDS=N``).
"""

from __future__ import annotations

import random
import traceback

import pytest

from broker_agents.core.raft import ChangeMembers, ProposalResult, TransferLeadership
from tests.sim.test_raft_sim import client_request, retry_requests
from tests.unit.core.raft.cluster import Cluster

MAX_MEMBERS = 7  # ids ever started in one run (bootstrap + joiners)


class Workload:
    """The operator: one membership change or transfer at a time, to whoever leads."""

    def __init__(self, cluster: Cluster, rng: random.Random) -> None:
        self.c, self.rng = cluster, rng
        self.next_id = len(cluster.ids)
        self.waiting: str | None = None  # request id of the operation in flight
        self.then_remove: str | None = None  # replace: remove this once the add is acked
        self.asked_at = 0
        self.counts = {"add": 0, "remove": 0, "remove_leader": 0, "replace": 0,
                       "transfer": 0, "answered_ok": 0, "refused": 0}

    def step(self) -> None:
        c = self.c
        if self.waiting is not None:
            answer = c.admin[self.waiting]
            if answer is None and c.net.now - self.asked_at < 120:
                return
            if isinstance(answer, ProposalResult):
                self.counts["answered_ok"] += 1
            else:
                self.counts["refused"] += 1
                self.then_remove = None
            self.waiting = None
        lead = c.leader()
        if lead is None or lead not in c.active() or self.rng.random() > 0.08:
            return
        core = c.node(lead)
        rid = f"op{c.net.now}-{self.rng.randrange(10**6)}"
        if self.then_remove is not None:
            event: ChangeMembers | TransferLeadership = ChangeMembers(
                rid, "remove", self.then_remove)
            self.then_remove = None
        else:
            roll = self.rng.random()
            voters = sorted(core.voters)
            if roll < 0.35 and self.next_id < MAX_MEMBERS:
                new = f"m{self.next_id}"
                self.next_id += 1
                c.add_node(new)
                event = ChangeMembers(rid, "add", new)
                self.counts["add"] += 1
                if self.rng.random() < 0.4:  # replace a member: add the new one first
                    self.then_remove = self.rng.choice(voters)
                    self.counts["replace"] += 1
            elif roll < 0.65 and len(voters) > 2:
                gone = self.rng.choice([*voters, lead])
                event = ChangeMembers(rid, "remove", gone)
                self.counts["remove_leader" if gone == lead else "remove"] += 1
            else:
                target = self.rng.choice([None, *voters])
                event = TransferLeadership(rid, target)
                self.counts["transfer"] += 1
        self.waiting, self.asked_at = rid, c.net.now
        c.request(lead, event)


def run_seed(seed: int, rounds: int) -> tuple[Cluster, Workload]:
    rng = random.Random(seed)
    n = rng.choice((3, 3, 5))
    cluster = Cluster(
        n, seed,
        snapshot_threshold=rng.choice((8, 20, 1000)),
        max_append_entries=rng.choice((1, 3, 64)),
        max_inflight=rng.choice((1, 4)),
        catchup_rounds=rng.choice((2, 10)),
        # its own stream: the draws above stay those of every older seed
        snapshot_trail=random.Random(seed * 13 + 5).choice((0, 5, 30, 4096)),
    )
    net = cluster.net
    net.drop_rate = rng.choice((0.0, 0.02, 0.1))
    net.dup_rate = rng.choice((0.0, 0.05))
    net.max_delay = rng.choice((0, 1, 3))
    cluster.tick_rate = rng.choice((1.0, 0.85))
    write_rate = rng.choice((0.05, 0.3, 1.0))
    ops = Workload(cluster, random.Random(seed * 13 + 5))
    partitioned = False
    for _ in range(rounds):
        net.advance(1)
        cluster.tick_all()
        budget = rng.randrange(4)
        while True:
            if budget and rng.random() < 0.15:
                budget -= 1
                client_request(cluster, rng)
            if rng.random() < write_rate:
                cluster.finish_one_write()
            if not cluster.deliver_one():
                break
        retry_requests(cluster, rng)
        ops.step()
        live = cluster.active()
        roll = rng.random()
        if roll < 0.03 and not partitioned:
            members = list(cluster.ids)
            rng.shuffle(members)
            cut = rng.randrange(1, len(members))
            net.partition(set(members[:cut]), set(members[cut:]))
            partitioned = True
        elif roll < 0.08 and partitioned:
            net.heal()
            partitioned = False
        elif roll < 0.10 and len(live) > 1:
            writing = [m for m in live if cluster.writing[m]]
            cluster.crash(rng.choice(writing if writing and rng.random() < 0.5 else live))
        elif roll < 0.12 and live:
            cluster.freeze(rng.choice(live), rng.randrange(5, 30))
        elif roll < 0.18:
            down = [m for m in cluster.ids if cluster.nodes[m] is None]
            if down:
                cluster.restart(rng.choice(down))
    net.heal()
    net.drop_rate = net.dup_rate = 0.0
    cluster.frozen.clear()
    cluster.tick_rate = 1.0
    for m in cluster.ids:
        if cluster.nodes[m] is None:
            cluster.restart(m)
    cluster.settle(max_ticks=600)
    check_final(cluster)
    return cluster, ops


def check_final(cluster: Cluster) -> None:
    """Liveness with faults healed: a leader of a committed final configuration commits
    a fresh proposal (a client retrying it, same id, while a transfer or an election
    settles). Some seeds stream a backlog one entry per append: allow them the time."""
    check = cluster.check
    rid = cluster.new_rid()
    lead_id: str | None = None
    for tick in range(3000):
        lead_id = cluster.leader()
        if lead_id is not None:
            lead = cluster.node(lead_id)
            settled = lead_id in lead.voters and lead.log.configs.last_index <= lead.commit
            if settled and rid in check.acked:
                break
            if tick % 60 == 0 and rid not in check.acked:
                cluster.write(lead_id, {"op": "put", "key": "z", "value": 1}, rid)
        cluster.run(1)
    else:
        raise AssertionError("the final configuration does not elect a leader and commit")
    for index, membership in check.acked_changes.items():
        assert check.committed_configs.get(index) == membership, (
            f"acknowledged change at {index} ({membership}) is not a committed config")
    cluster.settle(max_ticks=3000)
    lead = cluster.node(cluster.leader() or lead_id or "")
    final = lead.log.configs.at(lead.commit)
    assert lead.id in final.voters
    for m in final.members:  # (an uncommitted stale tail may still name another one)
        got = cluster.node(m).log.configs.at(lead.commit)
        assert got == lead.log.configs.at(lead.commit), f"{m} has not caught up the config"
    for rid, index in check.acked.items():
        assert check.applied[index][1] == rid, f"acknowledged {rid} lost at {index}"
    for m in final.members:
        assert cluster.node(m).applier.sm.data == check.ref.sm.data, f"{m} state differs"


def run_many(seeds: list[int], rounds: int) -> dict[str, int]:
    totals: dict[str, int] = {"acked": 0, "configs": 0, "snapshots": 0}
    for seed in seeds:
        try:
            cluster, ops = run_seed(seed, rounds)
        except AssertionError as exc:
            pytest.fail(
                f"raft membership sim failed at seed {seed}: {exc}\n"
                f"replay: pytest tests/sim/test_raft_membership_sim.py --seed {seed}\n"
                + traceback.format_exc(limit=3),
                pytrace=False,
            )
        totals["acked"] += len(cluster.check.acked)
        totals["configs"] += len(cluster.check.committed_configs)
        totals["snapshots"] += sum(
            1 for m in cluster.ids if cluster.storage[m].snapshot is not None)
        for k, v in ops.counts.items():
            totals[k] = totals.get(k, 0) + v
    return totals


@pytest.mark.parametrize("sim_seeds", [1000], indirect=True)
def test_raft_membership_changes_are_safe_under_faults(sim_seeds: list[int]) -> None:
    totals = run_many(sim_seeds, rounds=150)
    print(f"membership seeds={len(sim_seeds)} {totals}")
    if len(sim_seeds) > 50:  # the workload must actually change the membership
        assert totals["acked"] > 8 * len(sim_seeds)
        assert totals["configs"] > len(sim_seeds)
        for what in ("add", "remove", "remove_leader", "replace", "transfer"):
            assert totals[what] > 0, what
        assert totals["snapshots"] > 0
