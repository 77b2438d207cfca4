"""The wire: msgpack between agents, JSON accepted from (and returned to) external clients.

The caller's encoding (``is_json``) is JSON when a ``content-type`` header (any case) names
JSON, msgpack when it names msgpack, and otherwise sniffed: a payload starting with an
object/array (or whitespace) is JSON. Replies use the caller's encoding, so that
``nats req ba.coord.vote '{...}'`` gets JSON back, even when its payload was garbage.

Everything decoded here is untrusted, so ``decode`` bounds it: a payload over ``max_size``
is ``too_large``; nesting deeper than ``max_depth``, a content type we do not speak, and
anything that is not valid JSON/msgpack are ``malformed``. Every failure is a
``RemoteProtocolError``: never a ``RecursionError`` or a library's own exception. The
decoders recurse in C, within bounds of their own (msgpack: 1024 levels; JSON: the
interpreter's recursion limit, caught); our tighter depth bound is then checked without
recursion: a count of the bytes that could open a container (one C-speed pass) rules out
deep nesting for almost every payload, and only above the limit is the value measured.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from itertools import chain, compress, repeat
from operator import is_
from typing import Any

import msgpack
from pydantic import BaseModel

from broker_agents.core.errors import BrokerError, ErrorCode, RemoteProtocolError

CONTENT_TYPE = "content-type"
MSGPACK = "application/msgpack"
JSON = "application/json"
# How deep a decoded payload may nest. Request handlers keep this default; peers and
# stored records that wrap request data in a few levels of their own may pass
# ``STORED_MAX_DEPTH``, so what a request was allowed to carry can always be read back.
MAX_DEPTH = 64
STORED_MAX_DEPTH = 2 * MAX_DEPTH
# NATS's own ceiling on max_payload: nothing larger can arrive. Request handlers pass
# their configured, lower limit.
MAX_SIZE = 64 * 1024 * 1024
_JSON_START = frozenset(b"{[ \t\r\n")
_ALL_BYTES = bytes(range(256))
# Every byte but the ones that may open a container: deleting them counts the openings.
_NOT_JSON_OPENING = bytes(b for b in _ALL_BYTES if b not in b"[{")
_NOT_MSGPACK_OPENING = bytes(b for b in _ALL_BYTES
                             if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF))
_CONTAINERS = frozenset((dict, list))


class EncodeError(BrokerError, ValueError):
    """A value the wire cannot carry (out-of-range integer, lone surrogate, foreign type,
    nesting past the encoder's limit). A ValueError too, for callers that catch those."""


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


def content_type(headers: Mapping[str, str] | None) -> str | None:
    """The ``content-type`` header's value, lower-cased, whatever the key's case; None
    when absent or empty."""
    if not headers:
        return None
    value = headers.get(CONTENT_TYPE) or headers.get("Content-Type")
    if value is None:
        value = next((v for k, v in headers.items()
                      if isinstance(k, str) and k.lower() == CONTENT_TYPE), None)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().lower()


def is_json(data: bytes, headers: Mapping[str, str] | None = None) -> bool:
    """The caller's encoding: True for JSON. Never raises, whatever the input."""
    ctype = content_type(headers) if headers else None
    if ctype is not None:
        if "json" in ctype:
            return True
        if "msgpack" in ctype:
            return False
    return bool(data) and data[0] in _JSON_START


_local = threading.local()


def _packer() -> msgpack.Packer:
    """One reusable Packer per thread: building one per message costs more than packing."""
    try:
        packer: msgpack.Packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(default=_default, use_bin_type=True)
    return packer


def encode(obj: Any, *, as_json: bool = False) -> bytes:
    """Encode for the wire, or raise ``EncodeError`` (code ``internal``)."""
    return encode_plain(_plain(obj), as_json)


def encode_plain(obj: Any, as_json: bool = False) -> bytes:
    """``encode`` for a value that is not itself a model (a model inside still is
    encoded, by the default hook): one call less on a sender's hot path."""
    try:
        if as_json:
            return json.dumps(obj, default=_default, separators=(",", ":")).encode()
        packed: bytes = _packer().pack(obj)
        return packed
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise EncodeError(ErrorCode.INTERNAL, f"cannot encode as "
                          f"{'JSON' if as_json else 'msgpack'}: {type(exc).__name__}: {exc}",
                          {"type": type(obj).__name__}) from None


def decode(data: bytes, headers: Mapping[str, str] | None = None,
           as_json: bool | None = None, *, max_depth: int | None = MAX_DEPTH,
           max_size: int = MAX_SIZE) -> Any:
    """Decode an untrusted payload or raise ``RemoteProtocolError`` (``malformed`` or
    ``too_large``). ``as_json`` overrides the caller's encoding read from the headers.
    ``max_depth=None`` keeps only the decoders' own bounds: for traffic between members
    whose content was depth-checked on the way in, where measuring would cost."""
    if len(data) > max_size:
        raise RemoteProtocolError(
            ErrorCode.TOO_LARGE, f"payload of {len(data)} bytes exceeds {max_size}",
            {"size": len(data), "max": max_size})
    if headers:
        _check_content_type(headers)
    if as_json is None:
        as_json = is_json(data, headers)
    try:
        value = (json.loads(data) if as_json
                 else msgpack.unpackb(data, raw=False, strict_map_key=False))
    except (RecursionError, msgpack.StackError):
        raise _too_deep(max_depth, len(data)) from None
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, UnicodeDecodeError,
            TypeError, MemoryError) as exc:
        raise RemoteProtocolError(
            ErrorCode.MALFORMED,
            f"payload is not valid {'JSON' if as_json else 'msgpack'}: "
            f"{type(exc).__name__}: {str(exc)[:200]}",
            {"size": len(data)},
        ) from None
    # Each level takes a byte at least: a short payload cannot nest too deep.
    if max_depth is not None and len(data) > max_depth and (
            _openings(data, as_json) > max_depth and _value_depth(value, max_depth) > max_depth):
        raise _too_deep(max_depth, len(data))
    return value


def _openings(data: bytes, as_json: bool) -> int:
    """How many bytes could open a container: a bound on the depth, in one C-speed pass."""
    return len(data.translate(None, _NOT_JSON_OPENING if as_json else _NOT_MSGPACK_OPENING))


def _too_deep(max_depth: int | None, size: int) -> RemoteProtocolError:
    limit = "the decoder allows" if max_depth is None else f"{max_depth} levels"
    return RemoteProtocolError(ErrorCode.MALFORMED, f"payload nests deeper than {limit}",
                               {"max_depth": max_depth, "size": size})


def _check_content_type(headers: Mapping[str, str]) -> None:
    ctype = content_type(headers)
    if ctype is not None and "json" not in ctype and "msgpack" not in ctype:
        raise RemoteProtocolError(
            ErrorCode.MALFORMED, f"unsupported content-type {ctype[:100]!r}: send "
            f"{JSON} or {MSGPACK}", {"content_type": ctype[:100], "supported": [JSON, MSGPACK]})


def _value_depth(value: Any, limit: int) -> int:
    """How deep a decoded value nests, a level at a time and without recursion; stops
    past ``limit``. The loops run in C (map/compress/chain): this is on the path of every
    large msgpack message. msgpack decodes arrays to lists and refuses them as map keys."""
    level = [value] if type(value) in _CONTAINERS else []
    depth = 0
    while level and depth <= limit:
        depth += 1
        types = list(map(type, level))
        dicts = compress(level, map(is_, types, repeat(dict)))
        lists = compress(level, map(is_, types, repeat(list)))
        kids = [*chain.from_iterable(map(dict.values, dicts)), *chain.from_iterable(lists)]
        level = list(compress(kids, map(_CONTAINERS.__contains__, map(type, kids))))
    return depth
