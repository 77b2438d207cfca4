"""Turn untrusted input into records, with errors that name the offending fields.

Pydantic finds the problems; this module words them: every missing required field is
listed in one error, an unknown health/state names the value and the allowed ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.registry.record import (
    AGENT_REQUIRED,
    NODE_REQUIRED,
    AgentRecord,
    Health,
    Lifecycle,
    NodeRecord,
)
from broker_agents.core.versioning import refusal

M = TypeVar("M", bound=BaseModel)

_ENUMS: dict[str, list[str]] = {
    "health": [h.value for h in Health],
    "state": [s.value for s in Lifecycle],
    "prior_health": [h.value for h in Health],
}


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _problem(err: Mapping[str, Any]) -> dict[str, Any]:
    field = _loc(tuple(err["loc"]))
    last = str(err["loc"][-1]) if err["loc"] else ""
    problem: dict[str, Any] = {"field": field, "type": err["type"]}
    if err["type"] == "enum" and last in _ENUMS:
        allowed = _ENUMS[last]
        problem["value"] = err.get("input")
        problem["allowed"] = allowed
        problem["message"] = (
            f"invalid {last} {err.get('input')!r}: allowed values are {', '.join(allowed)}"
        )
    else:
        msg = str(err["msg"]).removeprefix("Value error, ")
        problem["message"] = msg if not field or msg.startswith(field) else f"{field}: {msg}"
        if "input" in err and err["type"] != "missing":
            value = err["input"]
            if isinstance(value, str | int | float | bool) or value is None:
                problem["value"] = value
    return problem


def _validate(model: type[M], data: Any, required: tuple[str, ...], what: str) -> M:
    if isinstance(data, model):
        return data
    if not isinstance(data, Mapping):
        raise BrokerError(
            ErrorCode.VALIDATION,
            f"{what} must be an object, got {type(data).__name__}",
            {"errors": [{"field": "", "message": "not an object"}]},
        )
    missing = [name for name in required if data.get(name) is None]
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        if (newer := refusal(exc)) is not None:
            raise newer from None
        problems = [
            _problem(e) for e in exc.errors()
            if e["type"] != "missing" and _loc(tuple(e["loc"])) not in missing
        ]
        messages: list[str] = []
        if missing:
            messages.append(f"missing required fields: {', '.join(missing)}")
        messages.extend(p["message"] for p in problems)
        details: dict[str, Any] = {"errors": problems}
        if missing:
            details["missing"] = missing
        if len(problems) == 1 and not missing:
            details.update({k: v for k, v in problems[0].items() if k != "message"})
        raise BrokerError(
            ErrorCode.VALIDATION, f"invalid {what}: " + "; ".join(messages), details
        ) from None


def validate_agent(data: Any) -> AgentRecord:
    """An ``AgentRecord`` from a mapping, or ``BrokerError(validation_error)``."""
    return _validate(AgentRecord, data, AGENT_REQUIRED, "agent record")


def validate_node(data: Any) -> NodeRecord:
    """A ``NodeRecord`` from a mapping, or ``BrokerError(validation_error)``."""
    return _validate(NodeRecord, data, NODE_REQUIRED, "node record")
