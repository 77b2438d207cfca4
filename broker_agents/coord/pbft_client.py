"""The PBFT client side of ``ba.coord.pbft``: form a group, submit, wait for f+1 replies.

Keys are exchanged at group set-up: the coordinator asks each replica ``pbft_hello`` for
its nkeys public key once (cached; a replica whose key changed answers the next set-up
with ``key_mismatch`` and is asked again), then sends every replica the member list,
every member's key and the client's signed request in ``pbft_setup`` (signed by our
node: replicas take set-ups from nodes only).

On a secured deployment a key counts only with a certificate by the replica's hosting
node (``PbftKeyInfo``), verified against the account we trust; a key read from the
registry or from an uncertified hello proves nothing and is refused (counted in
``ba_unauthorized_total{component="pbft",reason}``). Without a signer (``--insecure``)
keys are taken as they come, as before.

Bounds: at most ``max_groups`` groups run at once (``rate_limited``, reason
``pbft_groups``), each for at most ``bounds.max_pbft_timeout_ms``. The result
is certain once f+1 replicas sent matching signed replies (at least one is honest); if
that does not happen by the deadline the reply is ``deadline_exceeded`` with what came.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import ValidationError

from broker_agents import codec, identity
from broker_agents.coord.metrics import COORD_REFUSED
from broker_agents.coord.wire import PbftHello, PbftKeyInfo, PbftSetup
from broker_agents.core.coord import bounds as coord_bounds
from broker_agents.core.coord.bounds import Bounds
from broker_agents.core.coord.models import PbftReplicaResult, PbftRequest, PbftResult
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.identity import Unauthorized
from broker_agents.core.machine import Tick
from broker_agents.core.pbft.client import Outcome, PbftClient, Submit
from broker_agents.core.pbft.config import PbftConfig, Send, check_group_size
from broker_agents.core.pbft.messages import Reply, parse_message
from broker_agents.core.pbft.signing import NkeysSigner, NkeysVerifier, new_user_seed
from broker_agents.discovery import Discovery
from broker_agents.gather import Outcome as Answer
from broker_agents.gather import ask_all, ask_one, parse_answer
from broker_agents.messages import envelope
from broker_agents.subjects import Subjects

RESEND_S = 0.1
_TICK = Tick()


class PbftDriver:
    def __init__(self, nc: NATS, subjects: Subjects, directory: Discovery, client_id: str,
                 *, tick_ms: float = 10.0, view_timeout_ticks: int = 20,
                 max_groups: int = 16, bounds: Bounds | None = None) -> None:
        self.nc = nc
        self.subjects = subjects
        self.directory = directory
        self.signer = NkeysSigner(client_id, new_user_seed(os.urandom(32)))
        self.client_id = client_id
        self.tick_ms = tick_ms
        self.view_timeout_ticks = view_timeout_ticks
        self.max_groups = max_groups
        self.bounds = bounds or Bounds()
        self.live = 0
        self.keys: dict[str, str] = {}
        """Replica -> key, only keys we accepted (certified, when secured)."""

    @property
    def secured(self) -> bool:
        return identity.identity_of(self.nc).signer is not None

    async def _fetch_keys(self, ids: list[str], timeout: float) -> dict[str, str]:
        """Ask the replicas without an accepted key for one; replica -> why its key was
        refused."""
        if not self.secured:
            for r in ids:  # keys the registry published, if participants came from it
                info = self.directory.known.get(r)
                if r not in self.keys and info is not None and info.public_key:
                    self.keys[r] = info.public_key
        missing = [r for r in ids if r not in self.keys]
        refused: dict[str, str] = {}
        if not missing:
            return refused
        for replica, outcome in (await ask_all(self.nc, self.subjects, missing, PbftHello(),
                                               timeout)).items():
            info = parse_answer(outcome, PbftKeyInfo)
            if not isinstance(info, PbftKeyInfo) or not info.public_key:
                continue
            try:
                self.keys[replica] = self._accept(replica, info)
            except Unauthorized as exc:
                identity.refused("pbft", exc, replica=replica)
                refused[replica] = exc.reason
        return refused

    def _accept(self, replica: str, info: PbftKeyInfo) -> str:
        """The replica's key when its hosting node certified it (secured), else as is."""
        assert info.public_key is not None
        if not self.secured:
            return info.public_key
        if info.agent_id != replica or not info.certificate or not info.node_jwt:
            raise Unauthorized("uncertified", f"{replica} answered with a key its node did "
                               "not certify")
        identity.identity_of(self.nc).authenticator.verify_certificate(
            replica, info.public_key, info.certificate, info.node_jwt)
        return info.public_key

    async def run(self, req: PbftRequest) -> PbftResult:
        coord_bounds.check(self.bounds, "pbft", req)
        if self.live >= self.max_groups:
            COORD_REFUSED.labels("pbft", "pbft_groups").inc()
            raise BrokerError(ErrorCode.RATE_LIMITED, f"{self.live} pbft groups are running "
                              "here already, retry later",
                              {"reason": "pbft_groups", "limit": self.max_groups})
        self.live += 1
        try:
            return await self._run(req)
        finally:
            self.live -= 1

    async def _run(self, req: PbftRequest) -> PbftResult:
        ids = await self.directory.resolve(req)
        coord_bounds.check_group(self.bounds, len(ids))
        if self.client_id in ids:
            raise BrokerError(ErrorCode.BAD_REQUEST, f"{self.client_id} cannot be a replica")
        f = check_group_size(len(ids), req.f)
        timeout = req.timeout_ms / 1000
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        refused = await self._fetch_keys(ids, timeout)
        keyed = [r for r in ids if r in self.keys]
        if len(keyed) < len(ids) - f:
            raise BrokerError(
                ErrorCode.UNAVAILABLE,
                f"only {len(keyed)} of {len(ids)} replicas answered with an acceptable key; "
                f"PBFT with f={f} needs {len(ids) - f} live replicas",
                {"answered": keyed, "silent": [r for r in ids if r not in keyed],
                 "refused": refused})
        gid = "g" + os.urandom(6).hex()
        public_keys = {r: self.keys[r] for r in keyed}
        public_keys[self.client_id] = self.signer.public_key
        cfg = PbftConfig(replica_id=ids[0], replicas=tuple(ids), f=f)
        client = PbftClient(cfg, self.signer, NkeysVerifier(public_keys))
        client.step(Submit(gid, req.operation))
        request = client.request(gid)
        done: asyncio.Future[Outcome] = loop.create_future()

        async def on_reply(msg: Msg) -> None:
            try:
                parsed = parse_message(codec.decode(msg.data))
            except (BrokerError, ValidationError, TypeError, ValueError):
                return
            if not isinstance(parsed, Reply):
                return
            for outcome in client.step(parsed):
                if isinstance(outcome, Outcome) and not done.done():
                    done.set_result(outcome)

        sub = await self.nc.subscribe(self.subjects.vote("pbft", gid, self.client_id), cb=on_reply)
        setup = PbftSetup(group_id=gid, replicas=ids, f=f, public_keys=public_keys,
                          client=self.client_id, request=request.model_dump(mode="json"),
                          tick_ms=self.tick_ms, view_timeout_ticks=self.view_timeout_ticks,
                          ttl_ms=req.timeout_ms + 1000)
        setup_task = asyncio.ensure_future(self._set_up(keyed, setup, timeout))
        try:
            outcome = await self._wait(done, client, gid, deadline)
        finally:
            await sub.unsubscribe()
            acks = await _settle(setup_task)
        setup_errors = self._learn(acks)
        views = client.replies(gid)
        if outcome is None:
            raise BrokerError(
                ErrorCode.DEADLINE_EXCEEDED,
                f"PBFT did not decide within {req.timeout_ms} ms "
                f"({len(views)} of {f + 1} matching replies needed)",
                {"replied": sorted(views), "setup_errors": setup_errors, "f": f,
                 "n": len(ids)})
        return PbftResult(
            decided=True, seq=outcome.seq, operation=outcome.operation, f=f, n=len(ids),
            view=max((r.view for r in views.values()), default=0),
            replicas=[PbftReplicaResult(
                replica=r, decided=r in views, seq=views[r].seq if r in views else None,
                operation=views[r].operation if r in views else None) for r in ids])

    async def _wait(self, done: asyncio.Future[Outcome], client: PbftClient, gid: str,
                    deadline: float) -> Outcome | None:
        loop = asyncio.get_running_loop()
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                return await asyncio.wait_for(asyncio.shield(done), min(left, RESEND_S))
            except TimeoutError:  # the network may have dropped the request or replies
                for resend in client.step(_TICK):
                    if isinstance(resend, Send):
                        data = codec.encode(resend.msg.model_dump(mode="json"))
                        await self.nc.publish(self.subjects.vote("pbft", gid, resend.to), data)

    async def _set_up(self, replicas: list[str], setup: PbftSetup,
                      timeout: float) -> dict[str, Answer]:
        """Send the set-up to each replica as an act of our node's (replicas take set-ups
        from nodes only); replica -> its ack or error."""
        data = codec.encode(envelope(setup))
        answers = await asyncio.gather(*(self._ask_signed(r, data, timeout) for r in replicas))
        return dict(zip(replicas, answers, strict=True))

    async def _ask_signed(self, replica: str, data: bytes, timeout: float) -> Answer:
        return await ask_one(self.nc, self.subjects.agent(replica), data, timeout, signed=True)

    def _learn(self, acks: dict[str, Any]) -> dict[str, str]:
        """Forget keys a replica says are stale (secured: ask it again next time; a key
        in an error reply proves nothing); report set-up errors per replica."""
        errors = {}
        for replica, outcome in acks.items():
            if isinstance(outcome, BrokerError):
                errors[replica] = f"{outcome.code}: {outcome.message}"
                key = outcome.details.get("public_key")
                if isinstance(key, str) and not self.secured:
                    self.keys[replica] = key
                elif outcome.code != ErrorCode.TIMEOUT:
                    self.keys.pop(replica, None)
        return errors


async def _settle(task: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
    """Set-up acks that already came; a replica still silent is not waited for."""
    if task.done():
        return task.result() if not task.cancelled() else {}
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return {}
