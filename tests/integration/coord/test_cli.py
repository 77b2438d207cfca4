"""``schema`` and ``request`` commands, and the exported JSON Schemas."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from typer.testing import CliRunner

from broker_agents.coord.schema import PROTOCOLS, REQUEST_MODELS, schemas
from node.auth.roles import Role
from node.cli.coord import app
from node.cluster import LocalCluster
from tests.integration.coord.helpers import COORDINATOR, VOTER, running_cluster, spec
from tests.secured import cli_args

runner = CliRunner()


def test_schemas_cover_every_protocol_with_request_response_and_error() -> None:
    every = schemas()
    assert sorted(every) == sorted(PROTOCOLS)
    for protocol, entry in every.items():
        assert entry["subject"] == f"ba.coord.{protocol}"
        assert entry["request"]["type"] == "object" and entry["request"]["properties"]
        assert entry["response"]["properties"]
        assert entry["error"]["required"] == ["error"]


def test_schema_fields_have_descriptions_for_other_languages() -> None:
    props = schemas()["vote"]["request"]["properties"]
    assert {"proposal", "participants", "capability", "rule", "timeout_ms"} <= set(props)
    assert all("description" in props[k] for k in ("proposal", "participants", "rule"))


def test_schema_command_prints_one_or_all() -> None:
    one = runner.invoke(app, ["schema", "pbft"])
    assert one.exit_code == 0
    assert json.loads(one.output)["request"]["title"] == REQUEST_MODELS["pbft"].__name__
    every = runner.invoke(app, ["schema"])
    assert sorted(json.loads(every.output)) == sorted(PROTOCOLS)
    bad = runner.invoke(app, ["schema", "telepathy"])
    assert bad.exit_code == 2


def test_request_rejects_bad_json_before_connecting() -> None:
    res = runner.invoke(app, ["request", "vote", "{nope", "--nats", "nats://127.0.0.1:1"])
    assert res.exit_code == 2 and "bad request JSON" in res.output


def test_request_without_nats_is_an_unavailable_error() -> None:
    res = runner.invoke(app, ["request", "vote", "{}", "--json", "--nats", "nats://127.0.0.1:1"])
    assert res.exit_code == 1 and json.loads(res.output)["error"]["code"] == "unavailable"


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    """Its own cluster per test (the shared module-wide one is in conftest.py)."""
    async with running_cluster(tmp_path, 2, [
            [spec(COORDINATOR, "coord-1"), spec(VOTER, "a", choice="yes")],
            [spec(VOTER, "b", choice="yes"), spec(VOTER, "c", choice="no")]]) as c:
        yield c


async def test_request_prints_tables_json_and_errors(cluster: LocalCluster,
                                                     tmp_path: Path) -> None:
    body = tmp_path / "vote.json"
    body.write_text(json.dumps({"proposal": "ship?", "participants": ["a", "b", "c"]}))

    def invoke(*args: str) -> tuple[int, str]:
        res = runner.invoke(app, ["request", *args, *cli_args(cluster, Role.CLIENT)])
        return res.exit_code, res.output

    code, out = await asyncio.to_thread(invoke, "vote", f"@{body}")
    assert code == 0 and "vote result" in out and "answers" in out and "yes" in out
    code, out = await asyncio.to_thread(invoke, "vote", f"@{body}", "--json")
    assert code == 0 and json.loads(out)["tally"] == {"yes": 2.0, "no": 1.0}
    code, out = await asyncio.to_thread(
        invoke, "hierarchical", '{"proposal": "p", "participants": ["a", "b", "c"], '
        '"cluster_size": 2}')
    assert code == 0 and "level 0" in out and "L0C0" in out
    code, out = await asyncio.to_thread(invoke, "vote", '{"proposal": ""}')
    assert code == 1 and "validation_error" in out
