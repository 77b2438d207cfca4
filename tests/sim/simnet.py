"""A seeded simulated network for driving pure protocol cores without IO.

It drops, duplicates, reorders and delays messages, partitions and heals, and forgets
what was in flight to a crashed member. Every decision comes from the ``random.Random``
it is given, so a seed replays the exact same schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Generic, TypeVar

M = TypeVar("M")


@dataclass
class Envelope(Generic[M]):
    deliver_at: int
    src: str
    dst: str
    msg: M


@dataclass
class SimNetwork(Generic[M]):
    """Messages in flight between named members, delivered in a seeded random order."""

    rng: random.Random
    drop_rate: float = 0.0
    dup_rate: float = 0.0
    max_delay: int = 0
    now: int = 0
    in_flight: list[Envelope[M]] = field(default_factory=list)
    _groups: list[frozenset[str]] | None = None
    _down: set[str] = field(default_factory=set)
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0

    def send(self, src: str, dst: str, msg: M) -> None:
        self.sent += 1
        if self.rng.random() < self.drop_rate:
            self.dropped += 1
            return
        copies = 2 if self.rng.random() < self.dup_rate else 1
        self.duplicated += copies - 1
        for _ in range(copies):
            delay = self.rng.randint(0, self.max_delay) if self.max_delay else 0
            self.in_flight.append(Envelope(self.now + delay, src, dst, msg))

    def partition(self, *groups: set[str] | frozenset[str]) -> None:
        """Only members of the same group can talk; members in no group are isolated."""
        self._groups = [frozenset(g) for g in groups]

    def heal(self) -> None:
        self._groups = None

    def crash(self, member: str) -> None:
        self._down.add(member)
        self.in_flight = [e for e in self.in_flight if e.dst != member]

    def restart(self, member: str) -> None:
        self._down.discard(member)

    def is_down(self, member: str) -> bool:
        return member in self._down

    def can_reach(self, src: str, dst: str) -> bool:
        if src in self._down or dst in self._down:
            return False
        if self._groups is None:
            return True
        return any(src in g and dst in g for g in self._groups)

    def advance(self, ticks: int = 1) -> None:
        self.now += ticks

    def next_delivery(self) -> Envelope[M] | None:
        """Pop one due message in random order; messages across a cut are lost."""
        while True:
            due = [i for i, e in enumerate(self.in_flight) if e.deliver_at <= self.now]
            if not due:
                return None
            env = self.in_flight.pop(self.rng.choice(due))
            if self.can_reach(env.src, env.dst):
                return env
            self.dropped += 1
