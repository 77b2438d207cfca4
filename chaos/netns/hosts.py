"""Hosts in network namespaces on one private bridge: the network of the netns chaos suite.

Each host is a namespace with one veth end (``eth0``) holding its own address on a /24;
the other end is enslaved to a bridge in the root namespace, which holds ``.1``: the
control host, where the harness and its clients run (Jepsen's control node). Addresses
exist only inside the namespaces made here and on our own bridge.

Every name carries the run's pid (``ba<pid>…``), so ``cleanup_leftovers()`` finds what a
crashed run left behind by name alone (its pid is gone), kills the processes still inside
and deletes it. ``HostNetwork`` is a context manager and also registers an ``atexit`` hook:
it is torn down on every way out short of a SIGKILL, and a SIGKILL is cleaned up by the
next run.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Any

NS_PREFIX = "bachaos-"  # namespaces: bachaos-<pid>-<host>
LINK_PREFIX = "bac"  # links: bac<pid> (the bridge), bac<pid>-<n> (root end of a veth)
SUBNET_BASE = ipaddress.IPv4Network("10.213.0.0/16")
_NS_NAME = re.compile(rf"^{NS_PREFIX}(\d+)-")
_LINK_NAME = re.compile(rf"^{LINK_PREFIX}(\d+)(-\d+)?$")


class NetnsUnavailable(RuntimeError):
    """Namespaces (or nft) cannot be used here: not root, no ``ip``/``nft``, or refused."""


def ip(*args: str, input_text: str | None = None, check: bool = True
       ) -> subprocess.CompletedProcess[str]:
    return _run(["ip", *args], input_text, check)


def _run(argv: list[str], input_text: str | None, check: bool
         ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
    return done


def unavailable_reason() -> str | None:
    """Why this machine cannot run the netns network (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (run as root, or use --network loopback)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"`{tool}` is missing: apt-get install -y {package}"
    probe = f"{NS_PREFIX}{os.getpid()}-probe"
    try:
        done = ip("netns", "add", probe, check=False)
        if done.returncode != 0:
            return f"`ip netns add` is refused here: {done.stderr.strip()}"
        nft = _run(["ip", "netns", "exec", probe, "nft", "list", "ruleset"], None, False)
        if nft.returncode != 0:
            return f"nft cannot run inside a namespace: {nft.stderr.strip()}"
    finally:
        ip("netns", "del", probe, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(namespace: str) -> None:
    """kill -9 every process still in ``namespace`` (a namespace is only freed without)."""
    done = ip("netns", "pids", namespace, check=False)
    for pid in done.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def cleanup_leftovers(keep_pid: int | None = None) -> list[str]:
    """Remove namespaces and links of runs whose process is gone; return their names."""
    removed: list[str] = []
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = _NS_NAME.match(name)
        if match and int(match[1]) != keep_pid and not _pid_alive(int(match[1])):
            _kill_inside(name)
            ip("netns", "del", name, check=False)
            removed.append(name)
    for line in ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@", 1)[0]
        match = _LINK_NAME.match(name)
        if match and int(match[1]) != keep_pid and not _pid_alive(int(match[1])):
            ip("link", "del", name, check=False)
            removed.append(name)
    return removed


@dataclass
class Host:
    """One host: its name in the harness, its namespace and its address on the bridge."""

    name: str
    namespace: str
    address: str
    veth: str

    def argv(self, command: list[str]) -> list[str]:
        """``command`` run inside this host (``ip netns exec`` execs: the pid is the
        command's own, so kill -9 and SIGSTOP reach it)."""
        return ["ip", "netns", "exec", self.namespace, *command]

    def run(self, command: list[str], input_text: str | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        return _run(self.argv(command), input_text, check)


def _free_subnet(pid: int) -> ipaddress.IPv4Network:
    """A /24 of ``SUBNET_BASE`` that no route of this machine uses yet (seeded by pid)."""
    routes = ip("-4", "route", "show", check=False).stdout
    subnets = list(SUBNET_BASE.subnets(new_prefix=24))[1:-1]
    for offset in range(len(subnets)):
        net = subnets[(pid + offset) % len(subnets)]
        if f"{net.network_address}/24" not in routes:
            return net
    raise NetnsUnavailable(f"no free /24 left in {SUBNET_BASE}")


@dataclass
class HostNetwork:
    """``names`` as hosts on one bridge; ``control`` is the root namespace's address."""

    names: list[str]
    pid: int = field(default_factory=os.getpid)
    hosts: dict[str, Host] = field(default_factory=dict)
    subnet: ipaddress.IPv4Network | None = None
    created: bool = False

    @property
    def bridge(self) -> str:
        return f"{LINK_PREFIX}{self.pid}"

    @property
    def control(self) -> str:
        assert self.subnet is not None, "create the network first"
        return str(self.subnet.network_address + 1)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def address(self, name: str) -> str:
        return self.hosts[name].address

    def create(self) -> HostNetwork:
        reason = unavailable_reason()
        if reason is not None:
            raise NetnsUnavailable(reason)
        cleanup_leftovers(keep_pid=self.pid)
        self.teardown()  # an earlier network of this very process, if any
        self.subnet = _free_subnet(self.pid)
        atexit.register(self.teardown)
        self.created = True
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.control}/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for n, name in enumerate(self.names, start=1):
                self._add_host(n, name)
        except Exception:
            self.teardown()
            raise
        return self

    def _add_host(self, n: int, name: str) -> None:
        assert self.subnet is not None
        address = str(self.subnet.network_address + 10 + n)
        host = Host(name, f"{NS_PREFIX}{self.pid}-{name}", address, f"{self.bridge}-{n}")
        ip("netns", "add", host.namespace)
        self.hosts[name] = host
        ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
           "netns", host.namespace)
        ip("link", "set", host.veth, "master", self.bridge, "up")
        ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", host.namespace, "link", "set", "eth0", "up")
        ip("-n", host.namespace, "link", "set", "lo", "up")

    def teardown(self) -> None:
        """Kill what still runs inside, delete the namespaces and the bridge (idempotent)."""
        for host in list(self.hosts.values()):
            _kill_inside(host.namespace)
            # the veth first: the kernel frees a deleted namespace (and the veth in it)
            # later, asynchronously; a link deleted by name is gone when `ip` returns
            ip("link", "del", host.veth, check=False)
            ip("netns", "del", host.namespace, check=False)
        self.hosts.clear()
        ip("link", "del", self.bridge, check=False)
        if self.created:
            with contextlib.suppress(Exception):
                atexit.unregister(self.teardown)
            self.created = False

    def describe(self) -> list[dict[str, Any]]:
        """The hosts as report data."""
        return [{"host": h.name, "namespace": h.namespace, "address": h.address}
                for h in self.hosts.values()]

    def __enter__(self) -> HostNetwork:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.teardown()
