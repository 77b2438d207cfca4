"""A managed OS process: start a command, kill -9 it, restart it, stop it.

nats-servers and (later) node daemons plug in here. Readiness is an event: a log line
the process prints, and/or a probe callable polled with backoff, never a fixed sleep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from broker_agents.core.errors import CodedError, ErrorCode


class ProcessError(CodedError):
    """A managed process failed to start or become ready."""

    CODE = ErrorCode.START_FAILED


@dataclass
class ManagedProcess:
    """One child process we own; ``argv`` is re-run unchanged on restart."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    ready_line: str | None = None
    probe: Callable[[], bool] | None = None
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    tail: list[str] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 20.0) -> ManagedProcess:
        if self.alive:
            return self
        self._ready.clear()
        env = {**os.environ, **(self.env or {})}
        self.process = subprocess.Popen(
            list(self.argv), cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.starts += 1
        threading.Thread(target=self._pump, args=(self.process,), daemon=True,
                         name=f"log-{self.name}").start()
        self.wait_ready(timeout)
        return self

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        log = self.log_path.open("ab") if self.log_path else None
        try:
            for raw in proc.stdout:
                if log:
                    log.write(raw)
                    log.flush()
                line = raw.decode(errors="replace").rstrip()
                self.tail.append(line)
                del self.tail[:-200]
                if self.ready_line and self.ready_line in line:
                    self._ready.set()
        finally:
            if log:
                log.close()

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait for the ready line, then for the probe; raise with the log tail if not."""
        deadline = time.monotonic() + timeout
        if self.ready_line and not self._wait(self._ready.is_set, deadline):
            self._fail("never printed " + repr(self.ready_line))
        if self.probe and not self._wait(self.probe, deadline):
            self._fail("readiness probe never passed")

    def _wait(self, cond: Callable[[], bool], deadline: float) -> bool:
        interval = 0.01
        while time.monotonic() < deadline:
            if cond():
                return True
            if not self.alive:
                return False
            threading.Event().wait(interval)  # bounded poll of an external process
            interval = min(interval * 2, 0.2)
        return cond()

    def _fail(self, why: str) -> None:
        tail = "\n".join(self.tail[-20:])
        self.stop()
        raise ProcessError(f"{self.name}: {why}\n{tail}")

    def kill(self) -> None:
        """kill -9: a crash, no chance to clean up."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if not self.alive:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def restart(self, timeout: float = 20.0, hard: bool = False) -> ManagedProcess:
        """Stop (or kill -9 if ``hard``) and start again with the same command."""
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start(timeout)
