"""Sample agents used by the demo, the examples and the tests."""

from __future__ import annotations

import asyncio
import operator
from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from broker_agents.agent import Agent, AgentSettings, FatalAgentError, handler
from broker_agents.context import Incoming


class Echo(BaseModel):
    message_type: ClassVar[str] = "echo"
    text: str = Field(max_length=65536)


class EchoReply(BaseModel):
    text: str
    agent_id: str
    node_id: str


class EchoAgent(Agent):
    """Answers with what it was sent, and says who answered (to show load balancing)."""

    capabilities: ClassVar[list[str]] = ["echo"]
    Settings = AgentSettings

    @handler(Echo)
    async def echo(self, msg: Echo) -> EchoReply:
        return EchoReply(text=msg.text, agent_id=self.agent_id, node_id=self.ctx.node_id)


class Calculate(BaseModel):
    message_type: ClassVar[str] = "calculate"
    op: Literal["add", "sub", "mul", "div"]
    a: float
    b: float


class CalculateResult(BaseModel):
    value: float
    agent_id: str


class CalculatorAgent(Agent):
    """Arithmetic over NATS; dividing by zero shows a handler error reply."""

    capabilities: ClassVar[list[str]] = ["math"]
    Settings = AgentSettings
    _ops: ClassVar[dict[str, object]] = {
        "add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
    }

    @handler(Calculate)
    async def calculate(self, msg: Calculate) -> CalculateResult:
        fn = self._ops[msg.op]
        assert callable(fn)
        return CalculateResult(value=fn(msg.a, msg.b), agent_id=self.agent_id)


class Relay(BaseModel):
    message_type: ClassVar[str] = "relay"
    target: str = Field(description="agent id to forward to")
    text: str


class RelayAgent(Agent):
    """Forwards an echo to another agent (possibly on another node) and returns its answer."""

    capabilities: ClassVar[list[str]] = ["relay"]
    Settings = AgentSettings
    max_concurrency: ClassVar[int] = 16

    @handler(Relay)
    async def relay(self, msg: Relay) -> dict[str, object]:
        reply = await self.ctx.request(msg.target, Echo(text=msg.text), reply_model=EchoReply)
        return {"via": self.agent_id, "via_node": self.ctx.node_id, "reply": reply.model_dump()}


class Work(BaseModel):
    message_type: ClassVar[str] = "work"
    hold: float = Field(0.0, ge=0, le=30, description="seconds to work before answering")
    release: str | None = Field(None, description="wait for this subject instead of a timer")


class Crash(BaseModel):
    message_type: ClassVar[str] = "crash"
    reason: str = "asked to crash"


class WorkerSettings(AgentSettings):
    fail_on_start: bool = Field(False, description="raise in on_start (supervision tests)")


class WorkerAgent(Agent):
    """Does slow work (for shutdown tests) and can be told to crash (for supervision)."""

    capabilities: ClassVar[list[str]] = ["work"]
    Settings = WorkerSettings
    max_concurrency: ClassVar[int] = 64
    starts: ClassVar[dict[str, int]] = {}

    async def on_start(self) -> None:
        WorkerAgent.starts[self.agent_id] = WorkerAgent.starts.get(self.agent_id, 0) + 1
        if self.config.get("fail_on_start"):
            raise RuntimeError("configured to fail on start")

    @handler(Work)
    async def work(self, msg: Work, incoming: Incoming) -> dict[str, object]:
        if msg.release:
            released = asyncio.Event()

            async def on_release(_: object) -> None:
                released.set()

            sub = await self.ctx.nc.subscribe(msg.release, cb=on_release)
            await self.ctx.nc.flush()
            await self.ctx.publish(f"{msg.release}.started", {"agent": self.agent_id})
            await asyncio.wait_for(released.wait(), timeout=30)
            await sub.unsubscribe()
        elif msg.hold:
            await asyncio.sleep(msg.hold)  # simulated work duration, not synchronisation
        return {"done": True, "agent_id": self.agent_id, "starts": self.starts[self.agent_id]}

    @handler(Crash)
    async def crash(self, msg: Crash) -> None:
        raise FatalAgentError(msg.reason)
