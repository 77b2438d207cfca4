"""Feeds the ``ClusterModel`` live from NATS, read-only (the observer role's rights).

- KV mirrors (``kvmirror.KvMirror``, the one mirror mechanism) of the agents, nodes,
  auctions and accounts buckets; a bucket that does not exist yet is opened later;
- one subscription to ``<p>.events.>``: node lifecycle and status
  (``events.node.<event>``, ``events.node.<id>.status``), agent lifecycle, coordination
  runs (``events.coord.<protocol>.finished``), variable changes and adaptation steps;
- with ``prometheus_url``, Prometheus' firing alerts every ``PROMETHEUS_EVERY`` seconds.

A message it cannot decode is counted (``ba_dashboard_events_total{kind="malformed"}``)
and dropped: the dashboard shows what it could read, never stops reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.kv import KeyValue
from prometheus_client import Counter

from broker_agents import codec
from broker_agents.kvmirror import KvMirror
from broker_agents.logging import get_logger
from broker_agents.subjects import Subjects
from node.dashboard.alerts import from_prometheus
from node.dashboard.model import ClusterModel
from node.status import NodeStatus

EVENTS = Counter("ba_dashboard_events_total", "Events and bucket changes the dashboard read",
                 ["kind"])
BUCKETS = ("agents", "nodes", "auctions", "accounts")
OPEN_RETRY_S = 2.0
# The watch delivers changes live; the feed's freshness check (a stream status request)
# only catches a dead watch. A dashboard can afford 2 s instead of the nodes' 0.5 s: it
# is most of what the dashboard adds to the cluster's traffic (measured: node.dashboard.cost).
CHECK_INTERVAL_S = 2.0
STALL_AFTER_S = 4.0
PROMETHEUS_EVERY = 10.0

log = get_logger(component="dashboard")


def _decode(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    value = codec.decode(data, max_depth=codec.STORED_MAX_DEPTH)
    return value if isinstance(value, dict) else None


class _Mirror(KvMirror):
    """A ``KvMirror`` that tells the collector about every applied change."""

    def __init__(self, kv: KeyValue, name: str,
                 changed: Callable[[str, bytes | None], None]) -> None:
        super().__init__(kv, name, check_interval=CHECK_INTERVAL_S, stall_after=STALL_AFTER_S)
        self._on_change = changed

    def apply_entry(self, key: str, value: bytes | None, revision: int) -> None:
        before = self.values.get(key)
        super().apply_entry(key, value, revision)
        after = self.values.get(key)
        if after != before:
            self._on_change(key, after[0] if after else None)

    def reconcile(self, present: dict[str, int], high_water: int) -> None:
        gone = [k for k in self.values if k not in present]
        super().reconcile(present, high_water)
        for key in gone:
            if key not in self.values:
                self._on_change(key, None)


class Collector:
    def __init__(self, nc: NATS, model: ClusterModel, prefix: str = "ba",
                 prometheus_url: str | None = None) -> None:
        self.nc = nc
        self.model = model
        self.subjects = Subjects(prefix)
        self.prometheus_url = prometheus_url
        self.mirrors: dict[str, _Mirror] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Any = None
        self._opened = asyncio.Event()
        self._variables_read: set[str] = set()

    async def opened(self, timeout: float) -> None:
        """Wait until every bucket's mirror has listed its bucket."""
        await asyncio.wait_for(self._opened.wait(), timeout)

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self.subjects.events(">"), cb=self._on_event)
        self._note_nats()
        for concern in BUCKETS:
            self._tasks.append(asyncio.create_task(self._open(concern),
                                                   name=f"dashboard-open-{concern}"))
        if self.prometheus_url:
            self._tasks.append(asyncio.create_task(self._prometheus(),
                                                   name="dashboard-prometheus"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for mirror in self.mirrors.values():
            with contextlib.suppress(Exception):
                await mirror.stop()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    def notify_reconnected(self) -> None:
        self._note_nats()
        for mirror in self.mirrors.values():
            mirror.notify_reconnected()

    def _note_nats(self) -> None:
        info = getattr(self.nc, "_server_info", None) or {}
        url = self.nc.connected_url
        if url is not None:
            text = f"{url.scheme}://{url.hostname}:{url.port}"
            self.model.nats = {text: {"url": text, "connected": self.nc.is_connected,
                                      "version": info.get("version")}}

    # -- buckets --------------------------------------------------------------------

    async def _open(self, concern: str) -> None:
        """Open the bucket's mirror, retrying while it does not exist or JetStream is away
        (the collector starts before or alongside the cluster)."""
        name = self.subjects.bucket(concern)
        while True:
            try:
                kv = await self.nc.jetstream().key_value(name)
                mirror = _Mirror(kv, f"dashboard-{concern}", self._sink(concern))
                await mirror.start()
                self.mirrors[concern] = mirror
                if len(self.mirrors) == len(BUCKETS):
                    self._opened.set()
                return
            except (nats.js.errors.BucketNotFoundError, nats.errors.Error, TimeoutError) as exc:
                log.info("dashboard.bucket_unavailable", bucket=name, error=repr(exc),
                         retry_in_s=OPEN_RETRY_S)
            await asyncio.sleep(OPEN_RETRY_S)  # retry period for a bucket not there yet

    def _sink(self, concern: str) -> Callable[[str, bytes | None], None]:
        return lambda key, value: self._changed(concern, key, value)

    def _changed(self, concern: str, key: str, value: bytes | None) -> None:
        EVENTS.labels(concern).inc()
        now = time.time()
        try:
            record = _decode(value)
        except Exception:
            EVENTS.labels("malformed").inc()
            return
        m = self.model
        if concern == "agents":
            if record is None or "agent_id" not in record:
                m.agents.pop(key, None)
            else:
                m.agents[key] = record
            m.touch("agents", "cluster")
        elif concern == "nodes":
            seen = m.node(key)
            seen.record = record
            if record is None and seen.status is None:
                m.nodes.pop(key, None)
            m.touch("cluster")
        elif concern == "auctions":
            m.auction_record(key, record if record and "auction_id" in record else None, now)
        elif concern == "accounts":
            if record is None or "owner" not in record:
                m.accounts.pop(key, None)
            else:
                m.accounts[key] = record
            m.touch("accounts", "cluster")

    # -- events ---------------------------------------------------------------------

    async def _on_event(self, msg: Msg) -> None:
        tokens = msg.subject.split(".")[2:]  # after <p>.events
        kind = tokens[0] if tokens else "unknown"
        try:
            payload = codec.decode(msg.data, msg.headers, max_size=1024 * 1024)
            if not isinstance(payload, dict):
                raise ValueError("not a map")
        except Exception:
            EVENTS.labels("malformed").inc()
            return
        now = time.time()
        m = self.model
        if kind == "node" and len(tokens) == 3 and tokens[2] == "status":
            try:
                status = NodeStatus.model_validate({**payload, "node_id": tokens[1]})
            except ValueError:
                EVENTS.labels("malformed").inc()
                return
            payload = status.model_dump()
            m.apply_status(payload, now)
            self._read_variables(payload)
            kind = "status"
        elif kind == "node" and len(tokens) == 2:
            m.node_event(str(payload.get("node_id") or "?"), tokens[1], payload, now)
        elif kind == "agent":
            m.touch("agents")
        elif kind == "coord" and len(tokens) == 3 and tokens[2] == "finished":
            m.coord_finished(payload, now)
        elif kind == "variables":
            m.variable_change(payload, now)
        elif kind == "adaptation":
            m.adaptation_step(payload, now)
        EVENTS.labels(kind).inc()

    # -- variables ------------------------------------------------------------------

    def _read_variables(self, status: dict[str, Any]) -> None:
        """Once per variables group (named in a status event): read its current state
        (a linearizable Raft read, which the observer may send), so the page has values
        before the next change event."""
        for group, g in (status.get("groups") or {}).items():
            if g.get("state_machine") == "variables" and group not in self._variables_read:
                self._variables_read.add(group)
                self._tasks.append(asyncio.create_task(self._variables_state(group),
                                                       name=f"dashboard-variables-{group}"))

    async def _variables_state(self, group: str) -> None:
        from broker_agents.raft.client import RaftClient

        try:
            state = await RaftClient(self.nc, group, self.subjects).read({"op": "state"},
                                                                         timeout=5.0)
        except Exception as exc:
            self._variables_read.discard(group)  # try again at the next status event
            log.info("dashboard.variables_unread", group=group, error=repr(exc))
            return
        now = time.time()
        for values in ((state or {}).get("spaces") or {}).values():
            if isinstance(values, dict):
                self.model.variable_change(values, now)

    # -- prometheus -----------------------------------------------------------------

    async def _prometheus(self) -> None:
        import aiohttp

        assert self.prometheus_url is not None
        url = self.prometheus_url.rstrip("/") + "/api/v1/alerts"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while True:
                try:
                    async with http.get(url) as reply:
                        alerts = from_prometheus(await reply.json())
                    if alerts != self.model.prom_alerts:
                        self.model.prom_alerts = alerts
                        self.model.touch("cluster")
                except Exception as exc:
                    log.warning("dashboard.prometheus_unreachable", url=url, error=repr(exc))
                await asyncio.sleep(PROMETHEUS_EVERY)  # polling period
