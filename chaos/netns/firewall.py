"""Packet drops between hosts with nft rules inside their namespaces, Jepsen-style.

Each host gets one table (``inet ba_chaos``) with two address sets: packets *from* an
address in ``drop_from`` are dropped on input, packets *to* an address in ``drop_to`` on
output. Nothing else changes: a cut is real, TCP retransmits into silence until it heals.

Faults overlap (a flapping link during a split), so every drop is reference-counted:
``block`` adds one claim on (host, direction, peer), ``unblock`` removes it, and a rule
leaves the set only when its last claim is healed. Each change is one ``nft`` call per
host touched.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable

from chaos.netns.hosts import HostNetwork

TABLE = "ba_chaos"
DROP_FROM, DROP_TO = "drop_from", "drop_to"
RULESET = f"""
table inet {TABLE} {{
  set {DROP_FROM} {{ type ipv4_addr; }}
  set {DROP_TO} {{ type ipv4_addr; }}
  chain input {{ type filter hook input priority -10; policy accept; ip saddr @{DROP_FROM} drop; }}
  chain output {{ type filter hook output priority -10; policy accept; ip daddr @{DROP_TO} drop; }}
}}
"""

# (host, set, peer address): who drops what
Rule = tuple[str, str, str]


def one_way(src: str, dst: str, network: HostNetwork) -> list[Rule]:
    """Packets from ``src`` to ``dst`` are lost (on both ends); ``dst`` to ``src`` flow."""
    return [(src, DROP_TO, network.address(dst)), (dst, DROP_FROM, network.address(src))]


def cut(a: str, b: str, network: HostNetwork) -> list[Rule]:
    """No packet between ``a`` and ``b`` in either direction."""
    return one_way(a, b, network) + one_way(b, a, network)


def control_cut(host: str, network: HostNetwork) -> list[Rule]:
    """The control host (the harness) loses ``host`` too: rules on ``host``'s side only."""
    return [(host, DROP_TO, network.control), (host, DROP_FROM, network.control)]


class Firewall:
    """The nft tables of every host of ``network`` and the claims on their rules."""

    def __init__(self, network: HostNetwork) -> None:
        self.network = network
        self.claims: Counter[Rule] = Counter()
        self._lock = threading.Lock()  # faults are applied from worker threads

    def install(self) -> None:
        for host in self.network.hosts.values():
            host.run(["nft", "-f", "-"], input_text=RULESET)

    def block(self, rules: Iterable[Rule]) -> None:
        with self._lock:
            added = []
            for rule in rules:
                self.claims[rule] += 1
                if self.claims[rule] == 1:
                    added.append(rule)
            self._apply("add", added)

    def unblock(self, rules: Iterable[Rule]) -> None:
        with self._lock:
            removed = []
            for rule in rules:
                if self.claims[rule] <= 0:
                    continue
                self.claims[rule] -= 1
                if self.claims[rule] == 0:
                    del self.claims[rule]
                    removed.append(rule)
            self._apply("delete", removed)

    def clear(self) -> None:
        """Heal everything (the end of a run, whatever faults are still active): both sets
        flushed on every host, so it heals even where a failed call left nft unlike the
        claims (deleting an element nft does not hold fails the host's whole batch)."""
        with self._lock:
            self.claims = Counter()
            self._each_host({host: [f"flush set inet {TABLE} {DROP_FROM}",
                                    f"flush set inet {TABLE} {DROP_TO}"]
                             for host in self.network.hosts})

    def active(self) -> list[Rule]:
        with self._lock:
            return sorted(self.claims)

    def _apply(self, verb: str, rules: list[Rule]) -> None:
        by_host: dict[str, list[str]] = {}
        for host, chain_set, peer in rules:
            by_host.setdefault(host, []).append(
                f"{verb} element inet {TABLE} {chain_set} {{ {peer} }}")
        self._each_host(by_host)

    def _each_host(self, by_host: dict[str, list[str]]) -> None:
        """One nft batch per host; every host is tried before the first failure is raised
        (one host's error must not leave the others' drops in place)."""
        errors: list[Exception] = []
        for host, commands in by_host.items():
            try:
                self.network[host].run(["nft", "-f", "-"],
                                       input_text="\n".join(commands) + "\n")
            except Exception as exc:  # raised below, after the other hosts
                errors.append(exc)
        if errors:
            raise errors[0]
