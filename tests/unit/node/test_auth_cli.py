"""``broker-agents auth``: what each command writes, and its structured errors and exit
codes (``node.exitcodes``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from node.auth.authority import Authority
from node.auth.context import ClientContext
from node.auth.creds import Creds
from node.cli import app
from node.exitcodes import ExitCode


def run(*args: str, code: ExitCode = ExitCode.OK) -> Any:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == code, result.output
    return json.loads(result.output) if result.output.strip() else None


def test_init_issue_server_config_and_context(tmp_path: Path) -> None:
    d = str(tmp_path / "auth")
    wrote = run("auth", "init", "--dir", d)
    assert {Path(p).name for p in wrote["wrote"]} == {
        "operator.nk", "operator.jwt", "account.nk", "account.jwt", "system.nk", "system.jwt"}
    assert wrote["account"] == Authority.load(Path(d)).account.public_key
    issued = run("auth", "issue", "observer", "dash", "--dir", d, "--prefix", "xy")
    assert issued["inbox_prefix"] == "_INBOX.dash" and issued["role"] == "observer"
    claims = Creds.read(Path(issued["wrote"][0])).claims()
    assert claims["name"] == "dash" and "xy.events.>" in str(claims["nats"])
    configs = run("auth", "server-config", "--dir", d, "--servers", "3",
                  "--host", "a", "--host", "b", "--host", "c", "--port", "4000")
    assert [Path(p).name for p in configs["wrote"]] == ["ba-1.conf", "ba-2.conf", "ba-3.conf"]
    assert 'listen: "0.0.0.0:4000"' in Path(configs["wrote"][2]).read_text()
    ctx_file = run("auth", "context", "--dir", d, "--user", "dash", "--server", "tls://a:4000",
                   "--prefix", "xy")["wrote"][0]
    ctx = ClientContext.read(Path(ctx_file))
    assert ctx.servers == ("tls://a:4000",) and ctx.subject_prefix == "xy"
    assert ctx.creds == Path(issued["wrote"][0]).resolve() and ctx.inbox_prefix == "_INBOX.dash"
    assert ctx.ca == Path(configs["ca"]).resolve()


def test_errors_are_structured_with_exit_codes(tmp_path: Path) -> None:
    d = str(tmp_path / "auth")
    missing = run("auth", "issue", "client", "alice", "--dir", d, code=ExitCode.FAILURE)
    assert missing["error"]["code"] == "not_found"
    run("auth", "init", "--dir", d)
    again = run("auth", "init", "--dir", d, code=ExitCode.FAILURE)
    assert again["error"]["code"] == "already_exists"
    run("auth", "issue", "client", "alice", "--dir", d)
    exists = run("auth", "issue", "client", "alice", "--dir", d, code=ExitCode.FAILURE)
    assert exists["error"]["code"] == "already_exists"
    run("auth", "issue", "admin", "alice", "--dir", d, "--force")
    bad_name = run("auth", "issue", "client", "a.b", "--dir", d, code=ExitCode.USAGE)
    assert bad_name["error"]["code"] == "validation_error"
    for args in (["--servers", "2"], ["--servers", "3", "--host", "h"],
                 ["--servers", "3", "--host", "a", "--host", "b"]):
        wrong = run("auth", "server-config", "--dir", d, *args, code=ExitCode.USAGE)
        assert wrong["error"]["code"] == "validation_error", args
    no_creds = run("auth", "context", "--dir", d, "--user", "bob", code=ExitCode.FAILURE)
    assert no_creds["error"]["code"] == "not_found"
    not_url = run("auth", "context", "--dir", d, "--user", "alice", "--server", "a:1",
                  code=ExitCode.USAGE)
    assert not_url["error"]["code"] == "validation_error"


def test_an_unknown_role_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["auth", "issue", "root", "eve", "--dir", str(tmp_path)])
    assert result.exit_code == ExitCode.USAGE
