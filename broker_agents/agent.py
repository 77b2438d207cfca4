"""The one base class an agent author subclasses.

    class Greeter(Agent):
        capabilities = ["greet"]

        @handler(Hello)
        async def hello(self, msg: Hello) -> Greeting:
            return Greeting(text=f"hello {msg.name}")

Handlers run one at a time per agent (actor semantics, like an Erlang process) unless the
agent sets ``max_concurrency`` above 1 or a handler is declared ``concurrent=True``.

An agent that declares ``Settings`` (a subclass of ``AgentSettings``) has its
``[[agents]] kwargs`` checked against it when the node starts: a bad or unknown key is a
config error naming the field. Without ``Settings`` the kwargs are passed unchecked.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, Field

from broker_agents.core.errors import BrokerError, CodedError, ErrorCode
from broker_agents.messages import message_type

if TYPE_CHECKING:
    from broker_agents.context import AgentContext, Incoming

HandlerFn = Callable[..., Awaitable[Any]]
F = TypeVar("F", bound=HandlerFn)


class FatalAgentError(CodedError):
    """Raise from a handler to crash the agent to its supervisor after replying."""

    CODE = ErrorCode.HANDLER_ERROR


class AgentSettings(BaseModel):
    """The kwargs every agent understands; a built-in agent's ``Settings`` adds its own."""

    model_config = {"extra": "forbid"}

    capabilities: list[str] = Field(default_factory=list, description="added to the class's")
    resources: dict[str, Any] = Field(default_factory=dict,
                                      description="advertised in the registry (queryable)")
    metadata: dict[str, Any] = Field(default_factory=dict,
                                     description="advertised in the registry")


@dataclass(frozen=True)
class HandlerSpec:
    type_name: str
    model: type[BaseModel] | None
    method: str
    wants_incoming: bool
    concurrent: bool
    signed: bool = False  # the reply is an act of the agent's, signed as it


def handler(model: type[BaseModel] | str, *, concurrent: bool = False,
            signed: bool = False) -> Callable[[F], F]:
    """Mark a method as the handler of one message type (a pydantic model, or a raw name).
    ``signed``: its answer is the agent's act (a vote, a bid, an award answer), signed as
    the agent so that the asker can check who answered (``broker_agents.identity``)."""

    def mark(fn: F) -> F:
        params = list(inspect.signature(fn).parameters)
        fn.__ba_handler__ = (  # type: ignore[attr-defined]
            model, len(params) >= 3, concurrent, signed)
        return fn

    return mark


class Agent:
    """Base class: lifecycle hooks, declared capabilities, typed handlers, a context."""

    capabilities: ClassVar[list[str]] = []
    max_concurrency: ClassVar[int] = 1
    # The model ``[[agents]] kwargs`` must satisfy; None: not declared, passed unchecked.
    Settings: ClassVar[type[AgentSettings] | None] = None
    # Exceptions that crash the agent to its supervisor instead of being answered and survived.
    fatal_errors: ClassVar[tuple[type[BaseException], ...]] = (FatalAgentError,)
    _handler_specs: ClassVar[dict[str, HandlerSpec]] = {}

    def __init__(self, agent_id: str, **config: Any) -> None:
        self.agent_id = agent_id
        self.config = config
        self._ctx: AgentContext | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        specs: dict[str, HandlerSpec] = {}
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                marker = getattr(attr, "__ba_handler__", None)
                if marker is None:
                    continue
                model, wants_incoming, concurrent, signed = marker
                if isinstance(model, str):
                    specs[model] = HandlerSpec(model, None, name, wants_incoming, concurrent,
                                               signed)
                else:
                    type_name = message_type(model)
                    specs[type_name] = HandlerSpec(
                        type_name, model, name, wants_incoming, concurrent, signed
                    )
        cls._handler_specs = specs

    @property
    def ctx(self) -> AgentContext:
        if self._ctx is None:
            raise RuntimeError(f"agent {self.agent_id} has no context before it starts")
        return self._ctx

    def bind(self, ctx: AgentContext) -> None:
        self._ctx = ctx

    def all_capabilities(self) -> list[str]:
        """Capabilities of this instance (config may add to the class's list)."""
        extra = self.config.get("capabilities", [])
        return list(dict.fromkeys([*type(self).capabilities, *extra]))

    async def on_start(self) -> None:
        """Called after subscriptions are live, before the agent counts as started."""

    async def on_stop(self) -> None:
        """Called after in-flight handlers finished, before subscriptions close."""

    async def handle_unknown(self, type_name: str, data: Any, incoming: Incoming) -> Any:
        """Fallback for message types without a handler; the default rejects them."""
        raise BrokerError(
            ErrorCode.UNKNOWN_TYPE,
            f"agent {self.agent_id} has no handler for message type {type_name!r}",
            {"type": type_name, "known": sorted(self._handler_specs)},
        )
