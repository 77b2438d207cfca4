"""nft drops and the nemeses on real namespaces, proven with packets: UDP datagrams give
the directed reachability matrix (a datagram needs no return path), TCP shows a cut
stalling a live connection until the heal."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import pytest

from chaos.netns.firewall import DROP_FROM, TABLE, Firewall, cut
from chaos.netns.hosts import HostNetwork
from chaos.netns.nemesis import (
    bridge,
    isolate_host,
    majority_split,
    one_way_drop,
    random_bridge,
    split,
)
from tests.chaos.netns.conftest import CONTROL, HostAgents, full_mesh, requires_netns

pytestmark = [pytest.mark.chaos, requires_netns]

SERVERS = ["nats-1", "nats-2", "nats-3"]
OTHERS = ["node-a", "node-b"]
HOSTS = SERVERS + OTHERS
EVERYONE = [CONTROL, *HOSTS]
Reach = set[tuple[str, str]]


class Net:
    def __init__(self, network: HostNetwork, firewall: Firewall, agents: HostAgents) -> None:
        self.network, self.firewall, self.agents = network, firewall, agents

    def reach(self) -> Reach:
        return self.agents.reachability()

    def addr(self, host: str) -> str:
        return self.agents.addresses[host]


@pytest.fixture(scope="module")
def module_net() -> Iterator[Net]:
    with HostNetwork(HOSTS) as network:
        firewall = Firewall(network)
        firewall.install()
        with HostAgents(network) as agents:
            yield Net(network, firewall, agents)


@pytest.fixture
def net(module_net: Net) -> Iterator[Net]:
    """The module's network, every fault healed after each test (and shown to be)."""
    yield module_net
    module_net.firewall.clear()
    assert module_net.reach() == full_mesh(EVERYONE)


def sides_reach(sides: Sequence[Sequence[str]]) -> Reach:
    """The definition of a split: two hosts talk iff one side holds both; the control
    host (on no side) talks to everyone."""
    return {(a, b) for a, b in full_mesh(EVERYONE)
            if CONTROL in (a, b) or any(a in side and b in side for side in sides)}


def test_a_cut_drops_packets_both_ways_and_stalls_a_connection_until_healed(net: Net) -> None:
    agents = net.agents
    assert net.reach() == full_mesh(EVERYONE)
    assert agents.ask("node-a", f"open {net.addr('node-b')} 5") == "ok"
    assert agents.ask("node-a", "send-tcp before") == "ok"
    assert agents.ask("node-a", "recv 5") == "before"

    rules = cut("node-a", "node-b", net.network)
    net.firewall.block(rules)
    assert net.reach() == full_mesh(EVERYONE) - {("node-a", "node-b"), ("node-b", "node-a")}
    assert agents.ask("node-a", f"connect {net.addr('node-b')} 0.5") == "TimeoutError"
    assert agents.ask("node-b", f"connect {net.addr('node-a')} 0.5") == "TimeoutError"
    assert agents.ask("node-a", f"connect {net.addr('nats-1')} 5") == "ok"
    assert agents.ask("node-a", "send-tcp during") == "ok"
    assert agents.ask("node-a", "recv 0.5") == "TimeoutError"  # the live connection stalls

    net.firewall.unblock(rules)
    assert agents.ask("node-a", "recv 15", timeout=20) == "during"  # retransmitted
    assert agents.ask("node-a", f"connect {net.addr('node-b')} 5") == "ok"
    assert agents.ask("node-b", f"connect {net.addr('node-a')} 5") == "ok"
    assert net.reach() == full_mesh(EVERYONE)


def test_one_way_drop_loses_one_direction_only(net: Net) -> None:
    fault = one_way_drop(net.firewall, "node-a", "nats-1")
    fault.inject()
    assert net.reach() == full_mesh(EVERYONE) - {("node-a", "nats-1")}
    fault.heal()
    assert net.reach() == full_mesh(EVERYONE)


def test_overlapping_faults_are_reference_counted(net: Net) -> None:
    alone = isolate_host(net.firewall, "node-a")  # from the control host too
    pair = split(net.firewall, [["node-a"], ["node-b"]])
    alone.inject()
    pair.inject()
    assert net.reach() == {(a, b) for a, b in full_mesh(EVERYONE) if "node-a" not in (a, b)}
    alone.heal()
    alone.heal()  # a second heal of the same fault must not release the other's claim
    assert net.reach() == full_mesh(EVERYONE) - {("node-a", "node-b"), ("node-b", "node-a")}
    pair.heal()
    assert net.firewall.active() == []
    assert net.reach() == full_mesh(EVERYONE)


def test_isolate_host_can_spare_the_control_host(net: Net) -> None:
    fault = isolate_host(net.firewall, "nats-2", from_control=False)
    fault.inject()
    assert net.reach() == sides_reach([["nats-2"], [h for h in HOSTS if h != "nats-2"]])


def test_split_and_majority_split_cut_exactly_across_their_sides(net: Net) -> None:
    sides = [["nats-1", "node-a"], ["nats-2", "nats-3", "node-b"]]
    fault = split(net.firewall, sides)
    fault.inject()
    assert net.reach() == sides_reach(sides)
    fault.heal()

    fault = majority_split(net.firewall, SERVERS, OTHERS, random.Random(7))
    minority = fault.target.split("|")[0].split(",")
    majority = [h for h in HOSTS if h not in minority]
    assert len(set(minority) & set(SERVERS)) == 1  # the majority keeps a quorum
    fault.inject()
    assert net.reach() == sides_reach([minority, majority])


def test_bridge_shares_one_host_between_two_sides_cut_apart(net: Net) -> None:
    fault = bridge(net.firewall, ["nats-1", "node-a"], ["nats-3", "node-b"], "nats-2")
    fault.inject()
    reach = net.reach()
    assert reach == sides_reach([["nats-1", "node-a", "nats-2"], ["nats-3", "node-b", "nats-2"]])
    assert {(h, "nats-2") for h in HOSTS if h != "nats-2"} <= reach  # all reach the bridge
    assert {("nats-2", h) for h in HOSTS if h != "nats-2"} <= reach  # and it reaches all
    assert ("nats-1", "nats-3") not in reach and ("node-b", "node-a") not in reach


def test_seeded_nemeses_replay_the_same_sides(module_net: Net) -> None:
    """No packets here: a seed decides the sides, whatever else ran before."""
    fw = module_net.firewall
    splits, bridges = set(), set()
    for seed in range(30):
        first = majority_split(fw, SERVERS, OTHERS, random.Random(seed))
        again = majority_split(fw, SERVERS, OTHERS, random.Random(seed))
        assert (first.target, first.rules) == (again.target, again.rules)
        splits.add(first.target)
        one = random_bridge(fw, SERVERS, OTHERS, random.Random(seed))
        two = random_bridge(fw, SERVERS, OTHERS, random.Random(seed))
        assert (one.target, one.rules) == (two.target, two.rules)
        left, shared, right = one.target.split("|")
        assert shared in SERVERS and {h for h in left.split(",") + right.split(",")} \
            == set(HOSTS) - {shared}
        assert any(h in SERVERS for h in left.split(",")) and any(
            h in SERVERS for h in right.split(","))
        bridges.add(one.target)
    assert len(splits) > 3 and len(bridges) > 3  # the seed does choose


def test_clear_heals_even_where_nft_disagrees_with_the_claims(net: Net) -> None:
    """A failed call can leave nft unlike the claims; the end-of-run heal must still heal
    (the fixture checks the full mesh after clear)."""
    isolate_host(net.firewall, "node-b").inject()
    net.network["node-a"].run(["nft", f"delete element inet {TABLE} {DROP_FROM} "
                                      f"{{ {net.addr('node-b')} }}"])
    net.firewall.clear()
    assert net.firewall.active() == []
