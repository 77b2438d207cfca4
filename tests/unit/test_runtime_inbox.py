"""The agent inbox's per-message path without a server: what a flood gets and what it costs
the node's other tasks (a fake connection whose publishes never suspend, as nats-py's
buffered publish does not)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from pydantic import BaseModel

from broker_agents import codec
from broker_agents.agent import Agent, handler
from broker_agents.messages import envelope
from broker_agents.quota import AgentQuota
from broker_agents.runtime import YIELD_EVERY, AgentRunner
from broker_agents.subjects import Subjects


class Tick(BaseModel):
    message_type: ClassVar[str] = "tick"
    seq: int


class Counter(Agent):
    @handler(Tick)
    async def tick(self, msg: Tick) -> None:
        self.count = getattr(self, "count", 0) + 1


class _Sub:
    pending_msgs = 0
    pending_bytes = 0


class _Conn:
    def __init__(self) -> None:
        self.callbacks: dict[str, Callable[[Any], Awaitable[None]]] = {}
        self.published: list[tuple[str, bytes]] = []

    async def subscribe(self, subject: str, queue: str = "", cb: Any = None,
                        pending_msgs_limit: int = 0) -> _Sub:
        self.callbacks[subject] = cb
        return _Sub()

    async def publish(self, subject: str, data: bytes, reply: str = "",
                      headers: dict[str, str] | None = None) -> None:
        self.published.append((subject, data))

    async def flush(self) -> None:
        pass


class _Msg:
    def __init__(self, subject: str, data: bytes, reply: str = "") -> None:
        self.subject, self.data, self.reply, self.headers = subject, data, reply, None


async def _runner(quota: AgentQuota) -> tuple[Counter, _Conn, Callable[[Any], Awaitable[None]]]:
    conn = _Conn()
    agent = Counter("counter")
    runner = AgentRunner(agent, conn, node_id="n1", subjects=Subjects("ba"),  # type: ignore[arg-type]
                         quota=quota)
    await runner._subscribe()
    return agent, conn, conn.callbacks["ba.agent.counter"]


async def _ticks_of_other_task(deliveries: list[_Msg],
                               cb: Callable[[Any], Awaitable[None]]) -> int:
    """How often a neighbour task ran while ``deliveries`` were handed over back to back."""
    ran = 0

    async def neighbour() -> None:
        nonlocal ran
        while True:
            ran += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(neighbour())
    await asyncio.sleep(0)
    ran = 0
    for msg in deliveries:
        await cb(msg)
    task.cancel()
    return ran


async def test_one_way_messages_reach_the_handler_with_the_quota_off() -> None:
    agent, conn, cb = await _runner(AgentQuota.unlimited())
    for i in range(100):
        await cb(_Msg("ba.agent.counter", codec.encode(envelope(Tick(seq=i)))))
    assert agent.count == 100
    assert conn.published == []  # one-way: nothing answered


async def test_a_rate_quota_still_refuses_a_flood() -> None:
    agent, conn, cb = await _runner(AgentQuota(rate=1, burst=5, max_pending_msgs=0,
                                               max_pending_bytes=0))
    for i in range(50):
        await cb(_Msg("ba.agent.counter", codec.encode(envelope(Tick(seq=i))), reply=f"r.{i}"))
    assert agent.count == 5
    assert len(conn.published) == 50  # 5 answers and 45 rate_limited refusals
    refused = [codec.decode(d) for _, d in conn.published[5:]]
    assert all(r["error"]["code"] == "rate_limited" for r in refused)


async def test_a_flood_of_malformed_messages_still_lets_other_tasks_run() -> None:
    """Early answers (malformed, unauthorized, duplicate) pass the yield point too."""
    _, conn, cb = await _runner(AgentQuota.unlimited())
    garbage = [_Msg("ba.agent.counter", b"\xc1not msgpack", reply=f"r.{i}")
               for i in range(4 * YIELD_EVERY)]
    assert await _ticks_of_other_task(garbage, cb) >= 3
    assert len(conn.published) == len(garbage)  # each got its malformed answer


async def test_a_flood_of_handled_messages_lets_other_tasks_run() -> None:
    _, _, cb = await _runner(AgentQuota.unlimited())
    ticks = [_Msg("ba.agent.counter", codec.encode(envelope(Tick(seq=i))))
             for i in range(4 * YIELD_EVERY)]
    assert await _ticks_of_other_task(ticks, cb) >= 3
