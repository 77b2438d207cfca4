"""Cluster-wide feature flags: the pure decision (issue 18, item 4).

Why: a build may carry a feature (a new field a state machine acts on, a new protocol
step) that older builds cannot speak. It is used only when it is EFFECTIVE:

    effective(name) = requested (flag on in the ``<p>_features`` bucket)
                      AND every node registered in the nodes bucket announces it

Effective state is derived, never stored: a node rolled back to a build without the
feature turns it off for everyone the moment its node record appears. Enabling is refused
while some registered node lacks the feature (``FEATURE_UNSUPPORTED`` naming them).

The build's supported set is a registry a build extends with ``register_feature``.
Pure: no IO, no clock.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from pydantic import ConfigDict, Field, field_validator

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.tokens import TOKEN
from broker_agents.core.versioning import VersionedModel

BASE_FEATURE = "versioned_records"
"""Supported by every build since versioning: it keeps unknown fields (core.versioning)."""

SUPPORTED_FEATURES: set[str] = {BASE_FEATURE}
"""The features this build supports (announced in its node record). Extend with
``register_feature``, before the node starts."""


def check_name(name: str) -> str:
    """A feature name is a token (letters, digits, ``_``, ``-``): it is a KV key and a
    subject token; ``BrokerError(VALIDATION)`` otherwise."""
    if not isinstance(name, str) or not TOKEN.match(name) or len(name) > 64:
        raise BrokerError(ErrorCode.VALIDATION,
                          f"feature name {name!r} must be 1-64 letters, digits, '_' or '-'",
                          {"field": "name", "value": str(name)[:80]})
    return name


def register_feature(name: str) -> str:
    """Declare that this build supports ``name`` (idempotent)."""
    SUPPORTED_FEATURES.add(check_name(name))
    return name


def supported_features() -> tuple[str, ...]:
    """This build's features, sorted (what a node announces)."""
    return tuple(sorted(SUPPORTED_FEATURES))


class FeatureFlag(VersionedModel):
    """A record of the features bucket under key ``name``: the operator's request."""

    model_config = ConfigDict(frozen=True)

    name: str
    requested: bool = False
    by: str | None = Field(default=None, max_length=256)
    at: float = 0.0

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not TOKEN.match(value) or len(value) > 64:
            raise ValueError(f"name {value!r} must be 1-64 letters, digits, '_' or '-'")
        return value


Announced = Mapping[str, Collection[str]]
"""node id -> the features that node announces (its node record's ``features``)."""


def lacking(name: str, announced: Announced) -> list[str]:
    """The registered nodes that do not announce ``name``, sorted."""
    return sorted(node for node, feats in announced.items() if name not in feats)


def effective(name: str, requested: bool, announced: Announced) -> bool:
    """On for the cluster: requested, some node registered, and every one announces it."""
    return requested and bool(announced) and not lacking(name, announced)


def check_enable(name: str, announced: Announced) -> None:
    """Refuse enabling ``name`` while a registered node lacks it (or none is registered)."""
    check_name(name)
    missing = lacking(name, announced)
    if missing or not announced:
        why = (f"nodes {', '.join(missing)} do not support it" if missing
               else "no node is registered to support it")
        raise BrokerError(ErrorCode.FEATURE_UNSUPPORTED,
                          f"feature {name!r} cannot be enabled: {why}",
                          {"feature": name, "lacking": missing,
                           "nodes": sorted(announced)})


@dataclass(frozen=True)
class FeatureState:
    """What ``feature list`` shows for one feature."""

    name: str
    requested: bool
    effective: bool
    supported_by: list[str] = field(default_factory=list)
    lacking: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "requested": self.requested, "effective": self.effective,
                "supported_by": self.supported_by, "lacking": self.lacking}


def states(requested: Mapping[str, bool], announced: Announced) -> list[FeatureState]:
    """Every feature some node announces or someone requested, sorted by name."""
    names = set(requested) | {f for feats in announced.values() for f in feats}
    out = []
    for name in sorted(names):
        want = requested.get(name, False)
        out.append(FeatureState(
            name=name, requested=want, effective=effective(name, want, announced),
            supported_by=sorted(n for n, f in announced.items() if name in f),
            lacking=lacking(name, announced)))
    return out
