"""The ``var`` CLI sub-app against an in-process group, and a small benchmark run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from node.bench.variables import run_variables_bench
from node.cli.variables import app, parse_assignments
from node.embedded import NatsServer
from tests.integration.variables.helpers import TEMPERATURE_SPACE, variables_group
from tests.secured import discovery_env

runner = CliRunner()


def test_assignments_parse_json_values_else_strings() -> None:
    assert parse_assignments(["t=0.5", "b=16", "m=large", "f=true"]) == {
        "t": 0.5, "b": 16, "m": "large", "f": True}


async def _cli(server: NatsServer, *args: str) -> Any:
    """The command as a user on the server's machine runs it: it finds the context of the
    role it needs by itself (a client's to set and get, an observer's to watch)."""
    return await asyncio.to_thread(runner.invoke, app, list(args), env=discovery_env(server))


def _json(result: Any) -> Any:
    """The JSON the command printed (CliRunner also catches log lines of other threads)."""
    lines = [ln for ln in result.output.splitlines() if ln.startswith(("{", "["))]
    assert lines, result.output
    return json.loads(lines[-1])


async def test_cli_define_set_get_history_freeze_and_errors(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    spec = tmp_path / "space.json"
    spec.write_text(json.dumps(TEMPERATURE_SPACE))
    async with variables_group(nats_server):
        assert (await _cli(nats_server, "define", str(spec))).exit_code == 0
        out = await _cli(nats_server, "set", "llm", "temperature=0.9", "batch=16", "--json")
        assert out.exit_code == 0, out.output
        assert _json(out)["values"]["temperature"] == 0.9
        got = _json(await _cli(nats_server, "get", "llm", "temperature", "--json"))
        assert got["value"] == 0.9
        bad = await _cli(nats_server, "set", "llm", "temperature=3.0")
        assert bad.exit_code == 1 and "validation_error" in bad.output
        assert (await _cli(nats_server, "freeze", "llm", "batch")).exit_code == 0
        frozen = await _cli(nats_server, "set", "llm", "batch=32")
        assert frozen.exit_code == 1 and "frozen" in frozen.output
        hist = _json(await _cli(nats_server, "history", "llm", "temperature", "--json"))
        assert [h["value"] for h in hist] == [0.7, 0.9]
        listed = _json(await _cli(nats_server, "ls", "--json"))
        assert listed[0]["space"] == "llm" and listed[0]["frozen"] == ["batch"]
        table = await _cli(nats_server, "ls")
        assert table.exit_code == 0 and "temperature" in table.output


async def test_cli_watch_prints_each_committed_change_once(
        nats_server: NatsServer, nc: Any) -> None:
    from broker_agents.variables.client import Variables

    async with variables_group(nats_server):
        v = Variables(nc)
        await v.define_space(TEMPERATURE_SPACE)
        watching = asyncio.ensure_future(_cli(nats_server, "watch", "llm", "--count", "3",
                                              "--json"))
        rm = await v.read_model(spaces=["llm"]).start()
        try:
            # the watcher subscribes before it prints its header; keep setting until it exits
            t = 0.1
            while not watching.done():
                await v.set("llm", {"temperature": round(t, 2)})
                t += 0.1
                await asyncio.wait([watching], timeout=0.05)
        finally:
            await rm.stop()
        # CliRunner swaps sys.stdout process-wide: skip log lines other threads printed
        out = [json.loads(line) for line in (await watching).output.splitlines()
               if line.startswith("{")]
        changes = [c for c in out if "version" in c]
        assert len(changes) == 3
        versions = [c["version"] for c in changes]
        assert versions == sorted(set(versions))


async def test_bench_reports_every_figure_beside_raw_nats(tmp_path: Path) -> None:
    result = await run_variables_bench(sets=30, pipelined=300, window=32, adapt_rounds=10,
                                       raw=50, tmp_dir=tmp_path)
    for key in ("raw_rtt_us_p50", "set_us_p50", "updates_per_s", "adapt_ms_p50"):
        assert result[key] > 0, key
    assert result["final_version"] > 300
