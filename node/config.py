"""The node's typed configuration: a TOML file, overridable by ``BA_`` environment variables.

Nested fields use ``__`` in the environment: ``BA_NATS__SERVERS='["nats://a:4222"]'``,
``BA_HTTP__PORT=9000``, ``BA_NODE__ID=node-7``.
"""

from __future__ import annotations

import socket
import tomllib
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from broker_agents.core.errors import CodedError, ErrorCode
from broker_agents.core.supervision import OnExhausted, RestartType, Strategy
from broker_agents.core.tokens import TOKEN
from broker_agents.importer import ImportFromStringError, parse_import_path
from broker_agents.quota import AgentQuota
from node.service_settings import ServicesSection


class Strict(BaseModel):
    model_config = {"extra": "forbid"}


class NodeSection(Strict):
    id: str = Field(default_factory=lambda: socket.gethostname().split(".")[0])
    data_dir: Path = Path("./data")
    subject_prefix: str = "ba"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout: float = Field(10.0, gt=0, description="graceful shutdown deadline (s)")
    max_payload: int = Field(1024 * 1024, gt=0, description="largest agent message (bytes)")
    status_interval_s: float = Field(2.0, gt=0, description="seconds between the node's "
                                     "status events (<p>.events.node.<id>.status)")

    @field_validator("id", "subject_prefix")
    @classmethod
    def _token(cls, value: str) -> str:
        if not TOKEN.match(value):
            raise ValueError("must contain only letters, digits, '_' and '-'")
        return value


class TlsSection(Strict):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    verify: bool = True


class EmbeddedSection(Strict):
    host: str = "127.0.0.1"
    port: int = Field(4222, ge=0, le=65535, description="0 picks a free port")
    max_restarts: int = Field(
        3, ge=0, description="restarts of the embedded nats-server allowed within "
                             "`restart_period`; one more and the node exits 1")
    restart_period: float = Field(60.0, gt=0, description="seconds over which the embedded "
                                                          "server's restarts are counted")
    restart_backoff_initial: float = Field(0.2, ge=0, description="seconds before the first "
                                           "restart (doubling for each one in a row)")
    restart_backoff_max: float = Field(5.0, ge=0)


NatsAuth = Literal["local", "creds", "none"]


class NatsSection(Strict):
    """How the node reaches NATS, and who it is there.

    ``auth``: ``local`` (the default without ``servers``) runs the embedded server secured
    by ``<data_dir>/auth`` (created on first start) and connects with its node creds;
    ``creds`` (the default with ``servers`` or a ``context``) connects with ``creds`` /
    ``tls_ca`` / ``context`` (or user/password, token, ``[nats.tls]``); ``none`` turns all
    of it off, for experiments only, and says so loudly.
    """

    servers: list[str] = Field(default_factory=list,
                               description="empty: start an embedded nats-server")
    auth: NatsAuth | None = Field(
        None, description="local | creds | none (default: local for the embedded server, "
                          "creds with servers or a context)")
    context: Path | None = Field(
        None, description="a client context (node role): servers, creds, CA, inbox prefix")
    creds: Path | None = Field(None, validation_alias=AliasChoices("creds", "creds_file"),
                               description="the node user's .creds file")
    tls_ca: Path | None = Field(None, description="CA that signed the servers' certificates")
    inbox_prefix: str | None = Field(
        None, description="default: _INBOX.<user> of the creds (a user may read only its own)")
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls: TlsSection | None = None
    connect_timeout: float = Field(2.0, gt=0)
    reconnect_wait: float = Field(0.25, gt=0, description="first reconnect backoff (s)")
    max_reconnect_wait: float = Field(
        2.0, gt=0, description="reconnect backoff doubles up to this (s)")
    initial_connect_timeout: float = Field(
        60.0, gt=0, description="keep trying the first connection this long (s)")
    ping_interval: float = Field(
        5.0, gt=0, description="seconds between pings to the server: a link that silently "
                               "drops packets is found dead after ping_interval * "
                               "(max_outstanding_pings + 1), then another server is tried")
    max_outstanding_pings: int = Field(3, ge=1, description="unanswered pings before the "
                                                            "connection counts as dead")
    pending_msgs_limit: int = Field(65536, gt=0, description="per-subscription buffer")
    bucket_replicas: int | None = Field(None, ge=1, le=5, description="replicas of every KV "
                                        "bucket created (default: 3 in a cluster of >= 3 "
                                        "servers, else 1); an existing bucket keeps its own")
    embedded: EmbeddedSection = Field(default_factory=EmbeddedSection)

    @field_validator("servers")
    @classmethod
    def _urls(cls, servers: list[str]) -> list[str]:
        for url in servers:
            if "://" not in url:
                raise ValueError(f"{url!r} is not a URL like tls://host:4222")
        return servers

    @property
    def embedded_server(self) -> bool:
        """True when the node runs its own nats-server (no servers, no context)."""
        return not self.servers and self.context is None

    @property
    def mode(self) -> NatsAuth:
        return self.auth or ("local" if self.embedded_server else "creds")

    @model_validator(mode="after")
    def _one_auth(self) -> NatsSection:
        if self.token and (self.user or self.password):
            raise ValueError("use either token or user/password, not both")
        if bool(self.user) != bool(self.password):
            raise ValueError("user and password go together")
        if self.tls_ca and self.tls and self.tls.ca_file:
            raise ValueError("give the CA once: tls_ca or tls.ca_file")
        if self.auth == "local" and not self.embedded_server:
            raise ValueError("auth = 'local' runs the embedded server: with servers or a "
                             "context, use auth = 'creds' (creds and tls_ca, or context)")
        chosen = [name for name in ("context", "creds", "tls_ca", "tls", "user", "token")
                  if getattr(self, name)]
        if self.mode == "local" and chosen:
            raise ValueError(f"the embedded server (auth = 'local') uses the data dir's own "
                             f"creds and CA, but {', '.join(chosen)} are set: with servers, "
                             f"use auth = 'creds'")
        if self.auth == "none" and chosen:
            raise ValueError(f"auth = 'none' connects without credentials or TLS, but "
                             f"{', '.join(chosen)} are set")
        return self


class HttpSection(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, description="0 picks a free port")


class DashboardSection(Strict):
    """``[dashboard]``: ``enabled`` serves the dashboard inside the node (pages at ``/ui``,
    API at ``/api/`` on the ``[http]`` server); ``host``/``port`` are where
    ``broker-agents dashboard --config`` listens by default."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    prometheus_url: str | None = Field(None, description="alerts from Prometheus' "
                                       "/api/v1/alerts, beside the dashboard's own")
    context: Path | None = Field(None, description="the observer context the dashboard "
                                 "connects with (default: found like a CLI command's)")


class SupervisorSection(Strict):
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = Field(
        5, ge=0, description="each agent's own restart budget: restarts allowed within "
                             "`period` (an agent's [agents.limits] may override it)")
    period: float = Field(10.0, gt=0, description="seconds over which an agent's restarts "
                                                  "are counted")
    on_exhausted: OnExhausted = Field(
        OnExhausted.STOP_AGENT,
        description="an agent past its budget: stop_agent gives that agent up (stopped, "
                    "deregistered, counted in ba_agent_gave_up_total, listed in readiness "
                    "as agents_failed) and the node runs on; stop_node stops the node "
                    "(exit 1)")
    backoff_initial: float = Field(0.05, ge=0)
    backoff_max: float = Field(2.0, ge=0)


_QUOTA = AgentQuota()


class AgentLimitsSection(Strict):
    """``[agent_limits]``: the quota of every agent (``[agents.limits]`` overrides it);
    checked before a message is decoded, refused as ``rate_limited`` and counted in
    ``ba_agent_rate_limited_total{agent,reason}``. 0 turns a check off."""

    rate: float = Field(_QUOTA.rate, ge=0, description="messages per second one agent "
                        "accepts, sustained (token bucket); beyond: rate_limited (rate)")
    burst: int = Field(_QUOTA.burst, ge=1, description="messages one agent accepts at once "
                       "after a quiet spell (the token bucket's size)")
    max_pending_msgs: int = Field(
        _QUOTA.max_pending_msgs, ge=0, description="backlog (delivered, not yet handled) of "
        "one agent subscription past which its messages are refused: rate_limited (queue)")
    max_pending_bytes: int = Field(
        _QUOTA.max_pending_bytes, ge=0, description="the same backlog in bytes")

    def quota(self) -> AgentQuota:
        return AgentQuota(self.rate, self.burst, self.max_pending_msgs, self.max_pending_bytes)


class AgentLimitsOverride(Strict):
    """``[agents.limits]``: one agent's own quota and restart budget (unset: the node's)."""

    rate: float | None = Field(None, ge=0)
    burst: int | None = Field(None, ge=1)
    max_pending_msgs: int | None = Field(None, ge=0)
    max_pending_bytes: int | None = Field(None, ge=0)
    max_restarts: int | None = Field(None, ge=0, description="this agent's restart budget")
    period: float | None = Field(None, gt=0)
    on_exhausted: OnExhausted | None = None

    def quota(self, defaults: AgentLimitsSection) -> AgentQuota:
        own = self.model_dump(include={"rate", "burst", "max_pending_msgs",
                                       "max_pending_bytes"}, exclude_none=True)
        return defaults.model_copy(update=own).quota()


class AgentSection(Strict):
    cls: str = Field(alias="class", description="module.path:ClassName")
    id: str | None = Field(None, description="agent id; with count > 1 a -N suffix is added")
    count: int = Field(1, ge=1, le=10000)
    restart: RestartType = RestartType.PERMANENT
    capabilities: list[str] = Field(default_factory=list)
    limits: AgentLimitsOverride = Field(
        default_factory=AgentLimitsOverride,
        description="this agent's quota and restart budget (unset fields: [agent_limits] "
                    "and [supervisor])")
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="checked against the class's Settings at start")

    model_config = {"extra": "forbid", "populate_by_name": True}

    @field_validator("cls")
    @classmethod
    def _import_path(cls, value: str) -> str:
        try:
            parse_import_path(value)
        except ImportFromStringError:
            raise ValueError(f"{value!r} must look like 'package.module:ClassName'") from None
        return value


class HostingSection(Strict):
    """``[hosting]``: which agents this node takes over from a draining node
    (``broker-agents node drain``). A handed-over spec is checked exactly as this node's own
    ``[[agents]]`` (import, ``Agent`` subclass, ``Settings``, id token) and its class must
    match one of ``classes`` (``fnmatch`` globs on ``module:Class``); without ``classes``,
    the classes this node's own ``[[agents]]`` name."""

    accept_handover: bool = Field(True, description="take agents over from draining nodes")
    classes: list[str] = Field(default_factory=list, description="globs of 'module:Class' "
                               "this node may host when handed over (empty: the classes "
                               "of its own [[agents]])")
    max_agents: int | None = Field(None, ge=0, description="refuse a handover once this "
                                   "many agents run here (unset: no limit)")

    def allows(self, cls_path: str, own: list[str]) -> bool:
        """Whether a handed-over ``module:Class`` may run here."""
        patterns = self.classes or own
        return any(fnmatchcase(cls_path, pattern) for pattern in patterns)


class NodeConfig(BaseSettings):
    node: NodeSection = Field(default_factory=NodeSection)
    nats: NatsSection = Field(default_factory=NatsSection)
    http: HttpSection = Field(default_factory=HttpSection)
    dashboard: DashboardSection = Field(default_factory=DashboardSection)
    supervisor: SupervisorSection = Field(default_factory=SupervisorSection)
    agent_limits: AgentLimitsSection = Field(default_factory=AgentLimitsSection)
    agents: list[AgentSection] = Field(default_factory=list)
    hosting: HostingSection = Field(default_factory=HostingSection)
    services: ServicesSection = Field(
        default_factory=ServicesSection, description="capabilities hosted by the node")

    model_config = SettingsConfigDict(env_prefix="BA_", env_nested_delimiter="__",
                                      extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = settings_cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


class ConfigError(CodedError):
    """A config that cannot be used; the message names each field and problem."""

    CODE = ErrorCode.CONFIG


def load_config(path: Path | None = None, **overrides: Any) -> NodeConfig:
    """Read TOML (if given), apply BA_* environment overrides, validate."""
    cls: type[NodeConfig] = NodeConfig
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
        cls = type("NodeConfigFromFile", (NodeConfig,), {
            "model_config": SettingsConfigDict(**{**NodeConfig.model_config,
                                                  "toml_file": path})})
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, str(path or "config"))) from exc


def describe_validation_error(exc: ValidationError, source: str, prefix: str = "") -> str:
    """One line per problem, each naming its field; ``prefix`` places a sub-model's fields
    in the whole config (``agents.0.kwargs.``)."""
    lines = [f"{source}: {exc.error_count()} problem(s):"]
    for err in exc.errors(include_url=False):
        field = prefix + ".".join(str(p) for p in err["loc"]) if err["loc"] else prefix.rstrip(".")
        lines.append(f"  - {field or '<root>'}: {err['msg']}")
    return "\n".join(lines)
