"""Attacks on the node fan-out subject (``<p>.fanout``, ``broker_agents.fanout``).

Only nodes publish or subscribe there: a client may neither inject an ask (it would reach
agents through their inbox path with a reply subject of its choosing) nor read the asks
other nodes scatter. A hostile or malformed ask from a node is refused before any agent
sees it, counted, answered with a structured error, and the node keeps serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from broker_agents import codec, fanout
from broker_agents.core.errors import BrokerError
from broker_agents.gather import ask_all
from broker_agents.messages import envelope
from broker_agents.metrics import MALFORMED, MESSAGES_IN
from broker_agents.samples import Echo, EchoAgent
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.integration.test_runtime import Hosted
from tests.secured import connect_as
from tests.security.violations import Violations

S = Subjects()
Connect = Callable[..., Coroutine[Any, Any, NATS]]


@pytest.fixture
async def host(nats_server: NatsServer) -> AsyncIterator[Hosted]:
    """A node's connection hosting two echo agents with fan-out delivery on."""
    hosted = Hosted(await connect_as(nats_server, Role.NODE))
    for name in ("e-1", "e-2"):
        await hosted.add(EchoAgent(name), fanout=True)
    yield hosted
    await hosted.stop_all()
    await hosted.nc.close()


def refused(reason: str) -> float:
    return float(MALFORMED.labels("fanout", reason)._value.get())


@pytest.mark.parametrize("role", [Role.CLIENT, Role.ADMIN, Role.OBSERVER])
async def test_only_nodes_may_publish_or_subscribe_on_the_fanout_subject(
        host: Hosted, connect: Connect, role: Role) -> None:
    violations = Violations()
    mallory = await connect(role, user="mallory", error_cb=violations.on_error)
    await mallory.subscribe(S.fanout())
    await violations.expect(S.fanout(), "subscription")
    delivered = MESSAGES_IN.labels("e-1", "fanout").value
    await mallory.publish(S.fanout(), codec.encode(envelope(Echo(text="x"))),
                          reply=mallory.new_inbox(),
                          headers={fanout.HEADER: fanout.encode_targets([(0, "e-1")])})
    await violations.expect(S.fanout())
    await host.nc.flush()
    assert MESSAGES_IN.labels("e-1", "fanout").value == delivered


@pytest.mark.parametrize(("headers", "reply"), [
    (None, True),                                         # no targets at all
    ({fanout.HEADER: ""}, True),
    ({fanout.HEADER: "0=e-1,x=e-2"}, True),               # index not a number
    ({fanout.HEADER: "0=e.1"}, True),                     # id not a subject token
    ({fanout.HEADER: "0=*"}, True),
    ({fanout.HEADER: "9999999=e-1"}, True),               # absurd index
    ({fanout.HEADER: ",".join(["0=e-1"] * (fanout.MAX_PARTICIPANTS + 1))}, True),
    ({fanout.HEADER: "0=e-1"}, False),                    # nowhere to answer
])
async def test_malformed_fanout_asks_are_refused_counted_and_answered(
        host: Hosted, connect: Connect, headers: dict[str, str] | None, reply: bool) -> None:
    node = await connect(Role.NODE)
    before = refused("malformed")
    delivered = MESSAGES_IN.labels("e-1", "fanout").value
    inbox = node.new_inbox()
    answers: asyncio.Queue[Any] = asyncio.Queue()
    await node.subscribe(inbox, cb=answers.put)
    await node.publish(S.fanout(), codec.encode(envelope(Echo(text="x"))),
                       reply=inbox if reply else "", headers=headers)
    await node.flush()  # at the server, so at the host before anything sent after it
    if reply:
        got = await asyncio.wait_for(answers.get(), 5)
        err = BrokerError.from_payload(codec.decode(got.data, got.headers))
        assert err is not None and err.code == "malformed"
    assert MESSAGES_IN.labels("e-1", "fanout").value == delivered  # no agent saw it
    # the node keeps serving fan-out asks (handled in order: after the hostile one), asked
    # by another node (the host would hand its own agents the ask in-process)
    asker = Hosted(await connect(Role.NODE))
    await asker.add(EchoAgent("asker"), fanout=True)
    for _ in range(2):
        out = await ask_all(asker.nc, S, ["e-1", "e-2"], Echo(text="ok"), 5)
        assert not any(isinstance(v, BrokerError) for v in out.values()), out
    assert MESSAGES_IN.labels("e-1", "fanout").value == delivered + 1
    assert refused("malformed") == before + 1
    await asker.stop_all()


async def test_a_fanout_ask_passes_the_agents_own_checks(host: Hosted,
                                                         connect: Connect) -> None:
    """Delivery takes the inbox path: a body the agent refuses by inbox is refused the
    same way, per participant, on its own reply subject."""
    node = await connect(Role.NODE)
    inbox = node.new_inbox()
    answers: asyncio.Queue[Any] = asyncio.Queue()
    await node.subscribe(f"{inbox}.*", cb=answers.put)
    await node.publish(S.fanout(), b"\xc1 not msgpack", reply=f"{inbox}.b",
                       headers={fanout.HEADER: "0=e-1,1=e-2"})
    subjects = set()
    for _ in range(2):
        got = await asyncio.wait_for(answers.get(), 5)
        err = BrokerError.from_payload(codec.decode(got.data, got.headers))
        assert err is not None and err.code == "malformed"
        subjects.add(got.subject)
    assert subjects == {f"{inbox}.b-0", f"{inbox}.b-1"}
