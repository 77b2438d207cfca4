"""What arrives on a member's subjects, parsed or refused.

Client requests (``<p>.raft.<group>[.<member>].propose|read``) are
``{"command": ..., "request_id": "..."}`` or ``{"query": ...}`` (JSON or msgpack). Whatever
fails -- a payload that is not JSON or msgpack, one nested too deeply for the decoder
(``RecursionError``), a missing field, a relay count header that is not a small number --
becomes a ``BrokerError``, which the driver answers in the caller's encoding. A proposal
request may also be a batch of proposals (``{"batch": [...]}``, see ``batch.py``).

Peer payloads (``<p>.raft.<group>.<member>``) are a msgpack list of wire messages
(``core/raft/wire.py``), taken whole or not at all; peers never speak JSON, which could
carry integers past 64 bits and lone surrogates into a log.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from broker_agents.codec import decode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.raft.effects import RefusalReason
from broker_agents.core.raft.messages import ForwardProposals, Message
from broker_agents.core.raft.wire import decode_message
from broker_agents.raft.batch import BATCH, parse_batch
from broker_agents.raft.commands import CommandCheck

HOPS = "ba-raft-hops"
"""How often a proposal was relayed already (set by members when they relay one)."""

_MAX_HOPS_DIGITS = 4


def decode_request(data: bytes, as_json: bool,
                   headers: Mapping[str, str] | None = None) -> Any:
    """The decoded body of a client request; raises ``BrokerError`` (``malformed``) for
    anything undecodable, an unsupported content type included."""
    try:
        return decode(data, headers, as_json=as_json)
    except BrokerError:
        raise
    except RecursionError:
        raise BrokerError(ErrorCode.MALFORMED, "the payload nests too deeply",
                          {"size": len(data)}) from None
    except Exception as exc:  # a decoder's surprise must still be answered
        raise BrokerError(ErrorCode.MALFORMED, f"undecodable payload: {type(exc).__name__}",
                          {"size": len(data)}) from None


def parse_request(data: bytes, as_json: bool, field: str,
                  headers: Mapping[str, str] | None = None) -> tuple[Any, str | None]:
    """``(body[field], request_id)``; raises ``BrokerError`` (``malformed`` or
    ``bad_request``) for anything else, an unsupported content type included."""
    return _field(decode_request(data, as_json, headers), field)


def _field(body: Any, field: str) -> tuple[Any, str | None]:
    if type(body) is not dict or field not in body:
        raise BrokerError(ErrorCode.BAD_REQUEST, f"request needs a {field!r} field")
    rid = body.get("request_id")
    if rid is not None and type(rid) is not str:
        raise BrokerError(ErrorCode.BAD_REQUEST, "request_id must be a string")
    return body[field], rid


def parse_proposal(data: bytes, headers: Mapping[str, str] | None, as_json: bool,
                   check: CommandCheck) -> tuple[Any, str, int]:
    """``(command, request_id, relay count)`` of a proposal the log can store (a request
    without an id gets a fresh one); raises ``BrokerError``."""
    items, hops, _batch = parse_proposals(data, headers, as_json, check)
    command, rid = items[0]
    return command, rid, hops


def parse_proposals(data: bytes, headers: Mapping[str, str] | None, as_json: bool,
                    check: CommandCheck) -> tuple[list[tuple[Any, str]], int, bool]:
    """``([(command, request_id)], relay count, is a batch)`` of a proposal request: one
    proposal, or a batch of them (``batch.py``); raises ``BrokerError``."""
    body = decode_request(data, as_json, headers)
    hops = relay_count(headers)
    if type(body) is dict and BATCH in body and "command" not in body:
        return parse_batch(body[BATCH], len(data), as_json, check), hops, True
    command, rid = _field(body, "command")
    check.decoded(command, len(data), from_json=as_json)
    if rid is None:
        return [(command, uuid.uuid4().hex)], hops, False
    check.request_id(rid, valid_utf8=not as_json)
    return [(command, rid)], hops, False


def relay_count(headers: Mapping[str, str] | None) -> int:
    """The ``HOPS`` header: absent means 0; anything but a small number is malformed."""
    raw = headers.get(HOPS) if headers else None
    if raw is None:
        return 0
    if not (raw.isascii() and raw.isdigit() and len(raw) <= _MAX_HOPS_DIGITS):
        raise BrokerError(ErrorCode.MALFORMED,
                          f"header {HOPS} must be a small non-negative integer",
                          {"header": HOPS})
    return int(raw)


def decode_peer_payload(data: bytes, check: CommandCheck) -> tuple[list[Message], list[str]]:
    """The messages of a peer payload, and the sender of each forwarded command dropped
    because the log could not store it. Raises ``BrokerError`` whose
    ``details["reason"]`` is a ``RefusalReason`` value.

    Depth is left to msgpack's own bound: every command was depth-checked where it came
    in, and measuring every append on every follower would cost on the commit path.
    """
    try:
        batch = decode(data, as_json=False, max_depth=None)
    except BrokerError as exc:
        raise BrokerError(exc.code, exc.message,
                          {**exc.details, "reason": RefusalReason.MALFORMED.value}) from None
    except Exception as exc:  # a decoder's surprise
        raise BrokerError(ErrorCode.MALFORMED, f"undecodable: {type(exc).__name__}",
                          {"reason": RefusalReason.MALFORMED.value}) from None
    if type(batch) is not list:
        raise BrokerError(ErrorCode.MALFORMED, "peer payload must be a list",
                          {"reason": RefusalReason.MALFORMED.value})
    messages = [decode_message(item) for item in batch]
    dropped: list[str] = []
    for k, m in enumerate(messages):
        if type(m) is ForwardProposals:
            items = tuple(item for item in m.items if check.forwarded(*item))
            if len(items) < len(m.items):
                dropped += [m.src] * (len(m.items) - len(items))
                messages[k] = ForwardProposals(m.term, m.src, m.dst, items)
    return messages, dropped
