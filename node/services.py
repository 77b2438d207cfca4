"""Node services: capabilities a node hosts beside its agents (registry, consensus, ...).

A service starts after NATS is up and before agents start, stops after agents stopped,
and hears about agent lifecycle events (to register agents, mark them degraded, ...).
Services are named in the ``[services.<name>]`` config table; the names and each one's
settings model live in ``node/service_settings.py``, and are built here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ValidationError

from broker_agents.importer import ImportFromStringError, import_from_string
from node.config import ConfigError, describe_validation_error
from node.service_settings import KNOWN_SERVICES, ServiceSettings, ServicesSection

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


def build_services(services: ServicesSection | Mapping[str, Any]) -> list[NodeService]:
    """The enabled services, in start order. ``services`` is the validated ``[services]``
    section (or its raw tables, validated here); a problem is a ``ConfigError`` naming
    ``services.<name>.<field>``."""
    if not isinstance(services, ServicesSection):
        try:
            services = ServicesSection.model_validate(services)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, "config", "services.")) from exc
    built: list[NodeService] = []
    for name, table in services.tables():
        try:
            factory = import_from_string(KNOWN_SERVICES[name])
        except ImportFromStringError as exc:
            raise ConfigError(f"services.{name}: {exc}") from exc
        settings = _settings(name, factory, table)
        if isinstance(settings, ServiceSettings):
            if not settings.enabled:
                continue
            options = settings.options()
        else:
            options = dict(settings)
            if not options.pop("enabled", True):
                continue
        try:
            built.append(factory(**options))
        except (TypeError, ValueError) as exc:  # ValidationError is a ValueError
            raise ConfigError(f"services.{name}: {exc}") from exc
    return built


def _settings(name: str, factory: Any, table: ServiceSettings | dict[str, Any]
              ) -> ServiceSettings | dict[str, Any]:
    """A registered service's raw table, checked against its factory's ``Settings``."""
    model = getattr(factory, "Settings", None)
    if isinstance(table, BaseModel) or not (isinstance(model, type)
                                            and issubclass(model, ServiceSettings)):
        return table
    try:
        return model.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, "config", f"services.{name}.")) from exc
