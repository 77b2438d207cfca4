"""Typed agent messages and the envelope they travel in.

On the wire an agent message is ``{"type": <name>, "data": {...}, "id": <message id>}``.
The reply is the handler's result as is, or ``{"error": {...}}``. The message id lets an
agent answer a redelivered request from its cache instead of running the handler twice.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from broker_agents import codec
from broker_agents.core.errors import ErrorCode, RemoteProtocolError

# Types and ids are names, not payloads: an agent keeps the last ids it answered (and
# names a type it does not know in its error), so neither may be the size of a message.
MAX_NAME_CHARS = 256

_ids = itertools.count(1)
_id_prefix = f"{os.getpid():x}-{os.urandom(3).hex()}"


def new_message_id() -> str:
    """Unique per process and cheap (no uuid on the hot path)."""
    return f"{_id_prefix}-{next(_ids):x}"


_type_names: dict[type, str] = {}


def message_type(model: type[BaseModel] | BaseModel) -> str:
    """The wire name of a message type: ``message_type`` class attribute or class name."""
    cls = model if isinstance(model, type) else type(model)
    cached = _type_names.get(cls)
    if cached is None:
        name = getattr(cls, "message_type", None)
        cached = _type_names[cls] = name if isinstance(name, str) else cls.__name__
    return cached


# Per model class: its wire name and its serializer's ``to_python`` (what ``model_dump()``
# calls with its defaults), looked up once instead of per message.
_kinds: dict[type, tuple[str, Callable[[Any], Any]]] = {}


def _kind(cls: type) -> tuple[str, Callable[[Any], Any]]:
    if not issubclass(cls, BaseModel):
        raise TypeError(f"an agent message is a pydantic model or a dict, not {cls.__name__}")
    kind = _kinds[cls] = (message_type(cls), cls.__pydantic_serializer__.to_python)
    return kind


def envelope(msg: BaseModel | dict[str, Any], type_name: str | None = None,
             msg_id: str | None = None) -> dict[str, Any]:
    """``{"type", "data", "id"}`` for ``msg``; data in python mode (the codec's default
    hook turns the rest into wire types)."""
    cls = type(msg)
    if cls is dict:
        if type_name is None:
            raise ValueError("a plain dict message needs an explicit type name")
        data: Any = msg
    else:
        name, dump = _kinds.get(cls) or _kind(cls)
        data, type_name = dump(msg), type_name or name
    return {"type": type_name, "data": data, "id": msg_id or f"{_id_prefix}-{next(_ids):x}"}


def envelope_bytes(msg: BaseModel | dict[str, Any], type_name: str | None = None,
                   msg_id: str | None = None, *, as_json: bool = False) -> bytes:
    """``codec.encode(envelope(msg, type_name, msg_id), as_json=as_json)``, byte for byte:
    the sender's hot path. Our own output is not validated again (the model was, when it
    was built; the receiver validates what arrives). ``envelope`` inlined: a call less."""
    cls = type(msg)
    if cls is dict:
        return codec.encode_plain(envelope(msg, type_name, msg_id), as_json)
    name, dump = _kinds.get(cls) or _kind(cls)
    return codec.encode_plain({"type": type_name or name, "data": dump(msg),
                               "id": msg_id or f"{_id_prefix}-{next(_ids):x}"}, as_json)


def open_envelope(payload: Any) -> tuple[str, Any, str | None]:
    """Split an envelope into (type, data, id) or raise a RemoteProtocolError.

    Every received message passes here: a well-formed envelope (exact types, as the
    decoders give) is let through with the fewest checks; anything else takes the full
    checks below, which name what is wrong."""
    if type(payload) is dict:
        type_name = payload.get("type")
        msg_id = payload.get("id")
        if (type(type_name) is str and 0 < len(type_name) <= MAX_NAME_CHARS
                and (msg_id is None or (type(msg_id) is str
                                        and len(msg_id) <= MAX_NAME_CHARS))):
            return type_name, payload.get("data", {}), msg_id
    return _open_checked(payload)


def _open_checked(payload: Any) -> tuple[str, Any, str | None]:
    if not isinstance(payload, dict):
        raise RemoteProtocolError(
            ErrorCode.MALFORMED,
            "an agent message must be an object {\"type\": ..., \"data\": {...}}",
            {"got": type(payload).__name__},
        )
    type_name = payload.get("type")
    if not isinstance(type_name, str) or not 0 < len(type_name) <= MAX_NAME_CHARS:
        raise RemoteProtocolError(
            ErrorCode.MALFORMED, f"field 'type' is required and must be a non-empty string "
            f"of at most {MAX_NAME_CHARS} characters", {"field": "type"},
        )
    msg_id = payload.get("id")
    if msg_id is not None and not (isinstance(msg_id, str) and len(msg_id) <= MAX_NAME_CHARS):
        raise RemoteProtocolError(
            ErrorCode.MALFORMED, f"field 'id' must be a string of at most {MAX_NAME_CHARS} "
            f"characters", {"field": "id"}
        )
    return type_name, payload.get("data", {}), msg_id
