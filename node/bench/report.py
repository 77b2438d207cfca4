"""``bench all``: every suite's figures in one report, with what they were measured on.

A figure only means something beside where it came from, so the report carries the
machine (cpu model, cores, memory, kernel), the versions (python, nats-server, nats-py,
broker-agents) and the git revision with its dirty flag. ``bench compare`` reads two of
these and warns when the machines differ.

A suite that crashes (or overruns its time) is recorded as ``{"error": ...}`` and the
others still run; ``failed(report)`` lists them so the CLI can exit non-zero.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from node.bench.suites import SUITES, SuiteTimeout, run_suite_sync

SCHEMA = 1
REPO = Path(__file__).resolve().parents[2]
QUICK_TIMEOUT_S = 300.0  # one suite, --quick
FULL_TIMEOUT_S = 900.0  # one suite, default counts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine() -> dict[str, Any]:
    memory = _memory_bytes()
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(memory / 2**30, 1) if memory else None,
        "kernel": platform.release(),
        "system": platform.system(),
        "arch": platform.machine(),
        "hostname": platform.node(),
    }


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _nats_server() -> dict[str, str | None]:
    try:
        from node.nats_binary import binary_version, find_binary

        path = find_binary()
        return {"path": path, "version": ".".join(str(p) for p in binary_version(path))}
    except Exception as exc:  # a report without a server version beats no report
        return {"path": None, "version": None, "error": str(exc)}


def versions() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "nats_server": _nats_server(),
        "nats_py": _dist_version("nats-py"),
        "broker_agents": _dist_version("broker-agents"),
    }


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_revision() -> dict[str, Any]:
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"revision": _git("rev-parse", "HEAD"), "branch": _git("rev-parse", "--abbrev-ref",
                                                                  "HEAD"),
            "dirty": None if status is None else bool(status)}


def _load_1m() -> float | None:
    """The 1-minute load average when a suite ends: other work on the machine (other
    benchmarks, builds) shows here, and ``bench compare`` warns about it."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def run_one(name: str, quick: bool, timeout: float) -> tuple[dict[str, Any], float]:
    """One suite's dict (or its error) and the seconds it took."""
    start = time.monotonic()
    try:
        result = run_suite_sync(name, quick=quick, timeout=timeout)
    except SuiteTimeout as exc:
        result = {"error": str(exc)}
    except (Exception, SystemExit) as exc:  # one crash must not lose the other suites
        result = {"error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(limit=8)}
    return result, round(time.monotonic() - start, 1)


def build_report(*, quick: bool = False, suites: Iterable[str] | None = None,
                 timeout: float | None = None,
                 progress: Callable[[str, dict[str, Any], float], None] | None = None,
                 out: Path | None = None) -> dict[str, Any]:
    """Run ``suites`` (default: all, in registry order) one after the other; with ``out``,
    the report so far is (re)written there after each suite, so a run cut short by an
    outer ``timeout`` still leaves the suites it finished."""
    names = list(suites or SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise ValueError(f"unknown suites: {', '.join(unknown)} (known: {', '.join(SUITES)})")
    limit = timeout or (QUICK_TIMEOUT_S if quick else FULL_TIMEOUT_S)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick, "argv": sys.argv[1:],
        "machine": machine(), "versions": versions(), "git": git_revision(),
        "seconds": {}, "load": {}, "suites": {},
    }
    for name in names:
        result, seconds = run_one(name, quick, limit)
        report["suites"][name] = result
        report["seconds"][name] = seconds
        report["load"][name] = _load_1m()
        if out is not None:
            write(report, out)
        if progress is not None:
            progress(name, result, seconds)
    return report


def write(report: dict[str, Any], out: Path) -> None:
    """``report`` as JSON at ``out``, replaced atomically (a reader never sees half)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(report, indent=1) + "\n")
    partial.replace(out)


def failed(report: dict[str, Any]) -> list[str]:
    """The suites of ``report`` that crashed or timed out."""
    return [name for name, result in report.get("suites", {}).items()
            if isinstance(result, dict) and "error" in result]
