"""Shared by the netns tests: skip where namespaces (or nft) cannot be used.

``requires_netns`` is a marker to put in ``pytestmark``; ``NETNS_UNAVAILABLE`` is the reason
(None when the machine can run them), asked once per session: each ask adds and deletes a
probe namespace.
"""

from __future__ import annotations

import os

import pytest

from chaos.netns.hosts import unavailable_reason

# the netns tools live in /usr/sbin, which a non-login root shell may not have on PATH
if "/usr/sbin" not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin"

NETNS_UNAVAILABLE = unavailable_reason()
requires_netns = pytest.mark.skipif(NETNS_UNAVAILABLE is not None,
                                    reason=NETNS_UNAVAILABLE or "")
