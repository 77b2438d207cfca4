"""The one reply path: every request gets an answer, in the caller's encoding.

A request handler decides *what* to answer: a result, or a ``BrokerError``. This module
decides *how*: encoded like the request (``codec.is_json``); replaced by an ``internal``
error when the result cannot be encoded, or by ``too_large`` when it would exceed the
server's max payload (the server would refuse it, and the caller would hear nothing);
each replacement counted (``ba_replies_refused_total{component,reason}``) and logged; and
a publish that still fails (connection gone) is logged, never raised into the handler.
The answer goes out through ``nc.publish``, or through the ``publish`` it is handed (a
fan-out ask's ``broker_agents.fanout.ReplySink``, which batches a node's answers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from broker_agents import codec, identity
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.logging import get_logger
from broker_agents.metrics import REPLIES_REFUSED
from broker_agents.ratelog import RateLimitedLog

# nats-py's default until the server's INFO says otherwise (the server's default too).
DEFAULT_MAX_PAYLOAD = 1024 * 1024
# How much of an error's message is kept when its details cannot be encoded.
_ERROR_ROOM = 512

# ``nc.publish``'s shape: (subject, payload, reply="", headers=None).
Publish = Callable[..., Awaitable[None]]

# A closed connection fails every reply in flight: one line per component and window.
log = RateLimitedLog(get_logger(component="reply"))


def encode_reply(payload: Any, as_json: bool, max_payload: int
                 ) -> tuple[bytes, ErrorCode | None]:
    """The bytes to answer with, and why the payload was replaced (None: it was not)."""
    try:
        data = codec.encode(payload, as_json=as_json)
    except codec.EncodeError as exc:
        return _encode_error(exc, as_json), ErrorCode.INTERNAL
    if len(data) > max_payload:
        err = BrokerError(
            ErrorCode.TOO_LARGE,
            f"the reply of {len(data)} bytes exceeds the server's max payload of "
            f"{max_payload} bytes", {"size": len(data), "max": max_payload})
        return _encode_error(err, as_json), ErrorCode.TOO_LARGE
    return data, None


def _encode_error(err: BrokerError, as_json: bool) -> bytes:
    try:
        return codec.encode(err.to_payload(), as_json=as_json)
    except codec.EncodeError:  # details of a foreign type: the code and message still go
        plain = BrokerError(err.code, err.message[:_ERROR_ROOM])
        return codec.encode(plain.to_payload(), as_json=as_json)


def max_payload_of(nc: Any) -> int:
    """The server's max payload as the connection learnt it (nats-py's default before)."""
    value = getattr(nc, "max_payload", DEFAULT_MAX_PAYLOAD)
    return value if type(value) is int and value > 0 else DEFAULT_MAX_PAYLOAD


async def respond(nc: Any, subject: str | None, payload: Any, as_json: bool, *,
                  component: str, signed_as: str | None = None,
                  publish: Publish | None = None) -> bytes | None:
    """Answer ``subject`` with ``payload`` (a result or an error payload). Returns the
    bytes sent, or None when there was nobody to answer or the publish failed.
    ``signed_as``: the answer is an act of that agent's (``broker_agents.identity``);
    ``publish``: sends it instead of ``nc.publish``."""
    if not subject:
        return None
    data, refused = encode_reply(payload, as_json, max_payload_of(nc))
    if refused is not None:
        REPLIES_REFUSED.labels(component, refused.value).inc()
        log.warning((component, refused.value), "reply replaced by an error",
                    component=component, reason=refused.value)
    headers = identity.act_headers(nc, subject, data, signed_as) if signed_as else None
    try:
        await (publish or nc.publish)(subject, data, headers=headers)
    except Exception as exc:  # closed or draining connection: nobody to tell but the log
        REPLIES_REFUSED.labels(component, "publish_failed").inc()
        log.warning((component, "publish_failed"), "reply not sent", component=component,
                    error=repr(exc))
        return None
    return data
