"""Every CLI failure a user meets ends the same way: one line on stderr, never a
traceback, and a documented exit status (``node.exitcodes.ExitCode``)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from broker_agents import codec
from broker_agents.subjects import Subjects
from node.embedded import NatsServer, free_port
from node.exitcodes import ExitCode
from tests.integration.variables.helpers import TEMPERATURE_SPACE, variables_group
from tests.secured import discovery_env

CLI = [sys.executable, "-m", "node.cli"]


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})), cwd=cwd)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error: exactly one line on stderr, no traceback anywhere."""
    both = result.stdout + result.stderr
    assert "Traceback" not in both and "File \"" not in both, both
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def listening() -> Iterator[int]:
    """A port some other process (here: this one) listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("command", [["registry", "ls"], ["registry", "find", "--capability",
                                     "x"], ["var", "ls"], ["auction", "accounts"]])
def test_a_dead_nats_is_one_unavailable_line_and_exit_1(command: list[str],
                                                         tmp_path: Path) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    result = cli(*command, "--nats", dead, cwd=tmp_path)
    assert result.returncode == ExitCode.FAILURE
    line = one_line(result)
    assert line.startswith("unavailable cannot connect to NATS at " + dead), line


def test_json_errors_are_one_document_on_stdout(tmp_path: Path) -> None:
    result = cli("registry", "ls", "--json", "--nats", f"nats://127.0.0.1:{free_port()}",
                 cwd=tmp_path)
    assert result.returncode == ExitCode.FAILURE and "Traceback" not in result.stderr
    assert codec.decode(result.stdout.encode(), None)["error"]["code"] == "unavailable"


def test_an_unforeseen_exception_is_one_internal_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    from node.cli import common

    async def broken() -> None:
        raise KeyError("a bug")

    with pytest.raises(typer.Exit) as done:
        common.run(broken())
    assert done.value.exit_code == ExitCode.FAILURE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("internal KeyError: 'a bug'"), err
    assert "at test_cli_errors.py:" in err[0] and "in broken" in err[0], err  # where it was


def test_version() -> None:
    from node.cli import version

    result = cli("--version")
    assert result.returncode == ExitCode.OK
    assert result.stdout.strip() == f"broker-agents {version()}" and version()[0].isdigit()


def _node_env(tmp_path: Path, nats_port: int, http_port: int) -> dict[str, str]:
    return {"BA_NODE__ID": "solo", "BA_NODE__DATA_DIR": str(tmp_path),
            "BA_NATS__EMBEDDED__PORT": str(nats_port), "BA_HTTP__PORT": str(http_port)}


def test_http_port_in_use_is_one_line_and_exit_2(tmp_path: Path, listening: int) -> None:
    result = cli("node", "run", env=_node_env(tmp_path, free_port(), listening))
    assert result.returncode == ExitCode.CONFIG
    line = one_line(result)
    assert f"HTTP port 127.0.0.1:{listening} is already in use" in line, line


def test_nats_port_in_use_is_one_line_exit_2_and_fast(tmp_path: Path, listening: int) -> None:
    started = time.monotonic()
    result = cli("node", "run", env=_node_env(tmp_path, listening, 0), timeout=10)
    assert result.returncode == ExitCode.CONFIG
    line = one_line(result)
    assert f"NATS port 127.0.0.1:{listening} is already in use" in line, line
    assert time.monotonic() - started < 10


async def test_a_vote_in_which_every_participant_errored_exits_1(
        nats_server: NatsServer, nc: Any) -> None:
    result = {"rule": "majority", "decision": None, "leading": None, "rule_met": False,
              "reason": "no votes cast", "tally": {}, "confidence": 0.0, "participants": 2,
              "votes_cast": 0, "answers": [], "abstained": [], "timed_out": [],
              "errored": ["v1", "v2"]}

    async def coordinator(msg: Any) -> None:  # stands in for one whose voters all failed
        await msg.respond(codec.encode(result, as_json=True))

    await nc.subscribe(Subjects().coord("vote"), cb=coordinator)
    await nc.flush()
    done = await asyncio.to_thread(cli, "request", "vote", '{"proposal": "ship?"}',
                                   env=discovery_env(nats_server))
    assert done.returncode == ExitCode.FAILURE, done.stdout + done.stderr
    line = one_line(done)
    assert line.startswith("handler_error all 2 participant(s) answered with an error"), line
    ok = dict(result, errored=["v1"], abstained=["v2"])
    result.update(ok)
    mixed = await asyncio.to_thread(cli, "request", "vote", '{"proposal": "ship?"}',
                                    env=discovery_env(nats_server))
    assert mixed.returncode == ExitCode.OK, mixed.stdout + mixed.stderr


async def test_set_on_a_frozen_variable_exits_1(nats_server: NatsServer,
                                                tmp_path: Path) -> None:
    from broker_agents.variables.client import Variables
    from tests.secured import connect_as

    env = discovery_env(nats_server)
    async with variables_group(nats_server):
        admin = await connect_as(nats_server)
        try:
            v = Variables(admin)
            await v.define_space(TEMPERATURE_SPACE)
            await v.freeze("llm", "batch")
        finally:
            await admin.close()
        for value in ("8", "32"):  # its frozen value, and another
            done = await asyncio.to_thread(cli, "var", "set", "llm", f"batch={value}", env=env)
            assert done.returncode == ExitCode.FAILURE, done.stdout + done.stderr
            assert "frozen" in one_line(done)
