"""Seeded simulations of a Raft group under drops, duplicates, reordering, delays,
partitions and crash/restart, with every safety invariant checked after every step.

Replay one failing seed with ``pytest tests/sim/test_raft_sim.py --seed N`` (or
``BA_SIM_SEED=N``); run more with ``--seeds N``.
"""

from __future__ import annotations

import random
import traceback

import pytest

from broker_agents.core.raft import Role
from tests.unit.core.raft.cluster import Cluster

KEYS = ("a", "b", "c")


def run_seed(n: int, seed: int, rounds: int) -> Cluster:
    rng = random.Random(seed)
    # a separate stream, so the draws below (and every older seed's run) are unchanged:
    # a small or expiring dedup table lets late retries apply again, which the checker
    # allows only outside the window (Checker.check_once)
    dedup = random.Random(seed * 31 + 7)
    cluster = Cluster(
        n, seed,
        snapshot_threshold=rng.choice((8, 20, 1000)),
        max_append_entries=rng.choice((1, 3, 64)),
        max_inflight=rng.choice((1, 4)),
        dedup_capacity=dedup.choice((100_000, 100_000, 6)),
        dedup_window=dedup.choice((0, 0, 25)),
        # its own stream too: how long a snapshot's entries stay (0: compact at once)
        snapshot_trail=random.Random(seed * 13 + 5).choice((0, 5, 30, 4096)),
    )
    net = cluster.net
    net.drop_rate = rng.choice((0.0, 0.02, 0.1))
    net.dup_rate = rng.choice((0.0, 0.05))
    net.max_delay = rng.choice((0, 1, 3))
    cluster.tick_rate = rng.choice((1.0, 0.85))
    # how quickly a leader's early writes reach the disk: they may trail its messages by
    # several rounds, so crashes catch some of them in flight (and lose them)
    write_rate = rng.choice((0.005, 0.05, 0.3, 1.0))
    partitioned = False
    for _ in range(rounds):
        net.advance(1)
        cluster.tick_all()
        # a few client requests land between message deliveries, at random points
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
        live = cluster.active()
        # faults
        roll = rng.random()
        if roll < 0.03 and not partitioned:
            members = list(cluster.ids)
            rng.shuffle(members)
            cut = rng.randrange(1, n)
            net.partition(set(members[:cut]), set(members[cut:]))
            partitioned = True
        elif roll < 0.08 and partitioned:
            net.heal()
            partitioned = False
        elif roll < 0.10 and len(live) > 1:
            # half the time aim at a member whose writes are still in flight (a leader
            # that already sent entries it has not made durable)
            writing = [m for m in live if cluster.writing[m]]
            cluster.crash(rng.choice(writing if writing and rng.random() < 0.5 else live))
        elif roll < 0.13 and live:
            cluster.freeze(rng.choice(live), rng.randrange(5, 30))
        elif roll < 0.19:
            down = [m for m in cluster.ids if cluster.nodes[m] is None]
            if down:
                cluster.restart(rng.choice(down))
    # Heal everything: the group must recover, and nothing acknowledged may be missing.
    net.heal()
    net.drop_rate = net.dup_rate = 0.0
    cluster.frozen.clear()
    cluster.tick_rate = 1.0
    for m in cluster.ids:
        if cluster.nodes[m] is None:
            cluster.restart(m)
    cluster.settle()
    check_final(cluster)
    return cluster


def client_request(cluster: Cluster, rng: random.Random) -> None:
    live = cluster.active()
    if not live:
        return
    member = rng.choice(live)
    key = rng.choice(KEYS)
    roll = rng.random()
    if roll < 0.4:
        cluster.read(member, key)
    elif roll < 0.55:
        current = cluster.check.ref.sm.get(key)
        cluster.write(member, {"op": "cas", "key": key, "expected": current,
                               "value": rng.randrange(1000)})
    else:
        cluster.write(member, {"op": "put", "key": key, "value": rng.randrange(1000)})


def retry_requests(cluster: Cluster, rng: random.Random) -> None:
    """Clients retry writes with the SAME request id (so retries must be idempotent)."""
    again = cluster.retry_later + [(op, None) for op in cluster.expired(max_age=25)]
    cluster.retry_later = []
    live = cluster.active()
    if not live:
        return
    for op, hint in again:
        target = hint if hint in live else rng.choice(live)
        if op.kind == "write":
            cluster.write(target, op.payload, rid=op.rid)
        else:
            cluster.read(target, op.payload["key"])


def check_final(cluster: Cluster) -> None:
    check = cluster.check
    lead = cluster.node(cluster.leader() or "")
    assert lead.role == Role.LEADER
    for rid, index in check.acked.items():
        assert check.applied[index][1] == rid, f"acknowledged {rid} lost at {index}"
    assert check.ref_upto >= lead.commit
    for m in cluster.ids:
        sm = cluster.node(m).applier.sm
        assert cluster.node(m).applied == lead.commit
        assert sm.data == check.ref.sm.data, f"{m} state differs from the agreed history"


def run_many(n: int, seeds: list[int], rounds: int) -> dict[str, int]:
    totals = {"acked": 0, "reads": 0, "elections": 0, "snapshots": 0, "reapplied": 0}
    for seed in seeds:
        try:
            cluster = run_seed(n, seed, rounds)
        except AssertionError as exc:
            pytest.fail(
                f"raft sim N={n} failed at seed {seed}: {exc}\n"
                f"replay: pytest tests/sim/test_raft_sim.py -k n{n} --seed {seed}\n"
                + traceback.format_exc(limit=3),
                pytrace=False,
            )
        totals["acked"] += len(cluster.check.acked)
        totals["reads"] += cluster.check.reads_checked
        totals["elections"] += len(cluster.check.leaders)
        totals["reapplied"] += sum(
            len(at) - 1 for at in cluster.check.applications.values())
        totals["snapshots"] += sum(
            1 for m in cluster.ids if cluster.storage[m].snapshot is not None
        )
    return totals


@pytest.mark.parametrize("sim_seeds", [1200], indirect=True)
def test_raft_n3_is_safe_under_faults(sim_seeds: list[int]) -> None:
    totals = run_many(3, sim_seeds, rounds=100)
    print(f"N=3 seeds={len(sim_seeds)} {totals}")
    if len(sim_seeds) > 50:  # the workload must actually exercise the protocol
        assert totals["acked"] > 8 * len(sim_seeds)
        assert totals["reads"] > 2 * len(sim_seeds)
        assert totals["snapshots"] > 0
        assert totals["reapplied"] > 0  # retries did outlive the dedup window


@pytest.mark.parametrize("sim_seeds", [500], indirect=True)
def test_raft_n5_is_safe_under_faults(sim_seeds: list[int]) -> None:
    totals = run_many(5, [s + 1_000_000 for s in sim_seeds], rounds=100)
    print(f"N=5 seeds={len(sim_seeds)} {totals}")
    if len(sim_seeds) > 50:
        assert totals["acked"] > 8 * len(sim_seeds)
