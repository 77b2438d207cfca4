"""HostNetwork on real namespaces: addresses, TCP between hosts and the control host,
teardown on every way out, and the removal of a dead run's leftovers (only a dead run's)."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator

import pytest

from chaos.netns.hosts import LINK_PREFIX, NS_PREFIX, HostNetwork, _pid_alive, ip
from tests.chaos.netns.conftest import CONTROL, HostAgents, requires_netns

pytestmark = [pytest.mark.chaos, requires_netns]


def namespaces() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()}


def links() -> set[str]:
    names = set()
    for line in ip("-o", "link", "show").stdout.splitlines():
        names.add(line.split(":", 2)[1].strip().split("@", 1)[0])
    return names


def ours(pid: int) -> tuple[set[str], set[str]]:
    """The namespaces and links named for ``pid``."""
    return ({n for n in namespaces() if n.startswith(f"{NS_PREFIX}{pid}-")},
            {n for n in links() if n == f"{LINK_PREFIX}{pid}"
             or n.startswith(f"{LINK_PREFIX}{pid}-")})


@pytest.fixture
def network() -> Iterator[HostNetwork]:
    with HostNetwork(["a", "b"]) as net:
        yield net


def test_hosts_have_their_own_addresses(network: HostNetwork) -> None:
    assert network.subnet is not None
    addresses = [network.address("a"), network.address("b"), network.control]
    assert len(set(addresses)) == 3
    assert all(ipaddress.ip_address(a) in network.subnet for a in addresses)
    root = ip("-4", "-o", "addr", "show").stdout
    for name in ("a", "b"):
        host = network[name]
        inside = ip("-n", host.namespace, "-4", "-o", "addr", "show", "dev", "eth0").stdout
        assert f"{host.address}/24" in inside
        assert f"{host.address}/" not in root  # the address lives in its namespace only
    assert f"{network.control}/24" in root
    assert [(d["host"], d["address"]) for d in network.describe()] == [
        ("a", network.address("a")), ("b", network.address("b"))]


def test_hosts_reach_each_other_and_the_control_host_over_tcp(network: HostNetwork) -> None:
    with HostAgents(network) as agents:
        for src, dst in [("a", "b"), ("b", "a"), ("a", CONTROL), (CONTROL, "b")]:
            assert agents.ask(src, f"connect {agents.addresses[dst]} 5") == "ok", (src, dst)
        assert agents.ask("a", f"open {network.address('b')} 5") == "ok"
        assert agents.ask("a", "send-tcp hello") == "ok"
        assert agents.ask("a", "recv 5") == "hello"


def test_teardown_removes_everything_even_when_the_body_raised() -> None:
    net = HostNetwork(["a", "b"])
    inside: list[subprocess.Popen[str]] = []
    with pytest.raises(RuntimeError, match="the body failed"), net:
        assert ours(net.pid) == ({f"{NS_PREFIX}{net.pid}-a", f"{NS_PREFIX}{net.pid}-b"},
                                 {net.bridge, f"{net.bridge}-1", f"{net.bridge}-2"})
        inside = [sleeper(net[h].argv([])) for h in ("a", "b")]
        raise RuntimeError("the body failed")
    assert ours(net.pid) == (set(), set())
    assert [p.wait(timeout=10) for p in inside] == [-9, -9]  # killed, not left running
    net.teardown()  # idempotent


def sleeper(argv: list[str]) -> subprocess.Popen[str]:
    """``sleep 60`` run by ``argv`` (``ip netns exec ...``), once it is inside: a process
    still entering a namespace is not yet among its pids."""
    proc = subprocess.Popen([*argv, "sh", "-c", "echo in; exec sleep 60"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "in\n"
    return proc


def _fake_leftover(pid: int) -> tuple[str, set[str]]:
    """A namespace, a bridge and a veth named as run ``pid`` would name them."""
    namespace = f"{NS_PREFIX}{pid}-x"
    ip("netns", "add", namespace)
    ip("link", "add", f"{LINK_PREFIX}{pid}", "type", "bridge")
    ip("link", "add", f"{LINK_PREFIX}{pid}-1", "type", "veth", "peer", "name",
       f"{LINK_PREFIX}{pid}p")
    return namespace, {f"{LINK_PREFIX}{pid}", f"{LINK_PREFIX}{pid}-1", f"{LINK_PREFIX}{pid}p"}


def test_create_removes_a_dead_runs_leftovers_and_keeps_a_live_ones() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert not _pid_alive(dead.pid)
    live = subprocess.Popen(["sleep", "60"])
    dead_ns, dead_links = _fake_leftover(dead.pid)
    live_ns, live_links = _fake_leftover(live.pid)
    stuck = sleeper(["ip", "netns", "exec", dead_ns])
    try:
        with HostNetwork(["a"]):
            assert dead_ns not in namespaces()
            assert not dead_links & links()
            assert stuck.wait(timeout=10) == -9  # what ran inside the leftover is killed
            assert live_ns in namespaces()
            assert live_links <= links()
    finally:
        ip("netns", "del", live_ns, check=False)
        for link in (f"{LINK_PREFIX}{live.pid}", f"{LINK_PREFIX}{live.pid}-1"):
            ip("link", "del", link, check=False)
        ip("netns", "del", dead_ns, check=False)
        for link in (f"{LINK_PREFIX}{dead.pid}", f"{LINK_PREFIX}{dead.pid}-1"):
            ip("link", "del", link, check=False)
        for proc in (live, stuck):
            proc.kill()
            proc.wait(timeout=10)
