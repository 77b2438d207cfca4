"""PBFT under a hostile network with f Byzantine replicas, across many seeds.

Each seed runs n replicas (f of them Byzantine of one kind) and a client issuing three
requests, over a network that drops, duplicates, delays and reorders for a while and
then stabilises. After every delivery and tick we check agreement (no two honest
replicas decide different values for one sequence) and validity (every decided value is
a client's request, or the null request). After stabilisation every honest replica must
decide every request within a bounded number of ticks, whatever the primary does.

Replay one seed: ``pytest tests/sim/test_pbft_sim.py --seed N``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from pydantic import BaseModel

from broker_agents.core.machine import Tick
from broker_agents.core.pbft.client import PbftClient, Submit
from broker_agents.core.pbft.config import Broadcast, Decide, Effect, PbftConfig, Send
from broker_agents.core.pbft.messages import (
    Commit,
    NewView,
    PbftMessage,
    Prepare,
    PrePrepare,
    Reply,
    Request,
    ViewChange,
    digest,
)
from broker_agents.core.pbft.replica import Replica
from broker_agents.core.pbft.signing import sign_message
from tests.sim.simnet import SimNetwork

UNSTABLE_TICKS = 60
REQUESTS = 3
VIEW_TIMEOUT = 20
CLIENT = "c0"


class KeyedSigner:
    """HMAC 'signatures': as unforgeable as Ed25519 for code that only holds its own key,
    and ~50x cheaper, so the simulation can afford many seeds."""

    def __init__(self, identity: str, key: bytes) -> None:
        self._identity, self._key = identity, key

    @property
    def identity(self) -> str:
        return self._identity

    def sign(self, data: bytes) -> str:
        return base64.b64encode(hmac.digest(self._key, data, hashlib.sha256)).decode()


class KeyedVerifier:
    def __init__(self, keys: dict[str, bytes]) -> None:
        self._keys = keys

    def verify(self, identity: str, data: bytes, signature: str) -> bool:
        key = self._keys.get(identity)
        if key is None:
            return False
        good = base64.b64encode(hmac.digest(key, data, hashlib.sha256)).decode()
        return hmac.compare_digest(good, signature)


M = TypeVar("M", bound=BaseModel)
Out = list[tuple[str, PbftMessage]]  # (destination, message)


def expand(me: str, ids: tuple[str, ...], effects: list[Effect]) -> tuple[Out, list[Decide]]:
    out: Out = []
    decisions = []
    for e in effects:
        if isinstance(e, Broadcast):
            out.extend((o, e.msg) for o in ids if o != me)
        elif isinstance(e, Send):
            out.append((e.to, e.msg))
        elif isinstance(e, Decide):
            decisions.append(e)
    return out, decisions


@dataclass
class Byzantine:
    """A faulty replica: an honest core whose traffic is rewritten by ``kind``."""

    kind: str
    core: Replica
    ids: tuple[str, ...]
    rng: random.Random
    signer: KeyedSigner
    known: list[Request] = field(default_factory=list)
    heard: list[PbftMessage] = field(default_factory=list)

    def _sign(self, msg: M) -> M:
        return sign_message(msg, self.signer)

    def receive(self, msg: PbftMessage) -> Out:
        if isinstance(msg, Request) and msg not in self.known:
            self.known.append(msg)
        if len(self.heard) < 200:
            self.heard.append(msg)
        if self.kind in ("silent", "forging"):
            return []
        return self._rewrite(self.core.step(msg))

    def tick(self) -> Out:
        if self.kind == "silent":
            return []
        if self.kind == "forging":
            return self._forge()
        return self._rewrite(self.core.step(Tick()))

    def _rewrite(self, effects: list[Effect]) -> Out:
        out, _ = expand(self.core.me, self.ids, effects)
        bad: Out = []
        for dst, msg in out:
            if self.kind == "equivocating" and isinstance(msg, Prepare | Commit | PrePrepare):
                bogus = hashlib.sha256(self.rng.randbytes(8)).hexdigest()
                lie = self._sign(msg.model_copy(update={"digest": bogus}))
                bad.append((dst, lie))
                if self.rng.random() < 0.5:
                    bad.append((dst, msg))
            elif self.kind == "lying" and isinstance(msg, PrePrepare) and msg.request:
                if self.rng.random() < 0.5:
                    bad.append((dst, msg))
                    continue
                others = [r for r in self.known if r != msg.request]
                if others:
                    alt = self.rng.choice(others)
                else:
                    alt = self._sign(Request(client=CLIENT, request_id="x", operation="evil"))
                lie = self._sign(msg.model_copy(update={"request": alt, "digest": digest(alt)}))
                bad.append((dst, lie))
            else:
                bad.append((dst, msg))
        return bad

    def _forge(self) -> Out:
        """Claim to be others, sign with our own key, invent requests, replay old traffic."""
        me, ids, rng = self.core.me, self.ids, self.rng
        victim = rng.choice([i for i in ids if i != me])
        evil = self._sign(Request(client=CLIENT, request_id="r0", operation="evil"))
        d = digest(evil)
        view = self.core.view
        forged: list[PbftMessage] = [
            self._sign(Commit(view=view, seq=1, digest=d, sender=victim)),
            self._sign(Prepare(view=view, seq=1, digest=d, sender=victim)),
            self._sign(PrePrepare(view=view, seq=1, digest=d, request=evil,
                                  sender=self.core.cfg.primary(view))),
            self._sign(ViewChange(new_view=view + 1, last_executed=0, sender=victim)),
            self._sign(NewView(view=view + 1, view_changes=(), pre_prepares=(),
                               sender=self.core.cfg.primary(view + 1))),
        ]
        out: Out = [(rng.choice(ids), m) for m in forged]
        if self.heard:
            out.append((rng.choice(ids), rng.choice(self.heard)))
        return out


@dataclass
class World:
    seed: int
    n: int
    kind: str
    rng: random.Random = field(init=False)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.f = (self.n - 1) // 3
        self.ids = tuple(f"r{i}" for i in range(self.n))
        rest = list(self.ids[1:])
        self.byz = {"r0", *self.rng.sample(rest, self.f - 1)}
        self.honest = [i for i in self.ids if i not in self.byz]
        keys = {i: self.rng.randbytes(16) for i in (*self.ids, CLIENT)}
        verifier = KeyedVerifier(keys)
        self.replicas: dict[str, Replica | Byzantine] = {}
        for i in self.ids:
            core = Replica(
                PbftConfig(i, self.ids, view_timeout=VIEW_TIMEOUT),
                KeyedSigner(i, keys[i]), verifier,
            )
            signer = KeyedSigner(i, keys[i])
            self.replicas[i] = Byzantine(self.kind, core, self.ids, self.rng, signer) if (
                i in self.byz
            ) else core
        self.client = PbftClient(PbftConfig(self.ids[0], self.ids),
                                 KeyedSigner(CLIENT, keys[CLIENT]), verifier)
        self.net: SimNetwork[PbftMessage] = SimNetwork(
            self.rng, drop_rate=0.15, dup_rate=0.1, max_delay=3
        )
        self.proposed: dict[str, Request] = {}
        self.decided: dict[str, dict[int, str]] = {i: {} for i in self.honest}
        self.sequence_value: dict[int, str] = {}

    def fail(self, what: str) -> None:
        pytest.fail(
            f"{what}\nseed={self.seed} n={self.n} kind={self.kind} byzantine={sorted(self.byz)}"
            f"\nreplay: pytest tests/sim/test_pbft_sim.py --seed {self.seed}"
        )

    def emit(self, src: str, out: Out) -> None:
        for dst, msg in out:
            self.net.send(src, dst, msg)

    def run_effects(self, me: str, effects: list[Effect]) -> None:
        out, decisions = expand(me, self.ids, effects)
        self.emit(me, out)
        for d in decisions:
            self.check_decision(me, d)

    def check_decision(self, me: str, d: Decide) -> None:
        if d.request is not None:
            wanted = self.proposed.get(d.request.request_id)
            if wanted is None or wanted.operation != d.request.operation:
                self.fail(f"validity: {me} decided {d.request} which no client proposed")
        prior = self.sequence_value.setdefault(d.seq, d.digest)
        if prior != d.digest:
            self.fail(f"agreement: seq {d.seq} decided as {prior} and {d.digest} ({me})")
        self.decided[me][d.seq] = d.digest

    def deliver(self) -> None:
        for _ in range(20_000):
            env = self.net.next_delivery()
            if env is None:
                return
            if env.dst == CLIENT:
                if isinstance(env.msg, Reply):
                    self.client.step(env.msg)
                continue
            node = self.replicas[env.dst]
            if isinstance(node, Byzantine):
                self.emit(env.dst, node.receive(env.msg))
            else:
                self.run_effects(env.dst, node.step(env.msg))
        self.fail("delivery did not quiesce within a tick")

    def client_step(self, now: int) -> None:
        issue = now // 5
        if now % 5 == 0 and issue < REQUESTS:
            rid = f"q{issue}"
            self.client.step(Submit(rid, f"op-{self.seed}-{issue}"))
            self.proposed[rid] = self.client.request(rid)
            for r in self.ids:
                self.net.send(CLIENT, r, self.proposed[rid])
        if now % 8 == 0:
            for resend in self.client.step(Tick()):
                if isinstance(resend, Send) and resend.to not in self.byz:
                    self.net.send(CLIENT, resend.to, resend.msg)

    def all_decided(self) -> bool:
        return len(self.proposed) == REQUESTS and all(
            all(self.client.replies(rid).get(r) for rid in self.proposed) for r in self.honest
        )

    def run(self) -> int:
        limit = UNSTABLE_TICKS + self.liveness_bound()
        for now in range(limit):
            if now == UNSTABLE_TICKS:
                self.net.drop_rate = self.net.dup_rate = 0.0
            self.client_step(now)
            self.deliver()
            for i in self.ids:
                node = self.replicas[i]
                if isinstance(node, Byzantine):
                    self.emit(i, node.tick())
                else:
                    self.run_effects(i, node.step(Tick()))
            self.net.advance()
            if now >= UNSTABLE_TICKS and self.all_decided():
                return now - UNSTABLE_TICKS
        views = {i: (r.view, r.active) for i, r in self.replicas.items() if isinstance(r, Replica)}
        self.fail(f"liveness: not all honest replicas decided within the bound; views {views}"
                  f" decided {self.decided}")
        return -1

    def liveness_bound(self) -> int:
        """f faulty primaries in a row, each costing at most the longest backed-off
        view-change timeout, plus the timeout that starts it and slack for delivery."""
        longest = VIEW_TIMEOUT * 2**3
        return (self.f + 2) * (VIEW_TIMEOUT + longest) + 100


KINDS = ["silent", "equivocating", "lying", "forging"]


def run_seeds(seeds: list[int], n: int, kind: str, check: Callable[[World], None]) -> None:
    for seed in seeds:
        world = World(seed, n, kind)
        world.run()
        check(world)


@pytest.mark.parametrize("sim_seeds", [80], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_pbft_n4_safe_and_live_with_one_byzantine_replica(sim_seeds: list[int], kind: str) -> None:
    run_seeds(sim_seeds, 4, kind, lambda w: None)


@pytest.mark.parametrize("sim_seeds", [25], indirect=True)
@pytest.mark.parametrize("kind", KINDS)
def test_pbft_n7_safe_and_live_with_two_byzantine_replicas(sim_seeds: list[int], kind: str) -> None:
    run_seeds(sim_seeds, 7, kind, lambda w: None)


def test_forging_replica_is_caught_by_signature_checks() -> None:
    world = World(7, 4, "forging")
    world.run()
    forged = sum(r.counters.forged for r in world.replicas.values() if isinstance(r, Replica))
    assert forged > 0


def test_equivocating_replica_is_counted() -> None:
    world = World(3, 4, "equivocating")
    world.run()
    seen = sum(r.counters.equivocations + r.counters.invalid
               for r in world.replicas.values() if isinstance(r, Replica))
    assert seen > 0
