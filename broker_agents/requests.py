"""A request body as a pydantic model, or the structured error that names its first fault.

One home for what the privileged request subjects (membership, drain, handover) do with
what arrives: decode in the caller's encoding, validate, and turn any failure into a
``BrokerError`` the caller is answered with (``malformed``, ``validation_error`` naming
the field, ``too_large``). A decoder's surprise (``RecursionError``) is answered too.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from broker_agents.codec import decode
from broker_agents.core.errors import BrokerError, ErrorCode

M = TypeVar("M", bound=BaseModel)


def parse_body(data: bytes, headers: Any, as_json: bool, model: type[M],
               max_bytes: int | None = None) -> M:
    if max_bytes is not None and len(data) > max_bytes:
        raise BrokerError(ErrorCode.TOO_LARGE, f"request of {len(data)} bytes (max "
                          f"{max_bytes})", {"size": len(data)})
    try:
        body = decode(data, headers, as_json=as_json)
    except BrokerError:
        raise
    except Exception as exc:  # RecursionError, a decoder's surprise: still answered
        raise BrokerError(ErrorCode.MALFORMED, f"undecodable payload: {type(exc).__name__}",
                          {"size": len(data)}) from None
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        raise BrokerError(ErrorCode.VALIDATION, f"{where}: {first['msg']}"[:300],
                          {"field": where}) from None
