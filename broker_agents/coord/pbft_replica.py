"""``PbftReplicaAgent``: runs the pure PBFT core for groups a coordinator sets up over NATS.

A coordinator asks ``pbft_hello`` for the replica's nkeys public key (cached), then sends
``pbft_setup`` (members, every member's public key, the client's key and its signed
request) to each replica. From then on protocol messages flow on
``<p>.vote.pbft.<group>.<member>`` (msgpack of the signed message). Every message is verified
by the core; forged, replayed, equivocating and invalid ones are dropped and counted in
``ba_pbft_rejected_total{agent,kind}``. Messages that arrive before their group's setup
are held briefly. A group lives until ``ttl_ms`` or shortly after it decided.

Trust: ``pbft_hello`` answers with the replica's key *certified by its node*
(``PbftKeyInfo``), so a coordinator never has to trust a key it read from a writable
record. A set-up is accepted only from a node (signed; a client could otherwise make
groups that tick a node to death), with a tick no shorter than ``min_tick_ms``, a
lifetime no longer than ``max_ttl_ms``, and at most ``max_groups`` groups alive; each
refusal is a structured error counted in ``ba_pbft_setup_refused_total{agent,reason}``.

``fault=`` makes a replica Byzantine on purpose (tests and demos): ``silent`` (sends
nothing), ``forge`` (signs with a key nobody knows), ``replay`` (sends everything twice),
``equivocate`` (as primary, proposes the request to some and a null request to others).
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from nats.aio.msg import Msg
from pydantic import Field, ValidationError

from broker_agents import codec, identity
from broker_agents.agent import handler
from broker_agents.context import Incoming
from broker_agents.coord.metrics import (
    PBFT_DECIDED,
    PBFT_REJECTED,
    PBFT_SETUP_REFUSED,
    PBFT_VIEW_CHANGES,
)
from broker_agents.coord.voter import ParticipantAgent, ParticipantSettings
from broker_agents.coord.wire import (
    PbftHello,
    PbftKeyInfo,
    PbftSetup,
    PbftSetupAck,
    PbftStatusAsk,
)
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.identity import Unauthorized
from broker_agents.core.machine import Tick
from broker_agents.core.pbft.config import (
    Broadcast,
    Counters,
    Decide,
    Effect,
    PbftConfig,
    Send,
    ViewEntered,
)
from broker_agents.core.pbft.messages import (
    NULL_DIGEST,
    PbftMessage,
    PrePrepare,
    parse_message,
    signable,
)
from broker_agents.core.pbft.replica import Replica
from broker_agents.core.pbft.signing import NkeysSigner, NkeysVerifier, new_user_seed

LINGER_S = 1.0
"""A group stays this long after deciding, to help laggards catch up."""
MAX_EARLY_GROUPS = 64
MAX_EARLY_MSGS = 256
COUNTED = ("forged", "replayed", "equivocations", "stale", "invalid")
_TICK = Tick()  # the core counts ticks: one record serves them all


class CachingVerifier:
    """Remembers signatures already verified: certificates and nested requests carry the
    same signed messages again and again, and Ed25519 verification dominates the cost."""

    def __init__(self, inner: NkeysVerifier, size: int = 4096) -> None:
        self.inner = inner
        self.size = size
        self.ok: OrderedDict[tuple[str, str, bytes], None] = OrderedDict()

    def verify(self, identity: str, data: bytes, signature: str) -> bool:
        key = (identity, signature, data)
        if key in self.ok:
            return True
        valid = self.inner.verify(identity, data, signature)
        if valid:
            self.ok[key] = None
            if len(self.ok) > self.size:
                self.ok.popitem(last=False)
        return valid


@dataclass
class Group:
    gid: str
    replica: Replica
    tick_s: float
    expires: float
    task: asyncio.Task[None] | None = None
    seen: dict[str, int] = field(default_factory=dict)
    decided: list[int] = field(default_factory=list)


class PbftReplicaSettings(ParticipantSettings):
    seed: str | None = Field(None, description="nkeys user seed to sign with (default: a "
                             "fresh key each start)")
    fault: Literal["silent", "forge", "replay", "equivocate"] | None = Field(
        None, description="Byzantine on purpose, for tests and demos")
    max_groups: int = Field(256, ge=1, description="PBFT groups alive at once (a group "
                            "lingers ~1 s after deciding, or until its lifetime when it does "
                            "not); a set-up beyond them is answered rate_limited")
    min_tick_ms: float = Field(1.0, gt=0, description="the shortest logical tick a set-up "
                               "may ask for (each tick steps the core)")
    max_ttl_ms: int = Field(120_000, ge=1, description="the longest lifetime a set-up may "
                            "ask for")


class PbftReplicaAgent(ParticipantAgent):
    capabilities: ClassVar[list[str]] = ["pbft"]
    Settings: ClassVar[type[PbftReplicaSettings]] = PbftReplicaSettings
    settings: PbftReplicaSettings
    max_concurrency: ClassVar[int] = 1

    def __init__(self, agent_id: str, **config: Any) -> None:
        super().__init__(agent_id, **config)
        seed = config.get("seed")
        raw = seed.encode() if isinstance(seed, str) else new_user_seed(os.urandom(32))
        self.signer = NkeysSigner(agent_id, raw)
        self.fault: str | None = config.get("fault")
        self._key_info: PbftKeyInfo | None = None
        self._bogus = NkeysSigner(agent_id, new_user_seed(os.urandom(32)))
        self.groups: dict[str, Group] = {}
        self._early: OrderedDict[str, list[bytes]] = OrderedDict()
        self._closed: OrderedDict[str, None] = OrderedDict()
        self.totals = Counters()

    @property
    def public_key(self) -> str | None:
        return self.signer.public_key

    async def on_start(self) -> None:
        await super().on_start()
        self._wire = await self.ctx.nc.subscribe(
            self.ctx.subjects.vote("pbft", "*", self.agent_id), cb=self._on_wire,
            pending_msgs_limit=65536)

    async def on_stop(self) -> None:
        await self._wire.unsubscribe()
        for group in list(self.groups.values()):
            if group.task is not None:
                group.task.cancel()
        await super().on_stop()

    # -- set-up ---------------------------------------------------------------------

    @handler(PbftHello)
    async def pbft_hello(self, msg: PbftHello) -> PbftKeyInfo:
        """Our key, certified by the node hosting us (uncertified when it signs nothing:
        ``--insecure``)."""
        if self._key_info is None:
            key = self.signer.public_key
            node = identity.identity_of(self.ctx.nc).signer
            self._key_info = PbftKeyInfo(
                **self.info().model_dump(),
                certificate=node.certify(self.agent_id, key) if node else None,
                node_jwt=node.jwt if node else None)
        return self._key_info

    @handler(PbftStatusAsk)
    async def pbft_status(self, msg: PbftStatusAsk) -> dict[str, Any]:
        t = self.totals
        return {"agent_id": self.agent_id, "groups": len(self.groups),
                "forged": t.forged, "replayed": t.replayed,
                "equivocations": t.equivocations, "stale": t.stale, "invalid": t.invalid,
                "malformed": t.extra.get("malformed", 0)}

    def _refuse(self, reason: str, err: BrokerError) -> BrokerError:
        PBFT_SETUP_REFUSED.labels(self.agent_id, reason).inc()
        return err

    def _admit_setup(self, msg: PbftSetup, incoming: Incoming) -> None:
        """Only a node sets up groups, within this replica's bounds."""
        try:
            identity.require_privileged(self.ctx.nc, incoming.principal, "a pbft set-up",
                                        component="pbft", reason="not_a_node")
        except Unauthorized as exc:
            PBFT_SETUP_REFUSED.labels(self.agent_id, "unauthorized").inc()
            raise exc from None
        fields = []
        if msg.tick_ms < self.settings.min_tick_ms:
            fields.append({"field": "tick_ms", "message": f"at least "
                           f"{self.settings.min_tick_ms} here, got {msg.tick_ms}"})
        if msg.ttl_ms > self.settings.max_ttl_ms:
            fields.append({"field": "ttl_ms", "message": f"at most {self.settings.max_ttl_ms} "
                           f"here, got {msg.ttl_ms}"})
        if fields:
            raise self._refuse("bound", BrokerError(
                ErrorCode.VALIDATION, "pbft set-up past this replica's bounds",
                {"fields": fields}))
        if msg.group_id not in self.groups and len(self.groups) >= self.settings.max_groups:
            raise self._refuse("pbft_groups", BrokerError(
                ErrorCode.RATE_LIMITED, f"{self.agent_id} runs {len(self.groups)} pbft "
                "groups already, retry later",
                {"reason": "pbft_groups", "limit": self.settings.max_groups}))

    @handler(PbftSetup)
    async def pbft_setup(self, msg: PbftSetup, incoming: Incoming) -> PbftSetupAck:
        self._admit_setup(msg, incoming)
        if msg.public_keys.get(self.agent_id) != self.signer.public_key:
            raise BrokerError(ErrorCode.CONFLICT, "key_mismatch: the group has a stale key "
                              f"for {self.agent_id}", {"public_key": self.signer.public_key})
        existing = self.groups.get(msg.group_id)
        if existing is None and msg.group_id not in self._closed:
            try:
                cfg = PbftConfig(replica_id=self.agent_id, replicas=tuple(msg.replicas),
                                 f=msg.f, view_timeout=msg.view_timeout_ticks)
                verifier = CachingVerifier(NkeysVerifier(msg.public_keys))
                request = parse_message(msg.request)
            except (ValueError, ValidationError) as exc:
                raise BrokerError(ErrorCode.BAD_REQUEST, f"bad pbft setup: {exc}") from None
            loop = asyncio.get_running_loop()
            group = Group(msg.group_id, Replica(cfg, self.signer, verifier),
                          msg.tick_ms / 1000, loop.time() + msg.ttl_ms / 1000)
            self.groups[msg.group_id] = group
            group.task = loop.create_task(self._ticker(group), name=f"pbft-{msg.group_id}")
            await self._feed(group, request)
            for data in self._early.pop(msg.group_id, []):
                await self._receive(group, data)
        primary = PbftConfig(replica_id=self.agent_id, replicas=tuple(msg.replicas),
                             f=msg.f).primary(0)
        return PbftSetupAck(group_id=msg.group_id, replica=self.agent_id, primary=primary)

    async def _ticker(self, group: Group) -> None:
        loop = asyncio.get_running_loop()
        try:
            while loop.time() < group.expires:
                await asyncio.sleep(group.tick_s)  # sleep-ok: the core's logical clock
                await self._apply(group, group.replica.step(_TICK))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not take the agent down with the group
            self.ctx.log.error("pbft group failed", group=group.gid, error=repr(exc))
        finally:
            self.groups.pop(group.gid, None)
            self._closed[group.gid] = None
            while len(self._closed) > 1024:
                self._closed.popitem(last=False)

    # -- wire -----------------------------------------------------------------------

    async def _on_wire(self, msg: Msg) -> None:
        gid = msg.subject.split(".")[-2]
        group = self.groups.get(gid)
        if group is not None:
            await self._receive(group, msg.data)
        elif gid not in self._closed:
            held = self._early.setdefault(gid, [])
            if len(held) < MAX_EARLY_MSGS:
                held.append(msg.data)
            while len(self._early) > MAX_EARLY_GROUPS:
                self._early.popitem(last=False)

    async def _receive(self, group: Group, data: bytes) -> None:
        try:
            parsed = parse_message(codec.decode(data))
        except (BrokerError, ValidationError, TypeError, ValueError):
            self.totals.extra["malformed"] = self.totals.extra.get("malformed", 0) + 1
            PBFT_REJECTED.labels(self.agent_id, "malformed").inc()
            return
        await self._feed(group, parsed)

    async def _feed(self, group: Group, msg: PbftMessage) -> None:
        effects = group.replica.step(msg)
        self._count(group)
        await self._apply(group, effects)

    def _count(self, group: Group) -> None:
        c = group.replica.counters
        for kind in COUNTED:
            now = getattr(c, kind)
            delta = now - group.seen.get(kind, 0)
            if delta > 0:
                group.seen[kind] = now
                setattr(self.totals, kind, getattr(self.totals, kind) + delta)
                PBFT_REJECTED.labels(self.agent_id, kind).inc(delta)

    async def _apply(self, group: Group, effects: list[Effect]) -> None:
        replica = group.replica
        for eff in effects:
            if isinstance(eff, Broadcast):
                peers = [r for r in replica.cfg.replicas if r != self.agent_id]
                await self._send(group, peers, eff.msg)
            elif isinstance(eff, Send):
                await self._send(group, [eff.to], eff.msg)
            elif isinstance(eff, Decide):
                group.decided.append(eff.seq)
                PBFT_DECIDED.labels(self.agent_id).inc()
                loop = asyncio.get_running_loop()
                group.expires = min(group.expires, loop.time() + LINGER_S)
            elif isinstance(eff, ViewEntered):
                PBFT_VIEW_CHANGES.labels(self.agent_id).inc()
                self.ctx.log.info("pbft view entered", group=group.gid, view=eff.view,
                                  primary=eff.primary)

    async def _send(self, group: Group, to: list[str], msg: PbftMessage) -> None:
        if self.fault == "silent":
            return
        if self.fault == "forge":
            msg = msg.model_copy(update={"signature": self._bogus.sign(signable(msg))})
        if self.fault == "equivocate" and isinstance(msg, PrePrepare) and msg.request:
            await self._equivocate(group, to, msg)
            return
        data = codec.encode(msg.model_dump(mode="json"))
        nc, subjects = self.ctx.nc, self.ctx.subjects
        for peer in to:
            await nc.publish(subjects.vote("pbft", group.gid, peer), data)
            if self.fault == "replay":
                await nc.publish(subjects.vote("pbft", group.gid, peer), data)

    async def _equivocate(self, group: Group, to: list[str], pp: PrePrepare) -> None:
        null = PrePrepare(view=pp.view, seq=pp.seq, digest=NULL_DIGEST, request=None,
                          sender=pp.sender)
        null = null.model_copy(update={"signature": self.signer.sign(signable(null))})
        real = codec.encode(pp.model_dump(mode="json"))
        fake = codec.encode(null.model_dump(mode="json"))
        for i, peer in enumerate(to):
            subject = self.ctx.subjects.vote("pbft", group.gid, peer)
            await self.ctx.nc.publish(subject, fake if i % 2 else real)
            if i == 0:
                await self.ctx.nc.publish(subject, fake)
