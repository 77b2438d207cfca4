from typing import ClassVar

from pydantic import BaseModel

from broker_agents.agent import Agent, handler
from broker_agents.samples import Echo, EchoReply


class Hello(BaseModel):
    message_type: ClassVar[str] = "hello"   # wire name (defaults to the class name)
    name: str


class Greeting(BaseModel):                  # a reply model: sent as an object, not a repr
    text: str
    echoed_by: str


class Greeter(Agent):
    capabilities: ClassVar[list[str]] = ["greet"]

    async def on_start(self) -> None: ...          # subscriptions are already live
    async def on_stop(self) -> None: ...           # in-flight handlers have finished

    @handler(Hello)
    async def hello(self, msg: Hello) -> Greeting:
        # another agent, maybe on another node: echo-1 answers Echo with an EchoReply
        echo = await self.ctx.request("echo-1", Echo(text=msg.name), timeout=2.0,
                                      reply_model=EchoReply)
        return Greeting(text=f"hello {echo.text}", echoed_by=echo.agent_id)
