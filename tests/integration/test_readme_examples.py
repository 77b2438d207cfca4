"""The README's examples run as written, against the playground they say to start.

One ``broker-agents up --config config/playground.toml`` (the real command, in the
repository root, with a private config home) for every example; each block marked
``<!-- run -->`` in the README runs in order: a ``sh`` block command by command (each must
exit 0, and needs no flags: the contexts `up` wrote are found by themselves), a ``python``
block as a script whose printed lines must equal the ``# ...`` comments after its
``print(...)`` calls. Ctrl-C then stops the playground with exit 0 and removes its contexts.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
MARK = re.compile(r"<!-- run -->\s*```(sh|python)\n(.*?)```", re.S)
READY_LINE = "contexts written to"
START_TIMEOUT = 90.0
STEP_TIMEOUT = 60.0


@dataclass
class Block:
    lang: str
    code: str
    line: int  # where it starts in the README, for failure messages


def runnable_blocks(text: str) -> list[Block]:
    return [Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
            for m in MARK.finditer(text)]


def shell_commands(code: str) -> list[str]:
    """Commands of a ``sh`` block: continuation lines joined, comments and blanks dropped."""
    joined = code.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(shlex.join(words))
    return commands


def expected_prints(code: str) -> list[str]:
    """The ``# ...`` comment after each ``print(...)``: what the script must print."""
    return [m.group(1).strip() for m in re.finditer(r"^\s*print\(.*\)\s*#\s*(.*)$", code, re.M)]


class Playground:
    """``broker-agents up --config config/playground.toml`` as a user starts it."""

    def __init__(self, home: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if k not in ("BA_CONTEXT",)}
        self.env.update({"XDG_CONFIG_HOME": str(home),
                         "PATH": f"{BIN}:{self.env['PATH']}:/usr/sbin", "COLUMNS": "200"})
        self.contexts = home / "broker-agents"
        self.output: list[str] = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [str(BIN / "broker-agents"), "up", "--config", "config/playground.toml"],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if READY_LINE in line:
                self.ready.set()
        self.ready.set()  # it ended: let the waiter see why

    def wait_ready(self) -> None:
        if not self.ready.wait(START_TIMEOUT) or self.proc.poll() is not None:
            self.stop()
            pytest.fail("playground did not come up:\n" + "".join(self.output))

    def run(self, args: list[str] | str) -> subprocess.CompletedProcess[str]:
        """A command line (as a shell runs it) or an argv, in the repository root."""
        return subprocess.run(args, cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=STEP_TIMEOUT, shell=isinstance(args, str))

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # Ctrl-C, as the user stops it
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)


@pytest.fixture(scope="module")
def playground(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Playground]:
    pg = Playground(tmp_path_factory.mktemp("home"))
    pg.wait_ready()
    yield pg
    code = pg.stop()
    assert code == 0, "".join(pg.output)
    assert not list(pg.contexts.glob("*.json")), "up left its contexts behind"


def test_the_readme_marks_examples_to_run() -> None:
    blocks = runnable_blocks(README.read_text())
    assert {b.lang for b in blocks} == {"sh", "python"}
    assert len(blocks) >= 6


def test_up_writes_a_context_for_every_role(playground: Playground) -> None:
    names = sorted(p.name for p in playground.contexts.glob("*.json"))
    assert names == ["context-admin.json", "context-node.json", "context-observer.json",
                     "context.json"]
    assert any("NATS: tls://127.0.0.1:" in line for line in playground.output)


def test_readme_examples_run(playground: Playground, tmp_path: Path) -> None:
    for block in runnable_blocks(README.read_text()):
        if block.lang == "sh":
            for command in shell_commands(block.code):
                done = playground.run(command)
                assert done.returncode == 0, (
                    f"README line {block.line}: {command}\n{done.stdout}\n{done.stderr}")
            continue
        script = tmp_path / f"readme_{block.line}.py"
        script.write_text(block.code)
        done = playground.run([sys.executable, str(script)])
        assert done.returncode == 0, f"README line {block.line}:\n{done.stdout}\n{done.stderr}"
        assert done.stdout.splitlines() == expected_prints(block.code), (
            f"README line {block.line} printed:\n{done.stdout}")


def test_an_agent_class_that_does_not_import_stops_the_node_before_nats_and_http(
        tmp_path: Path) -> None:
    """What "Where the node finds your code" promises: exit 2 naming the section, and
    nothing started (no embedded server, no HTTP) for a class the node cannot import."""
    config = tmp_path / "bad.toml"
    config.write_text(f'[node]\ndata_dir = "{tmp_path / "data"}"\nlog_format = "json"\n'
                      '[nats.embedded]\nport = 0\n[http]\nport = 0\n'
                      '[[agents]]\nclass = "mypkg.greeter:Greeter"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("BA_")}
    env["PATH"] = f"{BIN}:{env['PATH']}:/usr/sbin"
    done = subprocess.run([str(BIN / "broker-agents"), "node", "run", "--config", str(config)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "agents.0.class: cannot import module 'mypkg.greeter'" in done.stderr
    assert "http listening" not in done.stdout + done.stderr
    assert not (tmp_path / "data" / "nats").exists()  # the embedded server never ran
