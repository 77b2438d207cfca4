"""One home for the schema version of every record and message (issue 18, item 4).

Why: a rolling upgrade runs old and new builds side by side. A newer node adds a field; an
older node that reads, modifies and writes the record back must not drop it, and must not
half-read what it truly cannot understand.

The rule (README "Versions and upgrades"):

- ``SCHEMA_VERSION`` is the wire/record schema this build writes, in the field ``v``.
- An *additive* change (a new optional field) keeps the version: readers tolerate and
  preserve unknown fields (``VersionedModel``, ``extra="allow"``), so an older reader
  carries the newer field through read -> ``model_copy(update=...)`` -> write.
- A change an older reader cannot read (a field changes meaning or type, a required field
  appears) bumps ``SCHEMA_VERSION``. A reader refuses a ``v`` above what it reads with
  ``ErrorCode.UNSUPPORTED_VERSION`` naming the version found and the highest readable.
- A record or message without ``v`` was written before versioning: it is version 1
  (``LEGACY_VERSION``). While ``SCHEMA_VERSION == LEGACY_VERSION`` the field's default
  serves both; the first bump must map an absent ``v`` to ``LEGACY_VERSION`` on reads
  (``read_version``) and migrate it.
- Public client requests still refuse unknown top-level fields at their entry point
  (``refuse_unknown``): a user's typo is caught, and a newer client is told plainly that
  this node does not know an option rather than having it silently ignored. The model
  itself is a ``VersionedModel``, because a request is also stored (inside an auction
  record) where a newer node's option must survive an older node's takeover.
  ``StrictVersionedModel`` is for a request that is never stored.

Pure: no IO, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from broker_agents.core.errors import BrokerError, ErrorCode

SCHEMA_VERSION = 1
"""The schema this build writes and the highest it reads."""

LEGACY_VERSION = 1
"""What a record or message without ``v`` (written before versioning) is."""

VERSION_FIELD = "v"

_ERROR_TYPE = "unsupported_version"


def unsupported(found: object, readable: int = SCHEMA_VERSION) -> BrokerError:
    """The structured refusal of a record or message this build cannot read."""
    return BrokerError(
        ErrorCode.UNSUPPORTED_VERSION,
        f"schema version {found!r} is not readable here: the highest this build reads "
        f"is {readable}",
        {"field": VERSION_FIELD, "found": found, "readable": readable},
    )


def read_version(data: Mapping[str, Any], readable: int = SCHEMA_VERSION) -> int:
    """The schema version of raw ``data`` (absent: ``LEGACY_VERSION``), or
    ``BrokerError(UNSUPPORTED_VERSION)`` when it is not an int in 1..``readable``."""
    found = data.get(VERSION_FIELD, LEGACY_VERSION)
    if isinstance(found, bool) or not isinstance(found, int) or not 1 <= found <= readable:
        raise unsupported(found, readable)
    return found


def _check(value: int) -> int:
    if not 1 <= value <= SCHEMA_VERSION:
        raise PydanticCustomError(
            _ERROR_TYPE,
            "schema version {found} is not readable here: the highest this build reads "
            "is {readable}",
            {"found": value, "readable": SCHEMA_VERSION},
        )
    return value


def refusal(exc: ValidationError) -> BrokerError | None:
    """The ``UNSUPPORTED_VERSION`` error when ``exc`` is a version refusal, else None.

    A too-new ``v`` fails validation as a whole (never half-read), so every existing
    ``except ValidationError`` already refuses it; call this where the refusal is worded
    to give the caller the specific code."""
    for err in exc.errors(include_url=False):
        if err["type"] == _ERROR_TYPE:
            ctx = err.get("ctx") or {}
            return unsupported(ctx.get("found", err.get("input")),
                               int(ctx.get("readable", SCHEMA_VERSION)))
    return None


class OpenModel(BaseModel):
    """A nested part of a record or message: unknown fields are kept, not dropped."""

    model_config = ConfigDict(extra="allow")


class VersionedModel(OpenModel):
    """A record or node-to-node/agent-to-agent message: ``v`` plus unknown fields kept.

    ``model_copy(update=...)`` and ``model_dump()`` carry the extras (pydantic stores them
    in ``__pydantic_extra__``), so read -> update -> write preserves a newer writer's
    fields. Subclasses may add ``frozen=True`` to their config."""

    v: SkipJsonSchema[int] = SCHEMA_VERSION  # optional for clients: not in published schemas

    @field_validator(VERSION_FIELD)
    @classmethod
    def _readable(cls, value: int) -> int:
        return _check(value)


class StrictVersionedModel(BaseModel):
    """A public client request: versioned, but an unknown field is refused (see rule)."""

    model_config = ConfigDict(extra="forbid")

    v: SkipJsonSchema[int] = SCHEMA_VERSION  # optional for clients: not in published schemas

    @field_validator(VERSION_FIELD)
    @classmethod
    def _readable(cls, value: int) -> int:
        return _check(value)


def unknown_fields(model: type[BaseModel], data: Mapping[str, Any]) -> list[str]:
    """The top-level keys of ``data`` that ``model`` does not know (names or aliases)."""
    known = {VERSION_FIELD}
    for name, info in model.model_fields.items():
        known.add(name)
        if info.alias:
            known.add(info.alias)
    return sorted(str(key) for key in data if key not in known)


def refuse_unknown(model: type[BaseModel], data: Mapping[str, Any], what: str) -> None:
    """``BrokerError(VALIDATION)`` naming the fields of a public request this build does
    not know (a typo, or an option of a newer client); nothing when all are known."""
    unknown = unknown_fields(model, data)
    if unknown:
        raise BrokerError(
            ErrorCode.VALIDATION,
            f"invalid {what}: unknown field{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)} (this node reads schema version {SCHEMA_VERSION})",
            {"field": unknown[0], "unknown": unknown, "type": "extra_forbidden"},
        )


def extras(model: BaseModel) -> dict[str, Any]:
    """The unknown fields a model carries (a newer writer's), empty when none."""
    return dict(model.__pydantic_extra__ or {})
