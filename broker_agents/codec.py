"""The wire: msgpack between agents, JSON accepted from (and returned to) external clients.

A payload is JSON when the ``content-type`` header says so, or when it sniffs as a JSON
object/array; otherwise it is msgpack. Replies use the encoding of the request so that
``nats req ba.coord.vote '{...}'`` gets JSON back.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

import msgpack
from pydantic import BaseModel

from broker_agents.core.errors import ErrorCode, RemoteProtocolError

CONTENT_TYPE = "content-type"
MSGPACK = "application/msgpack"
JSON = "application/json"
_JSON_START = frozenset(b"{[ \t\r\n")


def _plain(obj: Any) -> Any:
    # Cheap exact-type test first: pydantic's isinstance check is slow on the hot path.
    if type(obj) in (dict, list, bytes, str):
        return obj
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    return obj


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def is_json(data: bytes, headers: Mapping[str, str] | None = None) -> bool:
    if headers:
        ctype = headers.get(CONTENT_TYPE) or headers.get("Content-Type")
        if ctype:
            return "json" in ctype
    return bool(data) and data[0] in _JSON_START


_local = threading.local()


def _packer() -> msgpack.Packer:
    """One reusable Packer per thread: building one per message costs more than packing."""
    packer = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(default=_default, use_bin_type=True)
    return packer


def encode(obj: Any, *, as_json: bool = False) -> bytes:
    if as_json:
        return json.dumps(_plain(obj), default=_default, separators=(",", ":")).encode()
    packed: bytes = _packer().pack(_plain(obj))
    return packed


def decode(data: bytes, headers: Mapping[str, str] | None = None,
           as_json: bool | None = None) -> Any:
    """Decode a payload or raise ``RemoteProtocolError`` (code ``malformed``)."""
    try:
        if as_json if as_json is not None else is_json(data, headers):
            return json.loads(data)
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            UnicodeDecodeError, TypeError) as exc:
        raise RemoteProtocolError(
            ErrorCode.MALFORMED, f"payload is neither valid msgpack nor JSON: {exc}",
            {"size": len(data)},
        ) from exc
