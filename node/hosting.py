"""Turning the ``[[agents]]`` config into supervised children that run agents on NATS.

Everything is checked before any agent starts: each class imports and is an ``Agent``,
each id is a unique subject token, and each ``kwargs`` satisfies the class's ``Settings``.
Each agent gets its own quota (``[agent_limits]`` and its ``[agents.limits]``) and its own
restart budget (``[supervisor]`` and its ``[agents.limits]``).

Agent ids are unique cluster-wide: the registry service claims every planned id before
agents start (``planned_agents``; ``broker_agents/registry/claims.py``). An id a live node
holds is refused: its spec is built ``refused`` (the supervisor lists it in ``failed``
and never starts it: no subscription, one responder), or, under ``[services.registry]
on_duplicate_id = "fail"``, the registry service fails the start.

An agent can also move between nodes (``node/drain.py``): ``HandoverSpec`` is one agent's
spec on the wire (class path, id, kwargs, capabilities, restart type, limits), what a
draining node sends and what the new host checks exactly as its own config
(``handover_child``) before it starts the agent under its supervisor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nats.aio.client import Client as NATS
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broker_agents.agent import Agent
from broker_agents.core.supervision import RestartType
from broker_agents.handoff import Parking
from broker_agents.importer import ImportFromStringError, import_from_string
from broker_agents.quota import AgentQuota
from broker_agents.runtime import AgentRunner
from broker_agents.subjects import Subjects, check_token
from node.config import (
    AgentLimitsOverride,
    AgentSection,
    ConfigError,
    NodeConfig,
    describe_validation_error,
)
from node.supervisor import ChildSpec

_T = TypeVar("_T")


def import_agent_class(path: str, where: str = "agents") -> type[Agent]:
    try:
        cls = import_from_string(path)
    except ImportFromStringError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise ConfigError(f"{where}: {path!r} is not an Agent subclass")
    return cls


def check_kwargs(cls: type[Agent], kwargs: dict[str, Any], where: str) -> None:
    """``kwargs`` against the class's ``Settings``; a ``ConfigError`` names each field."""
    if cls.Settings is None:
        return
    try:
        cls.Settings.model_validate(kwargs)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(
            exc, f"{cls.__module__}:{cls.__qualname__}", f"{where}.")) from exc


@dataclass
class AgentChild:
    """One (re)start of an agent: a fresh instance and runner each time, as in OTP."""

    agent: Agent
    nc: NATS
    node_id: str
    subjects: Subjects
    services: dict[str, Any]
    max_payload: int
    pending_msgs_limit: int
    quota: AgentQuota = field(default_factory=AgentQuota)
    handed_over: bool = False
    runner: AgentRunner | None = field(default=None, init=False)

    async def run(self, ready: Callable[[], None]) -> None:
        self.runner = AgentRunner(
            self.agent, self.nc, node_id=self.node_id, subjects=self.subjects,
            services=self.services, max_payload=self.max_payload,
            pending_msgs_limit=self.pending_msgs_limit, quota=self.quota, fanout=True,
            handed_over=self.handed_over)
        await self.runner.run(ready)

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()

    def park(self) -> Parking | None:
        """Stop for a handover (``AgentRunner.park``); None if it never ran."""
        return self.runner.park() if self.runner is not None else None


def agent_ids(section: AgentSection, cls: type[Agent]) -> list[str]:
    base = section.id or cls.__name__.lower()
    if section.count == 1:
        return [base]
    return [f"{base}-{i}" for i in range(1, section.count + 1)]


def _checked_ids(index: int, section: AgentSection, cls: type[Agent],
                 seen: set[str]) -> list[str]:
    """The section's ids, each a subject token and new to this config."""
    ids = agent_ids(section, cls)
    for agent_id in ids:
        try:
            check_token(agent_id, "agent id")
        except ValueError as exc:
            raise ConfigError(f"agents.{index}.id: {exc}") from exc
        if agent_id in seen:
            raise ConfigError(f"agents.{index}.id: duplicate agent id {agent_id!r}")
        seen.add(agent_id)
    return ids


def planned_agents(config: NodeConfig) -> list[tuple[str, str]]:
    """``(agent_id, class name)`` of every agent the config hosts, in start order."""
    planned: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, section in enumerate(config.agents):
        cls = import_agent_class(section.cls, f"agents.{index}.class")
        planned.extend((a, cls.__name__) for a in _checked_ids(index, section, cls, seen))
    return planned


def build_specs(config: NodeConfig, nc: NATS, services: dict[str, Any]) -> list[ChildSpec]:
    """Child specs in start order; validates classes and ids before anything starts.
    An id the registry service refused (``refused``: id -> why) gets a refused spec."""
    specs: list[ChildSpec] = []
    seen: set[str] = set()
    refused: dict[str, str] = getattr(services.get("registry"), "refused", {})
    for index, section in enumerate(config.agents):
        limits = section.limits
        quota = limits.quota(config.agent_limits)
        cls = import_agent_class(section.cls, f"agents.{index}.class")
        kwargs = dict(section.kwargs)
        if section.capabilities:
            kwargs["capabilities"] = section.capabilities
        check_kwargs(cls, kwargs, f"agents.{index}.kwargs")
        for agent_id in _checked_ids(index, section, cls, seen):
            specs.append(_child_spec(config, nc, services, cls, agent_id, kwargs,
                                     section.restart, limits, quota,
                                     refused.get(agent_id)))
    return specs


def _child_spec(config: NodeConfig, nc: NATS, services: dict[str, Any], cls: type[Agent],
                agent_id: str, kwargs: dict[str, Any], restart: RestartType,
                limits: AgentLimitsOverride, quota: AgentQuota,
                refused: str | None = None, handed_over: bool = False) -> ChildSpec:
    """One agent's supervised child (a fresh instance on every start)."""
    subjects = Subjects(config.node.subject_prefix)
    sup = config.supervisor

    def factory() -> AgentChild:
        return AgentChild(cls(agent_id, **kwargs), nc, config.node.id, subjects,
                          services, config.node.max_payload,
                          config.nats.pending_msgs_limit, quota, handed_over)

    return ChildSpec(agent_id, factory, restart,
                     shutdown_timeout=config.node.shutdown_timeout,
                     max_restarts=_or(limits.max_restarts, sup.max_restarts),
                     period=_or(limits.period, sup.period),
                     on_exhausted=limits.on_exhausted or sup.on_exhausted,
                     refused=refused)


MAX_KWARGS_BYTES = 64 * 1024


class HandoverSpec(BaseModel):
    """One hosted agent, as a draining node hands it to another (``<p>.handover.<node>``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    agent_id: str = Field(max_length=128)
    cls: str = Field(alias="class", max_length=512, description="module.path:ClassName")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    capabilities: list[str] = Field(default_factory=list, max_length=256)
    restart: RestartType = RestartType.PERMANENT
    limits: AgentLimitsOverride = Field(default_factory=AgentLimitsOverride)


def own_specs(config: NodeConfig) -> dict[str, HandoverSpec]:
    """The handover spec of every agent the config hosts, by id."""
    found: dict[str, HandoverSpec] = {}
    for index, section in enumerate(config.agents):
        cls = import_agent_class(section.cls, f"agents.{index}.class")
        for agent_id in agent_ids(section, cls):
            found[agent_id] = HandoverSpec(
                agent_id=agent_id, cls=section.cls, kwargs=dict(section.kwargs),
                capabilities=list(section.capabilities), restart=section.restart,
                limits=section.limits)
    return found


def handover_child(config: NodeConfig, nc: NATS, services: dict[str, Any],
                   spec: HandoverSpec, *, check_class: bool = True) -> ChildSpec:
    """The child for a handed-over agent, checked as this node's own config would be:
    the class allowed here (``[hosting]``), importable, an ``Agent``; the id a subject
    token; the kwargs valid for the class's ``Settings``. ``ConfigError`` names the fault."""
    try:
        check_token(spec.agent_id, "agent id")
    except ValueError as exc:
        raise ConfigError(f"handover.agent_id: {exc}") from exc
    own = [section.cls for section in config.agents]
    if check_class and not config.hosting.allows(spec.cls, own):
        raise ConfigError(f"handover.class: {spec.cls!r} is not a class this node hosts "
                          f"([hosting] classes)", {"class": spec.cls})
    cls = import_agent_class(spec.cls, "handover.class")
    kwargs = dict(spec.kwargs)
    if spec.capabilities:
        kwargs["capabilities"] = list(spec.capabilities)
    check_kwargs(cls, kwargs, "handover.kwargs")
    try:
        cls(spec.agent_id, **kwargs)  # what each start does: fail here, not in the child
    except Exception as exc:
        raise ConfigError(f"handover.kwargs: {cls.__name__} refuses them: "
                          f"{type(exc).__name__}: {exc}"[:300]) from None
    quota = spec.limits.quota(config.agent_limits)
    return _child_spec(config, nc, services, cls, spec.agent_id, kwargs, spec.restart,
                       spec.limits, quota, handed_over=True)


def _or(own: _T | None, default: _T) -> _T:
    return default if own is None else own
