"""Ask many agents the same typed question in parallel, each with a deadline.

One envelope is encoded once and sent to every inbox (message ids are per-receiver, so a
shared id is harmless). Each participant yields exactly one outcome: its reply payload, or
a ``BrokerError`` (``timeout``, ``unavailable`` when nobody listens, or the error the agent
replied). Nothing is dropped: the caller turns every outcome into a reported answer.

Scatter-gather uses one long-lived wildcard reply subscription per connection and one
timer per batch (not a request, future and timer per participant): replies land on
``<inbox>.<batch>-<index>`` and complete the batch when the last one arrives. ``ask``
waits for the whole batch; ``Gatherer.call`` hands out the answers as they arrive (the
auction's call for bids persists early answers while late ones are on the way).

One publish for many (``broker_agents.fanout``): on a node's connection the envelope goes
ONCE to ``<p>.fanout`` for the participants this gatherer has seen answer before, and every
node hands it to the ones it hosts through their inbox path; those hosted on this very
connection get it in-process (``FanoutHost.local``) and answer straight into the call. A
participant never heard from still gets its own inbox publish, so one nobody hosts is
``unavailable`` at once (the server's no-responders); a known one that went away times
out at the deadline, and is asked through its inbox again next time. A connection that
may not publish on the fan-out subject (a client's) always uses the per-inbox path.

Batched answers: the fan-out ask says ``Ba-Answers: 1``, so a node may answer for several of
the participants it hosts in one message on ``<inbox>.<batch>`` (``broker_agents.
answerframe``). Each entry is handled exactly as the single answer on ``<inbox>.<batch>-
<index>`` it stands for: authenticated against THAT subject when signed (a signature
covers the subject it was made for, so ``SignedAct`` evidence stays verifiable), then
``Call.arrive`` / ``Call.refuse``. A malformed frame (not a frame, an index out of range
or named twice, more entries than participants) is refused whole, counted in
``ba_agent_malformed_messages_total{agent="gather"}`` and logged once per window: its
participants time out unless their answers come another way. A batch lets a node do no
more than its single answers could: only nodes may publish here either way.

Who answered: only nodes may publish into a node's inbox (``node/auth/roles.py``; a
client may answer only a message delivered to it, and none is), and a node speaks for the
agents it hosts, so an answer landing here is its agent's word by permissions alone. An
answer that carries a signature must still be signed for the agent asked; anything else is
refused without taking the participant's place (``Call.refused``: its ``unauthorized``
outcome only if its own answer never comes). A call made with ``signed=True`` also requires
the signature, and keeps each answer as ``SignedAct`` evidence (``Call.evidence``): for
acts someone must be able to verify later, such as a winner's award acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import BaseModel

from broker_agents import answerframe, codec, fanout, identity
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.identity import HEADER_JWT, SignedAct, Unauthorized
from broker_agents.logging import get_logger
from broker_agents.messages import envelope
from broker_agents.metrics import MALFORMED
from broker_agents.ratelog import RateLimitedLog
from broker_agents.reply import max_payload_of
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request

Outcome = dict[str, Any] | BrokerError
NO_RESPONDERS = "503"
REACHED = 100_000  # participants remembered as reachable by fan-out (oldest forgotten)
COMPONENT = "gather"
_log = RateLimitedLog(get_logger(component=COMPONENT))


async def ask_one(nc: NATS, subject: str, data: bytes, timeout: float, *,
                  signed: bool = False) -> Outcome:
    """One request's outcome; ``signed``: the request is an act of ``nc``'s user."""
    try:
        reply = await nats_request(nc, subject, data, timeout=timeout, signed=signed)
    except nats.errors.NoRespondersError:
        return BrokerError(ErrorCode.UNAVAILABLE, "no agent is listening", {"subject": subject})
    except nats.errors.TimeoutError:
        return BrokerError(ErrorCode.TIMEOUT, f"no answer within {timeout:g}s")
    except Exception as exc:  # connection trouble: report it for this participant only
        return BrokerError(ErrorCode.UNAVAILABLE, f"{type(exc).__name__}: {exc}")
    return _outcome_of(reply)


def _outcome_of(msg: Msg) -> Outcome:
    """An answer as a participant's outcome: its payload, or the error it amounts to."""
    return _outcome(msg.data, msg.headers)


def _outcome(data: bytes, headers: dict[str, str] | None) -> Outcome:
    if not data and headers and headers.get("Status") == NO_RESPONDERS:
        return BrokerError(ErrorCode.UNAVAILABLE, "no agent is listening")
    try:
        payload = codec.decode(data, headers)
    except BrokerError as exc:
        return exc
    err = BrokerError.from_payload(payload)
    if err is not None:
        return err
    if not isinstance(payload, dict):
        return BrokerError(ErrorCode.MALFORMED, "answer is not an object")
    return payload


class Call:
    """One scatter in flight: the answers land here in arrival order.

    Wait for everyone (``wait``), or take what arrived so far (``take``) and go on waiting:
    a caller can act on early answers (persist them) while late ones are still on the way.
    An absent agent (no responders) is an answer too, an ``unavailable`` error.
    """

    __slots__ = ("_everyone", "_taken", "answers", "evidence", "ids", "refused", "results",
                 "signed")

    def __init__(self, ids: Sequence[str], everyone: asyncio.Future[None],
                 signed: bool = False) -> None:
        self.ids = ids
        self.signed = signed
        # A signed call keeps each accepted answer as it was signed (agent id -> act), so
        # that the caller can store it as evidence of what the agent agreed to.
        self.evidence: dict[str, SignedAct] = {}
        # Answers refused as not the participant's own act: they do not take its place (a
        # forger racing the honest answer must not win), and count only if nothing else
        # arrives.
        self.refused: dict[int, BrokerError] = {}
        self.results: dict[int, Outcome] = {}
        self.answers: list[tuple[str, Outcome]] = []
        self._taken = 0
        self._everyone = everyone
        if not ids:
            everyone.set_result(None)

    @property
    def everyone_answered(self) -> bool:
        return len(self.results) == len(self.ids)

    def arrive(self, index: int, outcome: Outcome) -> None:
        """Record one answer (a repeated or unknown index is ignored)."""
        if index in self.results or index >= len(self.ids):
            return
        self.results[index] = outcome
        self.answers.append((self.ids[index], outcome))
        if self.everyone_answered and not self._everyone.done():
            self._everyone.set_result(None)

    def refuse(self, index: int, refusal: BrokerError) -> None:
        """Note an answer refused as not the participant's act (see ``refused``)."""
        if index not in self.results and index < len(self.ids):
            self.refused.setdefault(index, refusal)

    def outcome(self, index: int, late: BrokerError) -> Outcome:
        """The participant's answer; else why its answer was refused; else ``late``."""
        got = self.results.get(index)
        if got is not None:
            return got
        return self.refused.get(index, late)

    async def wait(self, timeout: float) -> bool:
        """Wait until everyone answered or ``timeout`` seconds passed; whether all did."""
        if not self._everyone.done():
            await asyncio.wait({self._everyone}, timeout=max(0.0, timeout))
        return self.everyone_answered

    def take(self) -> list[tuple[str, Outcome]]:
        """The answers that arrived since the last ``take``, in arrival order."""
        new = self.answers[self._taken:]
        self._taken = len(self.answers)
        return new


class Gatherer:
    """Scatter-gather over one reply subscription (per connection)."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.prefix = ""
        self._own = "."
        self.batches: dict[str, Call] = {}
        self.seq = itertools.count(1)
        self._sub: Any = None
        # Participants that answered before (insertion order ~ age): asked by fan-out.
        self.reached: dict[str, None] = {}

    async def start(self) -> None:
        self.prefix = self.nc.new_inbox()
        self._own = f"{self.prefix}."
        self._sub = await self.nc.subscribe(f"{self.prefix}.*", cb=self._on_reply,
                                            pending_msgs_limit=1_000_000)

    async def _on_reply(self, msg: Msg) -> None:
        self._route(msg.subject, msg.data, msg.headers)

    async def _local_answer(self, subject: str, payload: bytes = b"", reply: str = "",
                            headers: dict[str, str] | None = None) -> None:
        """``nc.publish``'s shape: how participants on this connection answer an ask
        handed to them in-process (``fanout.FanoutHost.local``): straight to the call."""
        if not reply and subject.startswith(self._own):
            self._route(subject, payload, headers)
        else:
            await self.nc.publish(subject, payload, reply=reply, headers=headers)

    def _route(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        batch_id, _, index = subject.rpartition(".")[2].partition("-")
        call = self.batches.get(batch_id)
        if call is None:
            return
        if index:
            if index.isdigit() and int(index) < len(call.ids):
                self._answer(call, int(index), subject, data, headers)
        elif headers and headers.get(answerframe.HEADER) == "1":
            self._on_batch(call, subject, data)

    def _on_batch(self, call: Call, subject: str, body: bytes) -> None:
        """Several participants' answers from one node: each as its single answer."""
        try:
            if len(body) > max_payload_of(self.nc):
                raise BrokerError(ErrorCode.MALFORMED, "batch frame over the max payload")
            entries = answerframe.decode(body, len(call.ids))
        except BrokerError as exc:
            MALFORMED.labels(COMPONENT, exc.code).inc()
            _log.warning(("refused", exc.code), "batch of answers refused",
                         error=exc.message[:200])
            return
        for index, data, headers in entries:
            self._answer(call, index, f"{subject}-{index}", data, headers)

    def _answer(self, call: Call, index: int, subject: str, data: bytes,
                headers: dict[str, str] | None) -> None:
        """One participant's answer, read on its per-participant ``subject``."""
        signed = headers is not None and HEADER_JWT in headers
        if signed or call.signed:
            target = call.ids[index]
            refusal = self._refusal(target, subject, data, headers)
            if refusal is not None:
                call.refuse(index, refusal)
                return
            if signed and index not in call.results:
                call.evidence[target] = SignedAct.of(subject, data, headers)
        if data or not headers or headers.get("Status") != NO_RESPONDERS:
            self._reach(call.ids[index])
        call.arrive(index, _outcome(data, headers))

    def _reach(self, agent_id: str) -> None:
        reached = self.reached
        if agent_id not in reached:
            reached[agent_id] = None
            if len(reached) > REACHED:
                del reached[next(iter(reached))]

    def _refusal(self, target: str, subject: str, data: bytes,
                 headers: dict[str, str] | None) -> BrokerError | None:
        """Why an answer is not an act of ``target`` (None: it is)."""
        if not data and headers and headers.get("Status") == NO_RESPONDERS:
            return None  # the server's own "nobody listens": an honest non-answer
        try:  # unsigned here means required: refused unless the connection is --insecure
            principal = identity.authenticate(self.nc, subject, data, headers,
                                              component=COMPONENT)
            identity.bind_act(self.nc, principal, target, "answer", component=COMPONENT)
        except Unauthorized as exc:
            return exc
        return None

    @contextlib.asynccontextmanager
    async def call(self, subjects: Subjects, agent_ids: Sequence[str],
                   data: bytes, *, signed: bool = False) -> AsyncIterator[Call]:
        """Send ``data`` to every agent's inbox; answers land in the yielded ``Call`` until
        the block ends (later ones are dropped). ``signed``: see the module's doc."""
        batch_id = f"{next(self.seq):x}"
        call = Call(agent_ids, asyncio.get_running_loop().create_future(), signed)
        self.batches[batch_id] = call
        reply = f"{self.prefix}.{batch_id}"
        direct: Sequence[tuple[int, str]] = list(enumerate(agent_ids))
        fanned: list[tuple[int, str]] = []
        local: list[tuple[int, str]] = []
        if len(agent_ids) > 1 and fanout.hosts(self.nc):
            host = fanout.host(self.nc, subjects)
            here = host.agents
            local = [t for t in direct if t[1] in here]
            if local:
                direct = [t for t in direct if t[1] not in here]
            reached = self.reached
            fanned = [t for t in direct if t[1] in reached]
            if len(fanned) > 1:
                direct = [t for t in direct if t[1] not in reached]
            else:
                fanned = []
        try:
            if fanned:
                await self.nc.publish(subjects.fanout(), data, reply=reply, headers={
                    fanout.HEADER: fanout.encode_targets(fanned), answerframe.HEADER: "1"})
            for i, agent_id in direct:
                await self.nc.publish(subjects.agent(agent_id), data, reply=f"{reply}-{i}")
            if local:
                host.local(local, reply, data, self._local_answer)
            yield call
        finally:
            self.batches.pop(batch_id, None)
            for i, agent_id in fanned:  # silent: gone? its inbox is asked next time
                if i not in call.results:
                    self.reached.pop(agent_id, None)

    async def ask(self, subjects: Subjects, agent_ids: Sequence[str], data: bytes,
                  timeout: float, *, signed: bool = False) -> dict[str, Outcome]:
        if not agent_ids:
            return {}
        async with self.call(subjects, agent_ids, data, signed=signed) as call:
            await call.wait(timeout)
        late = BrokerError(ErrorCode.TIMEOUT, f"no answer within {timeout:g}s")
        return {a: call.outcome(i, late) for i, a in enumerate(agent_ids)}


_gatherers: weakref.WeakKeyDictionary[NATS, tuple[Gatherer, asyncio.Task[None]]] = (
    weakref.WeakKeyDictionary())


async def gatherer(nc: NATS) -> Gatherer:
    """The connection's gatherer (concurrent first callers share one start)."""
    entry = _gatherers.get(nc)
    if entry is None:
        g = Gatherer(nc)
        entry = _gatherers[nc] = (g, asyncio.ensure_future(g.start()))
    await entry[1]
    return entry[0]


async def ask_all(nc: NATS, subjects: Subjects, agent_ids: Sequence[str], msg: BaseModel,
                  timeout: float, *, signed: bool = False) -> dict[str, Outcome]:
    """agent id -> reply payload or error, for every id, within ``timeout`` seconds."""
    data = codec.encode(envelope(msg))
    return await (await gatherer(nc)).ask(subjects, list(agent_ids), data, timeout,
                                          signed=signed)


def parse_answer(outcome: Outcome, model: type[Any]) -> Any:
    """Validate a reply payload against ``model``; garbage becomes a ``malformed`` error."""
    if isinstance(outcome, BrokerError):
        return outcome
    try:
        return model.model_validate(outcome)
    except Exception as exc:
        return BrokerError(ErrorCode.MALFORMED, f"answer is not a valid {model.__name__}: "
                           f"{str(exc).splitlines()[0]}")
