"""An agent handed over between hosts on three routed nats-servers, under load: no request
is lost or answered twice, no one-way message is lost or handled twice
(``broker_agents.handoff``).

The requester sits on server 0, the old host on server 1, the new host on server 2, so
every message crosses a route, where a plain unsubscription loses what is in flight.
Requests are sent without any retry: a "no responders" or a timeout is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from nats.aio.client import Client as NATS

from broker_agents import codec
from broker_agents.agent import Agent, handler
from broker_agents.handoff import DROPPED, HEADER, REFUSED
from broker_agents.messages import envelope
from broker_agents.runtime import AgentRunner
from broker_agents.samples import Echo, EchoReply
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.embedded import NatsCluster, NatsServer
from tests.integration.raft.helpers import wait_for
from tests.secured import connect_as

S = Subjects()
AGENT = "tally"


class Tally(Agent):
    """Counts each text it handles, and says which host handled it."""

    capabilities: ClassVar[list[str]] = ["tally"]
    handled: ClassVar[Counter[str]] = Counter()

    @handler(Echo)
    async def echo(self, msg: Echo) -> EchoReply:
        Tally.handled[msg.text] += 1
        return EchoReply(text=msg.text, agent_id=self.agent_id, node_id=self.ctx.node_id)


async def start(nc: NATS, node_id: str, **kwargs: Any
                ) -> tuple[AgentRunner, asyncio.Task[None]]:
    runner = AgentRunner(Tally(AGENT), nc, node_id=node_id, subjects=S, **kwargs)
    ready = asyncio.Event()
    task = asyncio.create_task(runner.run(ready.set))
    async with asyncio.timeout(5):
        await ready.wait()
    return runner, task


@contextlib.asynccontextmanager
async def node_and_client(server: NatsServer, **client: Any
                          ) -> AsyncIterator[tuple[NATS, NATS]]:
    """A node's connection (the hosts') and a client's on ``server``, closed on the way out."""
    nc = await connect_as(server, Role.NODE)
    try:
        other = await connect_as(server, Role.CLIENT, **client)
        try:
            yield nc, other
        finally:
            await other.close()
    finally:
        await nc.close()


class Load:
    """Requests to the inbox and to the capability, and one-way messages, all along."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.ids = itertools.count()
        self.answers: dict[str, str] = {}  # text -> the host that answered
        self.one_way: list[str] = []
        self.failures: list[str] = []
        self.stopping = asyncio.Event()
        self.tasks = [asyncio.create_task(self._ask(S.agent(AGENT), "inbox")) for _ in range(4)]
        self.tasks += [asyncio.create_task(self._ask(S.cap("tally"), "cap")) for _ in range(2)]
        self.tasks.append(asyncio.create_task(self._tell()))

    async def _ask(self, subject: str, kind: str) -> None:
        while not self.stopping.is_set():
            text = f"{kind}-{next(self.ids)}"
            try:
                reply = await self.nc.request(subject, codec.encode(envelope(Echo(text=text))),
                                              timeout=5)
                answer = codec.decode(reply.data)
                assert answer["text"] == text, answer
                self.answers[text] = answer["node_id"]
            except Exception as exc:
                self.failures.append(f"{text}: {exc!r}")

    async def _tell(self) -> None:
        while not self.stopping.is_set():
            text = f"one-way-{next(self.ids)}"
            await self.nc.publish(S.agent(AGENT), codec.encode(envelope(Echo(text=text))))
            self.one_way.append(text)
            await asyncio.sleep(0.001)  # sleep-ok: paces the one-way sender, not a wait

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.gather(*self.tasks)
        await self.nc.flush()


async def test_handover_across_routes_loses_and_doubles_nothing(
        nats_cluster: NatsCluster) -> None:
    urls = nats_cluster.urls
    client = await connect_as(nats_cluster, Role.CLIENT, servers=[urls[0]])
    old_nc = await connect_as(nats_cluster, Role.NODE, servers=[urls[1]])
    new_nc = await connect_as(nats_cluster, Role.NODE, servers=[urls[2]])
    Tally.handled.clear()
    dropped_before = DROPPED.labels(AGENT)._value.get()
    old, old_task = await start(old_nc, "old")
    runners = [(old, old_task)]
    load: Load | None = None
    try:
        # the requester's server has heard of the old host's subscriptions
        await nats_request(client, S.agent(AGENT), codec.encode(envelope(Echo(text="hi"))), 5)
        await nats_request(client, S.cap("tally"), codec.encode(envelope(Echo(text="hi2"))), 5)
        load = Load(client)
        await wait_for(lambda: len(load.answers) >= 50, 10, "answers before the handover")

        parking = old.park()
        await asyncio.wait_for(old_task, 5)  # stopped: in-flight work done, nothing more
        await wait_for(lambda: parking.held >= 6, 5, "messages held while parked")
        runners.append(await start(new_nc, "new", handed_over=True))
        # What the "start" answer tells the old host in a drain: a message from the new
        # host's connection, which crosses the route after its subscriptions did (so
        # the old host's server knows them once it arrives).
        ping = f"ba.test.started.{uuid.uuid4().hex}"

        async def pong(msg: Any) -> None:
            await msg.respond(b"")

        pinged = await old_nc.subscribe(ping, cb=pong)
        await old_nc.flush()
        await nats_request(new_nc, ping, b"", 5)  # retried until server 2 knows the ping
        await pinged.unsubscribe()
        # Then an answer from the new host on the old host's connection (its parked
        # copy is held too, and dropped later).
        answer = codec.decode((await nats_request(
            old_nc, S.agent(AGENT), codec.encode(envelope(Echo(text="sync"))), 5)).data)
        assert answer["node_id"] == "new"
        held = parking.held
        forwarded = await parking.release(grace=0.3)
        assert forwarded >= held

        after = len(load.answers)
        await wait_for(lambda: len(load.answers) >= after + 50, 10, "answers after it")
        await load.stop()
        await wait_for(lambda: all(Tally.handled[t] for t in load.one_way), 10,
                       "every one-way message handled")

        assert load.failures == [], load.failures[:5]
        doubled = {t: n for t, n in Tally.handled.items() if n > 1}
        assert doubled == {}, doubled
        assert all(Tally.handled[t] == 1 for t in load.answers)
        assert {"cap", "inbox"} <= {t.split("-")[0] for t, host in load.answers.items()
                                    if host == "new"}
        assert Tally.handled["sync"] == 1
        assert DROPPED.labels(AGENT)._value.get() - dropped_before >= 1
    finally:
        if load is not None and not load.stopping.is_set():
            await load.stop()
        for runner, task in runners:
            runner.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        for nc in (client, old_nc, new_nc):
            await nc.close()


async def test_a_parked_agent_that_holds_its_limit_refuses_more_in_the_callers_encoding(
        nats_server: NatsServer) -> None:
    async with node_and_client(nats_server) as (nc, client):
        old, task = await start(nc, "old", pending_msgs_limit=2)
        parking = old.park()
        await asyncio.wait_for(task, 5)
        asked = [asyncio.create_task(nats_request(
            client, S.agent(AGENT), b'{"type": "echo", "data": {"text": "%d"}}' % i, 5))
            for i in range(2)]
        await wait_for(lambda: parking.held == 2, 5, "two held")
        refused = await nats_request(client, S.agent(AGENT), b'{"type": "echo", "data": '
                                     b'{"text": "x"}}', 5)
        assert refused.data.startswith(b"{")
        error = codec.decode(refused.data)["error"]
        assert error["code"] == "unavailable" and error["details"]["retry_after_ms"] > 0
        assert error["details"]["reason"] == "full"
        new, new_task = await start(nc, "new", handed_over=True)
        await parking.release(grace=0)
        answers = [codec.decode((await a).data) for a in asked]
        assert {a["node_id"] for a in answers} == {"new"}
        new.stop()
        await new_task


async def test_to_a_new_host_that_keeps_no_dedup_window_nothing_is_forwarded(
        nats_server: NatsServer) -> None:
    """A new host of an older version would handle both copies of a message: the old host
    answers what it held ``unavailable`` (not handled: asking again is safe), drops and
    counts what was one-way, and unsubscribes at once; the new host serves what comes
    next, each message once."""
    Tally.handled.clear()
    refused = REFUSED.labels(AGENT, "no_forwarding")
    before = refused._value.get()
    async with node_and_client(nats_server) as (nc, client):
        old, task = await start(nc, "old")
        parking = old.park()
        await asyncio.wait_for(task, 5)
        asked = asyncio.create_task(nats_request(
            client, S.agent(AGENT), codec.encode(envelope(Echo(text="held"))), 5))
        await client.publish(S.agent(AGENT), codec.encode(envelope(Echo(text="told"))))
        await wait_for(lambda: parking.held == 2, 5, "two held")
        new, new_task = await start(nc, "new")  # no dedup window, like an older node
        assert await parking.release(forward=False) == 0
        error = codec.decode((await asked).data)["error"]
        assert error["code"] == "unavailable"
        assert error["details"]["reason"] == "no_forwarding"
        assert refused._value.get() - before == 2
        answer = codec.decode((await nats_request(
            client, S.agent(AGENT), codec.encode(envelope(Echo(text="after"))), 5)).data)
        assert answer["node_id"] == "new"
        assert dict(Tally.handled) == {"after": 1}
        new.stop()
        await new_task


async def test_a_client_forging_the_handover_header_gains_nothing(
        nats_server: NatsServer) -> None:
    """Anyone may set ``Ba-Handover-From``. On a new host it only pairs a message with an
    identical earlier copy (same bytes, same reply subject: a replay, handled once);
    a forged message of its own is handled like any other, and nobody else's is
    suppressed."""
    Tally.handled.clear()
    async with node_and_client(nats_server, user="mallory") as (nc, mallory):
        new, task = await start(nc, "new", handed_over=True)
        try:
            forged = {HEADER: "node-x"}
            answer = codec.decode((await nats_request(
                mallory, S.agent(AGENT), codec.encode(envelope(Echo(text="own"))), 5,
                headers=forged)).data)
            assert answer["text"] == "own"

            inbox = mallory.new_inbox()
            replies: asyncio.Queue[Any] = asyncio.Queue()
            sub = await mallory.subscribe(inbox, cb=replies.put)
            data = codec.encode(envelope(Echo(text="replayed")))
            await mallory.publish(S.agent(AGENT), data, reply=inbox)
            await mallory.publish(S.agent(AGENT), data, reply=inbox, headers=forged)
            await mallory.publish(S.agent(AGENT), codec.encode(envelope(Echo(text="next"))),
                                  reply=inbox)
            got = [codec.decode((await asyncio.wait_for(replies.get(), 5)).data)["text"]
                   for _ in range(2)]
            assert got == ["replayed", "next"]  # the forged replay got no second answer
            await sub.unsubscribe()
            assert dict(Tally.handled) == {"own": 1, "replayed": 1, "next": 1}
        finally:
            new.stop()
            await asyncio.wait_for(task, 5)
