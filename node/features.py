"""Cluster-wide feature flags on a node: the watcher and the admin operations.

The decision is ``broker_agents.core.features`` (pure); this module feeds it from two
buckets and answers the operator:

- ``FeatureWatcher`` mirrors the nodes bucket (``NodeView``: what each registered node
  announces) and the features bucket ``<p>_features`` (what is requested), and says
  ``enabled(name)``: requested AND announced by every registered node. Derived on each
  read, never stored: a node rolled back to a build without the feature turns it off for
  everyone as soon as its node record appears. Gauges ``ba_feature_enabled{feature}``
  and ``ba_feature_requested{feature}`` (0/1) follow it.
- ``FeatureService`` (a node service) answers ``<p>.admin.features.<verb>`` (one node of
  the queue group ``features`` answers): ``list`` (any role that may publish there),
  ``enable`` / ``disable`` (payload ``{"name": ...}``, a signed act of the admin role).
  ``enable`` is refused with ``feature_unsupported`` naming the registered nodes that
  lack the feature. Refusals are counted in
  ``ba_feature_requests_total{verb,outcome}`` (and unauthorized acts in
  ``ba_unauthorized_total{component="features"}``).

``enabled(name)`` at module level asks the watcher of the node started last in this
process (one node per process in a deployment).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge

from broker_agents import codec, identity
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.features import (
    FeatureFlag,
    FeatureState,
    check_enable,
    check_name,
    effective,
    states,
)
from broker_agents.core.identity import Principal, Role, Unauthorized
from broker_agents.kv import open_bucket
from broker_agents.kvmirror import KvMirror
from broker_agents.logging import get_logger
from broker_agents.ratelog import RateLimitedLog
from broker_agents.registry.view import NodeView
from broker_agents.reply import respond
from broker_agents.subjects import Subjects
from broker_agents.transport import call
from broker_agents.versions import announcement
from node.services import BaseService

if TYPE_CHECKING:
    from node.daemon import Node

COMPONENT = "features"
VERBS = ("list", "enable", "disable")
QUEUE = "features"
REFRESH_S = 1.0  # how often the gauges follow the buckets

ENABLED = Gauge("ba_feature_enabled", "1 when the feature is effective cluster-wide "
                "(requested and announced by every registered node)", ["feature"])
REQUESTED = Gauge("ba_feature_requested", "1 when an operator requested the feature",
                  ["feature"])
REQUESTS = Counter("ba_feature_requests_total", "Feature admin requests by verb and outcome "
                   "(ok, or the error code of the refusal)", ["verb", "outcome"])

_log = RateLimitedLog(get_logger(component=COMPONENT))
_current: FeatureWatcher | None = None


class FeatureWatcher:
    """``enabled(name)`` from the nodes and features buckets (see module docstring)."""

    def __init__(self, nodes: NodeView, flags: KvMirror) -> None:
        self.nodes = nodes
        self.flags = flags
        self._task: asyncio.Task[None] | None = None
        self._shown: set[str] = set()

    @classmethod
    async def open(cls, nc: Any, subjects: Subjects, timeout: float = 10.0) -> FeatureWatcher:
        nodes = await NodeView.open(nc, subjects, timeout)
        name = subjects.bucket("features")
        flags = KvMirror(await open_bucket(nc.jetstream(), name), name)
        await flags.start(timeout)
        return cls(nodes, flags)

    def start(self) -> None:
        global _current
        _current = self
        self.refresh()
        self._task = asyncio.create_task(self._follow(), name="features-gauges")

    async def stop(self) -> None:
        global _current
        if _current is self:
            _current = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flags.stop()
        await self.nodes.stop()

    async def sync(self, timeout: float = 2.0) -> None:
        """Catch up with both buckets (before a decision that must see every write)."""
        await asyncio.gather(self.nodes.sync(timeout), self.flags.sync(timeout))

    def announced(self) -> dict[str, tuple[str, ...]]:
        """node id -> the features it announces; a record this build cannot read (a
        newer schema, garbage) announces nothing, so it blocks every feature."""
        return {node_id: (record.features if record is not None else ())
                for node_id, (record, _) in self.nodes.nodes.items()}

    def requested(self) -> dict[str, bool]:
        """feature -> requested; an unreadable flag record counts as not requested."""
        out: dict[str, bool] = {}
        for key, (value, _) in self.flags.values.items():
            try:
                out[key] = FeatureFlag.model_validate(codec.decode(value)).requested
            except Exception:
                _log.warning(("flag", key), "features.unreadable_flag", flag=key)
                out[key] = False
        return out

    def enabled(self, name: str) -> bool:
        """Whether ``name`` is effective for the whole cluster right now."""
        return effective(name, self.requested().get(name, False), self.announced())

    def states(self) -> list[FeatureState]:
        return states(self.requested(), self.announced())

    def refresh(self) -> list[FeatureState]:
        """Recompute every feature's state and set the gauges (a feature no longer seen
        reads 0)."""
        now = self.states()
        seen = {s.name for s in now}
        for s in now:
            ENABLED.labels(s.name).set(1 if s.effective else 0)
            REQUESTED.labels(s.name).set(1 if s.requested else 0)
        for gone in self._shown - seen:
            ENABLED.labels(gone).set(0)
            REQUESTED.labels(gone).set(0)
        self._shown = seen
        return now

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                self.refresh()
            except Exception as exc:  # a gauge must never take the node down
                _log.warning(("refresh",), "features.refresh_failed", error=repr(exc)[:200])


def enabled(name: str) -> bool:
    """Whether ``name`` is effective, as this process's running node sees it (False when
    no node runs here)."""
    return _current.enabled(name) if _current is not None else False


async def request_feature(nc: Any, subjects: Subjects, verb: str, name: str | None = None,
                          timeout: float = 10.0) -> dict[str, Any]:
    """Ask ``<p>.admin.features.<verb>`` as ``nc``'s user (a signed act); the answer, or
    the ``BrokerError`` it carries."""
    payload = {} if name is None else {"name": name}
    return await call(nc, subjects.admin("features", verb), codec.encode(payload), timeout,
                      what="the node")


def _admin(nc: Any, msg: Any, verb: str) -> Principal | None:
    """An enable/disable is a signed act of the admin role, in its own name."""
    principal = identity.authenticate(nc, msg.subject, msg.data, msg.headers,
                                      component=COMPONENT)
    if principal is None:
        if not identity.identity_of(nc).authenticator.required:
            return None  # --insecure: nothing to check
        exc = Unauthorized("unsigned", f"feature {verb} must be a signed act")
    elif principal.role is not Role.ADMIN or principal.acting_for is not None:
        exc = Unauthorized("not_admin", f"feature {verb} is for admins, not "
                           f"{principal.identity!r} ({principal.role})",
                           {"signer": principal.identity})
    else:
        return principal
    identity.refused(COMPONENT, exc, verb=verb)
    raise exc


def _name_of(msg: Any) -> str:
    payload = codec.decode(msg.data, msg.headers)
    if not isinstance(payload, dict):
        raise BrokerError(ErrorCode.VALIDATION, "a feature request must be an object "
                          '{"name": ...}', {"field": "<root>"})
    return check_name(payload.get("name"))  # type: ignore[arg-type]


class FeatureService(BaseService):
    """The node's feature flags: a ``FeatureWatcher`` and the admin operations."""

    name = "features"

    def __init__(self) -> None:
        self.watcher: FeatureWatcher | None = None
        self._sub: Any = None

    async def start(self, node: Node) -> None:
        assert node.nc is not None
        self.node = node
        self.watcher = await FeatureWatcher.open(node.nc, node.subjects)
        self.watcher.start()
        self._sub = await node.nc.subscribe(node.subjects.admin("features", "*"),
                                            queue=QUEUE, cb=self._on_request)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self.watcher is not None:
            await self.watcher.stop()

    def enabled(self, name: str) -> bool:
        return self.watcher is not None and self.watcher.enabled(name)

    async def _on_request(self, msg: Any) -> None:
        nc = self.node.nc
        verb = msg.subject.rsplit(".", 1)[-1]
        as_json = codec.is_json(msg.data, msg.headers)
        try:
            reply: Any = await self._serve(verb, msg)
            REQUESTS.labels(verb if verb in VERBS else "other", "ok").inc()
        except BrokerError as exc:
            REQUESTS.labels(verb if verb in VERBS else "other", exc.code.value).inc()
            if not isinstance(exc, Unauthorized):  # identity logs those
                _log.warning((verb, exc.code), "features.refused", verb=verb[:40],
                             code=exc.code.value, error=exc.message[:200])
            reply = exc.to_payload()
        except Exception as exc:  # NATS trouble, a bug: answered, never a crash
            REQUESTS.labels(verb if verb in VERBS else "other", "internal").inc()
            _log.error((verb, "internal"), "features.failed", error=repr(exc)[:300])
            reply = BrokerError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"[:300]
                                ).to_payload()
        await respond(nc, msg.reply, reply, as_json, component=COMPONENT)

    async def _serve(self, verb: str, msg: Any) -> dict[str, Any]:
        watcher = self.watcher
        assert watcher is not None and self.node.nc is not None
        if verb not in VERBS:
            raise BrokerError(ErrorCode.BAD_REQUEST, f"unknown feature operation {verb!r}: "
                              f"use {', '.join(VERBS)}", {"verb": verb[:40]})
        if verb == "list":
            await watcher.sync()
            return self._listing(watcher)
        principal = _admin(self.node.nc, msg, verb)
        name = _name_of(msg)
        await watcher.sync()
        if verb == "enable":
            check_enable(name, watcher.announced())
        flag = FeatureFlag(name=name, requested=verb == "enable",
                           by=principal.name if principal is not None else None,
                           at=time.time())
        await watcher.flags.kv.put(name, codec.encode(flag))
        await watcher.flags.sync()
        get_logger(component=COMPONENT).info(f"features.{verb}d", feature=name, by=flag.by)
        state = next(s for s in watcher.refresh() if s.name == name)
        return state.as_dict()

    def _listing(self, watcher: FeatureWatcher) -> dict[str, Any]:
        nodes = {}
        for node_id, (record, _) in sorted(watcher.nodes.nodes.items()):
            nodes[node_id] = ({"version": record.version, "schema": record.schema_version,
                               "features": list(record.features)} if record is not None
                              else {"version": None, "schema": None, "features": [],
                                    "unreadable": True})
        build = announcement()
        return {"features": [s.as_dict() for s in watcher.refresh()], "nodes": nodes,
                "answered_by": {"node_id": self.node.id, "version": build["version"],
                                "schema": build["schema_version"],
                                "features": list(build["features"])}}
