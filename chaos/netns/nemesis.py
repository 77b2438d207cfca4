"""Network faults between hosts in namespaces, as Jepsen's nemeses make them.

Each is a set of nft drops (``chaos.netns.firewall``) claimed on inject and released on
heal, so faults overlap safely. Sides are lists of host names; the control host (where
the harness and its clients run) is on no side: it keeps reaching every host unless a
fault names it (``isolate_host``, by default).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from chaos.netns.firewall import Firewall, Rule, control_cut, cut, one_way


@dataclass
class NetFault:
    """Drop ``rules`` while injected.

    A heal releases only claims this fault holds: a heal without its inject (one whose
    inject raised, or a second heal) must not release an overlapping fault's drop."""

    firewall: Firewall
    rules: list[Rule]
    kind: str
    target: str
    held: int = field(default=0, init=False, compare=False)

    def inject(self) -> None:
        self.held += 1  # first: block counts its claims even when nft then fails
        self.firewall.block(self.rules)

    def heal(self) -> None:
        if self.held == 0:
            return
        self.held -= 1
        self.firewall.unblock(self.rules)


def split_rules(firewall: Firewall, sides: Sequence[Sequence[str]]) -> list[Rule]:
    """No packet between hosts on different sides (a host on two sides reaches both)."""
    rules: list[Rule] = []
    seen: set[tuple[str, str]] = set()
    for i, side in enumerate(sides):
        for other in sides[i + 1:]:
            for a in side:
                for b in other:
                    pair = (min(a, b), max(a, b))
                    if a == b or pair in seen or any(a in s and b in s for s in sides):
                        continue
                    seen.add(pair)
                    rules += cut(a, b, firewall.network)
    return rules


def isolate_host(firewall: Firewall, host: str, kind: str = "isolate_host",
                 from_control: bool = True) -> NetFault:
    """``host`` alone: no packet to or from any other host (nor the harness, by default)."""
    others = [h for h in firewall.network.hosts if h != host]
    rules = split_rules(firewall, [[host], others])
    if from_control:
        rules += control_cut(host, firewall.network)
    return NetFault(firewall, rules, kind, host)


def split(firewall: Firewall, sides: Sequence[Sequence[str]], kind: str = "split") -> NetFault:
    return NetFault(firewall, split_rules(firewall, sides), kind,
                    "|".join(",".join(side) for side in sides))


def bridge(firewall: Firewall, left: Sequence[str], right: Sequence[str], shared: str
           ) -> NetFault:
    """Two sides cut apart, one host in both (Jepsen's bridge): it sees everyone, the
    others only their side and it."""
    fault = split(firewall, [[*left, shared], [*right, shared]], kind="bridge")
    fault.target = f"{','.join(left)}|{shared}|{','.join(right)}"
    return fault


def one_way_drop(firewall: Firewall, src: str, dst: str) -> NetFault:
    """What ``src`` sends to ``dst`` is lost; ``dst`` to ``src`` still flows."""
    return NetFault(firewall, one_way(src, dst, firewall.network), "one_way", f"{src}->{dst}")


def majority_split(firewall: Firewall, servers: Sequence[str], others: Sequence[str],
                   rng: random.Random) -> NetFault:
    """A seeded minority (one server and about a third of the other hosts) against the
    rest: the majority side keeps a quorum of servers."""
    minority = [rng.choice(list(servers))]
    minority += [h for h in others if rng.random() < 1 / 3]
    majority = [h for h in firewall.network.hosts if h not in minority]
    return split(firewall, [minority, majority], kind="majority_split")


def random_bridge(firewall: Firewall, servers: Sequence[str], others: Sequence[str],
                  rng: random.Random) -> NetFault:
    """A bridge over the servers (one shared), the other hosts dealt to either side."""
    order = list(servers)
    rng.shuffle(order)
    left, shared, right = [order[0]], order[1], order[2:]
    for host in others:
        (left if rng.random() < 0.5 else right).append(host)
    return bridge(firewall, left, right, shared)
