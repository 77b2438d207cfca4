"""A playground cluster and a standalone dashboard as a user starts them, for the browser
tests: ``broker-agents up --config config/playground.toml`` and ``broker-agents dashboard``
as subprocesses, with their own ``$XDG_CONFIG_HOME`` (so `up`'s contexts are found by the
CLI and the dashboard like in another shell, without touching the user's).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.auth.context import context_name
from node.auth.roles import Role
from node.embedded import free_port

ROOT = Path(__file__).parents[2]
CLI = str(Path(sys.executable).parent / "broker-agents")
START_TIMEOUT = 120.0


class Output:
    """A subprocess's merged output, read by a thread (so a wait has a timeout)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self.lines.put(line)
            self.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def until(self, marker: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                line = ""
            if line is None or time.monotonic() > end:
                raise TimeoutError(f"no {marker!r} in: {''.join(self.seen)[-4000:]}")
            self.seen.append(line)
            if marker in line:
                return "".join(self.seen)


@dataclass
class Stack:
    """The running playground (``up``), its node pids, and the dashboard's base URL."""

    home: Path
    up: subprocess.Popen[str]
    pids: dict[str, int]
    http: dict[str, str]  # node id -> its HTTP base (the in-node dashboard is at /ui/)
    env: dict[str, str]
    base: str = ""
    dashboard: subprocess.Popen[str] | None = None
    logs: list[Output] = field(default_factory=list)

    def context(self, role: Role) -> Path:
        return self.home / "broker-agents" / context_name(role)

    def cli(self, role: Role, *args: str) -> Any:
        done = subprocess.run([CLI, *args, "--json", "--context", str(self.context(role))],
                              cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    def start_dashboard(self) -> None:
        port = free_port()
        self.dashboard = subprocess.Popen(
            [CLI, "dashboard", "--port", str(port)],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True)
        self.logs.append(Output(self.dashboard))
        self.base = f"http://127.0.0.1:{port}"
        wait_http(f"{self.base}/healthz", lambda d: d.get("nats_connected") is True,
                  self.dashboard)

    def stop(self) -> None:
        for proc in (self.dashboard, self.up):
            if proc is None or proc.poll() is not None:
                continue
            os.killpg(proc.pid, signal.SIGINT)
        for proc in (self.dashboard, self.up):
            if proc is None:
                continue
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def wait_http(url: str, ok: Any, proc: subprocess.Popen[str],
              timeout: float = 60.0) -> Any:
    """GET ``url`` until ``ok(json)``; each refused attempt waits on the process itself."""
    end = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                doc = json.loads(reply.read())
            if ok(doc):
                return doc
            last = doc
        except (urllib.error.URLError, ConnectionError, ValueError) as exc:
            last = exc
        try:  # not yet: wait a moment on the process (returns early if it died)
            proc.wait(timeout=0.2)
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        except subprocess.TimeoutExpired:
            pass
    raise TimeoutError(f"{url} never became ready: {last}")


def start_playground(home: Path) -> Stack:
    """``broker-agents up --config config/playground.toml``; returns once contexts exist."""
    env = dict(os.environ, XDG_CONFIG_HOME=str(home), COLUMNS="200",
               BA_NODE__STATUS_INTERVAL_S="0.5", BA_DASHBOARD__ENABLED="true")
    env.pop("BA_CONTEXT", None)
    proc = subprocess.Popen([CLI, "up", "--config", "config/playground.toml"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    out = Output(proc)
    try:
        text = out.until("Ctrl-C to stop", START_TIMEOUT)
        out.until("contexts written to", 30)  # after the files are in place
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    rows = re.findall(r"(node-\d+)\W+(\d+)\W+(http://127\.0\.0\.1:\d+)", text)
    return Stack(home, proc, {n: int(pid) for n, pid, _ in rows},
                 {n: url for n, _, url in rows}, env, logs=[out])
