"""Node services: capabilities a node hosts beside its agents (registry, consensus, ...).

A service starts after NATS is up and before agents start, stops after agents stopped,
and hears about agent lifecycle events (to register agents, mark them degraded, ...).
Services are named in the ``[services.<name>]`` config table and looked up here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from node.config import ConfigError

if TYPE_CHECKING:
    from broker_agents.agent import Agent
    from node.daemon import Node


class NodeService(Protocol):
    name: str

    async def start(self, node: Node) -> None: ...

    async def stop(self) -> None: ...

    async def agent_started(self, agent: Agent, restarts: int) -> None: ...

    async def agent_exited(self, agent_id: str, error: BaseException | None,
                           restarting: bool) -> None: ...

    async def agent_stopping(self, agent_id: str) -> None: ...


class BaseService:
    """No-op lifecycle hooks so a service implements only what it needs."""

    name = "service"

    async def start(self, node: Node) -> None:
        """Called once NATS is connected, before agents start."""

    async def stop(self) -> None:
        """Called after agents stopped, before NATS drains."""

    async def agent_started(self, agent: Agent, restarts: int) -> None:
        """An agent's subscriptions are live."""

    async def agent_exited(self, agent_id: str, error: BaseException | None,
                           restarting: bool) -> None:
        """An agent exited on its own."""

    async def agent_stopping(self, agent_id: str) -> None:
        """An agent is about to be stopped."""


# name -> "module:factory"; the factory takes the service's config table as kwargs.
KNOWN_SERVICES: dict[str, str] = {
    "registry": "node.registry:RegistryNodeService",
    "consensus": "node.consensus:ConsensusNodeService",
}
# Started on every node unless their table says ``enabled = false``.
DEFAULT_SERVICES = ("registry",)


def register_service(name: str, factory_path: str) -> None:
    KNOWN_SERVICES[name] = factory_path


def build_services(tables: dict[str, dict[str, Any]]) -> list[NodeService]:
    services: list[NodeService] = []
    tables = {**{name: {} for name in DEFAULT_SERVICES}, **tables}
    for name, options in tables.items():
        path = KNOWN_SERVICES.get(name)
        if path is None:
            raise ConfigError(
                f"services.{name}: unknown service (known: {', '.join(sorted(KNOWN_SERVICES))})")
        module_name, _, attr = path.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        options = dict(options)
        if not options.pop("enabled", True):
            continue
        try:
            services.append(factory(**options))
        except (TypeError, ValueError, ValidationError) as exc:
            raise ConfigError(f"services.{name}: {exc}") from exc
    return services
