"""Validation errors for variables: every one names the variable, the value and the constraint.

Clients match on ``code == "validation_error"`` and read ``details`` to show which variable
was wrong, with what value, against which rule, so the helpers here keep that shape uniform.
"""

from __future__ import annotations

from typing import Any

from broker_agents.core.errors import BrokerError, ErrorCode


def invalid(variable: str, value: Any, constraint: str, message: str, **extra: Any) -> BrokerError:
    """A VALIDATION error whose details name ``variable``, ``value`` and ``constraint``."""
    details: dict[str, Any] = {"variable": variable, "value": value, "constraint": constraint}
    details.update(extra)
    return BrokerError(ErrorCode.VALIDATION, message, details)


def not_found(what: str, name: str, **extra: Any) -> BrokerError:
    details: dict[str, Any] = {what: name}
    details.update(extra)
    return BrokerError(ErrorCode.NOT_FOUND, f"unknown {what} {name!r}", details)
