"""The managed-process abstraction node daemons will plug into."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from chaos.process import ManagedProcess, ProcessError

SCRIPT = "import sys, time; print('ready', flush=True); time.sleep(60)"  # sleep-ok: child idles


def test_start_kill_restart_stop(tmp_path: Path) -> None:
    proc = ManagedProcess("child", [sys.executable, "-c", SCRIPT], ready_line="ready",
                          log_path=tmp_path / "child.log")
    proc.start(10)
    first = proc.pid
    assert proc.alive and proc.starts == 1
    proc.kill()
    assert not proc.alive and proc.process is not None and proc.process.returncode == -9
    proc.restart(10)
    assert proc.alive and proc.pid != first and proc.starts == 2
    proc.stop()
    assert not proc.alive
    assert (tmp_path / "child.log").read_text().count("ready") == 2


def test_a_process_that_exits_before_ready_fails_with_its_output() -> None:
    proc = ManagedProcess("bad", [sys.executable, "-c", "print('nope'); raise SystemExit(3)"],
                          ready_line="ready")
    with pytest.raises(ProcessError, match="nope"):
        proc.start(5)


def test_probe_gates_readiness() -> None:
    calls = []

    def probe() -> bool:
        calls.append(1)
        return len(calls) >= 3

    proc = ManagedProcess("p", [sys.executable, "-c", SCRIPT], ready_line="ready", probe=probe)
    try:
        proc.start(10)
        assert len(calls) == 3
    finally:
        proc.stop()
