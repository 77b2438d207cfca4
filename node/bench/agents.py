"""Agents that measure the agent layer beside raw nats-py, inside node processes.

The responder/sink agent also serves a plain nats-py responder and counter on the same
connection, so ours and raw are measured between the same two processes in one run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from nats.aio.msg import Msg
from pydantic import BaseModel

from broker_agents.agent import Agent, handler
from node.bench.stats import figure


class Ping(BaseModel):
    message_type: ClassVar[str] = "ping"
    seq: int = 0


class Tick(BaseModel):
    message_type: ClassVar[str] = "tick"
    seq: int = 0


class Expect(BaseModel):
    message_type: ClassVar[str] = "expect"
    count: int
    done_subject: str


class RunRtt(BaseModel):
    message_type: ClassVar[str] = "run_rtt"
    target: str
    requests: int = 2000


class RunThroughput(BaseModel):
    message_type: ClassVar[str] = "run_throughput"
    target: str
    messages: int = 100_000
    rounds: int = 1


def raw_echo_subject(prefix: str, agent_id: str) -> str:
    return f"{prefix}.bench.raw.{agent_id}"


def raw_sink_subject(prefix: str, agent_id: str) -> str:
    return f"{prefix}.bench.rawsink.{agent_id}"


class BenchTargetAgent(Agent):
    """Answers pings, counts ticks; and the same through plain nats-py subscriptions."""

    async def on_start(self) -> None:
        self.expected = 0
        self.count = 0
        self.done_subject = ""
        nc, prefix = self.ctx.nc, self.ctx.subjects.prefix

        async def raw_echo(msg: Msg) -> None:
            await nc.publish(msg.reply, msg.data)

        async def raw_sink(msg: Msg) -> None:
            self._counted()

        self.subs = [
            await nc.subscribe(raw_echo_subject(prefix, self.agent_id), cb=raw_echo),
            await nc.subscribe(raw_sink_subject(prefix, self.agent_id), cb=raw_sink,
                               pending_msgs_limit=1_000_000),
        ]

    async def on_stop(self) -> None:
        for sub in self.subs:
            await sub.unsubscribe()

    def _counted(self) -> None:
        self.count += 1
        if self.count == self.expected:
            self.ctx.spawn(self.ctx.nc.publish(self.done_subject, b"done"))

    @handler(Ping)
    async def ping(self, msg: Ping) -> dict[str, int]:
        return {"seq": msg.seq}

    @handler(Tick)
    async def tick(self, msg: Tick) -> None:
        self._counted()

    @handler(Expect)
    async def expect(self, msg: Expect) -> dict[str, bool]:
        self.expected, self.count, self.done_subject = msg.count, 0, msg.done_subject
        return {"ok": True}


class BenchDriverAgent(Agent):
    """Runs the measurements from its node towards a target agent on another node."""

    @handler(RunRtt)
    async def run_rtt(self, msg: RunRtt) -> dict[str, Any]:
        nc, prefix = self.ctx.nc, self.ctx.subjects.prefix
        raw_subject = raw_echo_subject(prefix, msg.target)
        warm = max(50, msg.requests // 10)
        for i in range(warm):
            await self.ctx.request(msg.target, Ping(seq=i))
            await nc.request(raw_subject, b"x" * 16, timeout=5)
        agent_s: list[float] = []
        raw_s: list[float] = []
        for i in range(msg.requests):  # interleaved so both see the same machine state
            t0 = time.perf_counter()
            await self.ctx.request(msg.target, Ping(seq=i))
            t1 = time.perf_counter()
            await nc.request(raw_subject, b"x" * 16, timeout=5)
            t2 = time.perf_counter()
            agent_s.append(t1 - t0)
            raw_s.append(t2 - t1)
        return {**figure("agent_rtt_us_p50", agent_s, 50, 1e6),
                **figure("agent_rtt_us_p99", agent_s, 99, 1e6),
                **figure("raw_rtt_us_p50", raw_s, 50, 1e6),
                **figure("raw_rtt_us_p99", raw_s, 99, 1e6)}

    @handler(RunThroughput)
    async def run_throughput(self, msg: RunThroughput) -> dict[str, list[float]]:
        """Seconds per flood of ``messages``, raw and ours alternated ``rounds`` times."""
        raw_s: list[float] = []
        agent_s: list[float] = []
        for _ in range(max(1, msg.rounds)):
            raw_s.append(await self._flood(msg, raw=True))
            agent_s.append(await self._flood(msg, raw=False))
        return {"raw_seconds": raw_s, "agent_seconds": agent_s}

    async def _flood(self, msg: RunThroughput, raw: bool) -> float:
        nc, prefix = self.ctx.nc, self.ctx.subjects.prefix
        done_subject = nc.new_inbox()
        done = asyncio.Event()

        async def on_done(_: Msg) -> None:
            done.set()

        sub = await nc.subscribe(done_subject, cb=on_done)
        await self.ctx.request(msg.target, Expect(count=msg.messages, done_subject=done_subject))
        t0 = time.perf_counter()
        if raw:
            subject = raw_sink_subject(prefix, msg.target)
            for _ in range(msg.messages):
                await nc.publish(subject, b"x" * 16)
        else:
            for i in range(msg.messages):
                await self.ctx.send(msg.target, Tick(seq=i))
        await nc.flush()
        await asyncio.wait_for(done.wait(), timeout=120)
        elapsed = time.perf_counter() - t0
        await sub.unsubscribe()
        return elapsed
