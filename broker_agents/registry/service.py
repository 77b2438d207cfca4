"""Registry queries over NATS request/reply, for clients that are not Python.

Subjects ``<p>.registry.{get,list,count,find,query}``, served from the local view by
every node in one queue group. A request is JSON or msgpack (an empty payload counts as
``{}`` and is answered in JSON); the reply uses the request's encoding and is a result
or ``{"error": {"code", "message", "details"}}``. Nothing a client sends can stop it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from broker_agents.codec import decode, is_json
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.registry.query import parse_criteria
from broker_agents.core.registry.record import AgentRecord
from broker_agents.metrics import REPLIES_REFUSED
from broker_agents.registry import metrics
from broker_agents.registry.view import LocalView
from broker_agents.reply import encode_reply, max_payload_of
from broker_agents.subjects import Subjects

log = structlog.get_logger()

OPS = ("get", "list", "count", "find", "query")
QUEUE = "ba-registry"


def _dump(records: list[AgentRecord]) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in records]


def _limit(request: Mapping[str, Any]) -> tuple[int, int | None]:
    offset, limit = request.get("offset", 0), request.get("limit")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise BrokerError(ErrorCode.BAD_REQUEST, "offset must be an integer >= 0",
                          {"offset": offset})
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                              or limit < 0):
        raise BrokerError(ErrorCode.BAD_REQUEST, "limit must be an integer >= 0",
                          {"limit": limit})
    return offset, limit


def _page(records: list[AgentRecord], request: Mapping[str, Any]) -> dict[str, Any]:
    offset, limit = _limit(request)
    end = None if limit is None else offset + limit
    return {"agents": _dump(records[offset:end]), "count": len(records)}


FIND_FIELDS = {"capability": "capabilities", "node_id": "node_id", "health": "health"}


class RegistryService:
    """Answers registry requests from a ``LocalView``."""

    def __init__(self, nc: Any, view: LocalView, subjects: Subjects | None = None,
                 queue: str = QUEUE) -> None:
        self.nc = nc
        self.view = view
        self.subjects = subjects or Subjects()
        self.queue = queue
        self._subs: list[Any] = []
        self._handlers: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "get": self._get, "list": self._list, "count": self._count,
            "find": self._find, "query": self._query,
        }

    async def start(self) -> None:
        for op in OPS:
            async def cb(msg: Any, op: str = op) -> None:
                # Not msg.respond(): nats-py echoes the request's headers into the reply, so
                # a request carrying "Status: 503" would make its caller see no responders.
                if msg.reply:
                    await self.nc.publish(msg.reply, self.handle(op, msg.data, msg.headers))
            sub = await self.nc.subscribe(self.subjects.registry(op), queue=self.queue, cb=cb)
            self._subs.append(sub)

    async def stop(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:
                log.debug("registry.service.unsubscribe_failed", error=repr(exc))

    def handle(self, op: str, data: bytes, headers: Mapping[str, str] | None = None) -> bytes:
        """One request in, one encoded reply out; never raises."""
        as_json = not data or is_json(data, headers)
        try:
            request = decode(data, headers) if data else {}
            if not isinstance(request, Mapping):
                raise BrokerError(ErrorCode.BAD_REQUEST, "request must be an object",
                                  {"type": type(request).__name__})
            handler = self._handlers.get(op)
            if handler is None:
                raise BrokerError(ErrorCode.BAD_REQUEST, f"unknown registry op {op!r}",
                                  {"allowed": list(OPS)})
            reply: dict[str, Any] = handler(request)
            metrics.REQUESTS.labels(op, "ok").inc()
        except BrokerError as err:
            metrics.REQUESTS.labels(op, err.code).inc()
            reply = err.to_payload()
        except Exception as exc:  # a bug must not take the service down
            log.error("registry.service.failed", op=op, error=repr(exc))
            metrics.REQUESTS.labels(op, ErrorCode.INTERNAL).inc()
            reply = BrokerError(ErrorCode.INTERNAL, "internal error", {}).to_payload()
        data, refused = encode_reply(reply, as_json, max_payload_of(self.nc))
        if refused is not None:  # e.g. a not_found that echoes a huge agent_id
            REPLIES_REFUSED.labels("registry", refused.value).inc()
            log.warning("registry.service.reply_replaced", op=op, reason=refused.value)
        return data

    def _get(self, request: Mapping[str, Any]) -> dict[str, Any]:
        agent_id = request.get("agent_id")
        if not isinstance(agent_id, str):
            raise BrokerError(ErrorCode.BAD_REQUEST, "agent_id (a string) is required", {})
        record = self.view.get(agent_id)
        if record is None:
            raise BrokerError(ErrorCode.NOT_FOUND, f"agent {agent_id!r} is not registered",
                              {"agent_id": agent_id})
        return {"agent": record.model_dump(mode="json")}

    def _list(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return _page(self.view.all_agents(), request)

    def _count(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return {"count": self.view.count(parse_criteria(request.get("criteria")))}

    def _find(self, request: Mapping[str, Any]) -> dict[str, Any]:
        criteria = [{"field": field, "op": "eq", "value": request[key]}
                    for key, field in FIND_FIELDS.items() if key in request]
        if not criteria:
            raise BrokerError(ErrorCode.BAD_REQUEST,
                              "find needs at least one of capability, node_id, health",
                              {"allowed": list(FIND_FIELDS)})
        return _page(self.view.query(criteria), request)

    def _query(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return _page(self.view.query(parse_criteria(request.get("criteria"))), request)
