"""Error types shared by every layer, and their wire form.

Every exception the project raises derives from ``BrokerError`` and carries an
``ErrorCode`` member that callers branch on (never the message text). Following h11, a
protocol error says whose fault it is: ``LocalProtocolError`` when our side broke the
protocol (a bug or misuse of an API), ``RemoteProtocolError`` when a peer sent garbage.
Errors with one fixed meaning (a bad config, a process that would not start) subclass
``CodedError`` and are raised with just a message.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    MALFORMED = "malformed"
    VALIDATION = "validation_error"
    UNKNOWN_TYPE = "unknown_type"
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    CONFLICT = "conflict"
    TIMEOUT = "timeout"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    UNAVAILABLE = "unavailable"
    NOT_LEADER = "not_leader"
    HANDLER_ERROR = "handler_error"
    INTERNAL = "internal"
    UNKNOWN_PROTOCOL = "unknown_protocol"
    TOO_FEW_PARTICIPANTS = "too_few_participants"
    NO_AGENTS = "no_agents"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    BUDGET_EXCEEDED = "budget_exceeded"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    CLOSED = "closed"
    CONFIG = "config_error"
    NOT_IMPORTABLE = "not_importable"
    START_FAILED = "start_failed"
    RESTART_LIMIT = "restart_limit"
    UNAUTHORIZED = "unauthorized"  # an act not signed by the principal it names
    RATE_LIMITED = "rate_limited"  # a requester or agent over its quota: retry later
    FORBIDDEN = "forbidden"  # the connection's role may not (a NATS permissions violation)
    UNSUPPORTED_VERSION = "unsupported_version"  # a record/message of a newer schema (v)
    FEATURE_UNSUPPORTED = "feature_unsupported"  # a feature some node does not announce
    # A code this version does not know (a newer peer's); the text is kept in details.
    UNKNOWN = "unknown"


# Where a code this version does not know is kept, so it can still be shown and logged.
WIRE_CODE = "wire_code"


class BrokerError(Exception):
    """An error that crosses the wire as ``{"error": {"code", "message", "details"}}``."""

    def __init__(
        self, code: ErrorCode, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.details: dict[str, Any] = details or {}
        try:
            self.code = ErrorCode(code)
        except ValueError:  # decoded from a newer peer: keep its text beside UNKNOWN
            self.code = ErrorCode.UNKNOWN
            self.details = {**self.details, WIRE_CODE: str(code)}
        self.message = message

    def to_payload(self) -> dict[str, Any]:
        return {"error": {"code": self.code.value, "message": self.message,
                          "details": self.details}}

    @classmethod
    def from_payload(cls, payload: Any) -> BrokerError | None:
        """The error a reply carries, or None when the reply is a result."""
        if not isinstance(payload, dict) or set(payload) != {"error"}:
            return None
        err = payload["error"]
        if not isinstance(err, dict) or "code" not in err:
            return None
        details = err.get("details")
        return BrokerError(
            err["code"],  # an unknown code becomes ErrorCode.UNKNOWN in __init__
            str(err.get("message", "")),
            details if isinstance(details, dict) else {},
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value!r}, {self.message!r}, {self.details!r})"


class CodedError(BrokerError):
    """A ``BrokerError`` whose class fixes the code: ``ConfigError("why")``."""

    CODE: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(self.CODE, message, details)


class LocalProtocolError(BrokerError):
    """We broke the protocol: a bug on our side or a misuse of an API."""


class RemoteProtocolError(BrokerError):
    """A peer broke the protocol: garbage, forgery, or a message that cannot be valid."""
