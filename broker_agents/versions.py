"""What this build announces about itself (IO side of ``core.versioning``/``core.features``).

A node puts it in its node record and its status event, so operators and other nodes see
which build runs where and which features the cluster may turn on.
"""

from __future__ import annotations

import functools
import importlib.metadata
from typing import Any

from broker_agents.core.features import supported_features
from broker_agents.core.versioning import SCHEMA_VERSION


@functools.cache
def package_version() -> str | None:
    """The installed package's version (read once: a metadata scan costs ~1.5 ms)."""
    try:
        return importlib.metadata.version("broker-agents")
    except importlib.metadata.PackageNotFoundError:
        return None


def announcement() -> dict[str, Any]:
    """``version``, ``schema_version`` (wire name ``schema``) and ``features`` as
    ``NodeRecord`` keyword arguments; features are read each call (a build may register
    one before its node starts)."""
    return {"version": package_version(), "schema_version": SCHEMA_VERSION,
            "features": supported_features()}
