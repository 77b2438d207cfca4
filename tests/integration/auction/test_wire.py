"""The auction request subject under garbage, and bid messages that must not count:
duplicates (same message id), second bids, bids from strangers, bids after the close."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS

from broker_agents import codec
from broker_agents.auction.client import run_auction
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.cluster import LocalCluster
from tests.integration.auction.helpers import S, ask, auctioneer, bidder
from tests.secured import connect_as, discovery_env

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(Path(tmp_path_factory.mktemp("auction-wire")), nodes=2, agents=[
        [auctioneer("auc-1"), bidder("slow", value=10.0, delay_ms=600),
         {"class": "broker_agents.auction.treasury:TreasuryAgent", "id": "treasury"}],
        [auctioneer("auc-2"), bidder("quiet", value=0.0), bidder("other", value=8.0)],
    ])
    await c.start()
    yield c
    await asyncio.to_thread(c.stop)


@pytest_asyncio.fixture(loop_scope="module")
async def nc(cluster: LocalCluster) -> AsyncIterator[NATS]:
    conn = await cluster.client()
    yield conn
    await conn.close()


COORD = S.coord("auction")


@pytest.mark.parametrize(("payload", "field"), [
    ({"participants": ["x"]}, "type"),
    ({"type": "sealed", "participants": ["x"]}, "type"),
    ({"type": "vickrey"}, "capability"),
    ({"type": "vickrey", "participants": ["x"], "reserve": -1}, "reserve"),
    ({"type": "dutch", "participants": ["x"]}, "start_price"),
    ({"type": "combinatorial", "participants": ["x"]}, "items"),
    ({"type": "vickrey", "capability": "a.b"}, "capability"),
    ({"type": "vickrey", "participants": ["x"], "bogus": 1}, "bogus"),
    ({"op": "launch", "type": "vickrey"}, "op"),
])
async def test_invalid_requests_get_a_validation_error_naming_the_field(
        nc: NATS, payload: dict[str, Any], field: str) -> None:
    for as_json in (True, False):
        reply = await ask(nc, COORD, payload, as_json=as_json)
        assert reply["error"]["code"] == "validation_error", reply
        assert reply["error"]["details"]["field"] == field, reply


async def test_garbage_gets_a_malformed_error_in_kind_and_the_node_keeps_serving(
        nc: NATS) -> None:
    for raw in (b"\xc1\xc1\xc1", b"{not json", b"[1, 2]", b"\x93\x01\x02\x03"):
        reply = await ask(nc, COORD, None, raw=raw)
        assert reply["error"]["code"] in ("malformed", "validation_error"), reply
    got = await nats_request(nc, COORD, json.dumps({"type": "vickrey", "participants": ["other"],
                                              "budgets": False}).encode(), timeout=10,
                             signed=True)
    assert got.data.startswith(b"{")  # JSON in, JSON out
    result = json.loads(got.data)
    assert (result["winner"], result["price"]) == ("other", 0.0)


async def _push(nc: NATS, aid: str, bid: dict[str, Any]) -> Any:
    """Push a bid, retrying while the auction is not yet taking bids."""
    for _ in range(50):
        try:
            reply = await ask(nc, S.auction(aid, "bid"), bid, timeout=0.3)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            continue
        if reply.get("error", {}).get("code") != "not_found":
            return reply
        await asyncio.sleep(0.05)  # sleep-ok: the auction record is not stored yet
    raise AssertionError("the auction never took bids")


async def test_duplicate_repeated_and_late_bids_do_not_change_the_outcome(
        nc: NATS, cluster: LocalCluster) -> None:
    aid = "wire-dup-1"
    quiet = await connect_as(cluster, Role.CLIENT, "quiet")  # bids are signed as the bidder
    other = await connect_as(cluster, Role.CLIENT, "other")
    running = asyncio.ensure_future(run_auction(
        nc, {"auction_id": aid, "type": "first_price", "participants": ["slow", "quiet"],
             "budgets": False, "duration_ms": 5000}, timeout=20))
    first = {"auction_id": aid, "msg_id": "q-1", "bidder": "quiet", "amount": 20.0}
    accepted = await _push(quiet, aid, first)
    assert accepted["kind"] == "bid_accepted", accepted
    assert "seq" not in accepted  # sealed: how many bid before is nobody's business
    again = await _push(quiet, aid, {**first, "amount": 99.0})
    assert again["error"]["code"] == "duplicate"
    second = await _push(quiet, aid, {**first, "msg_id": "q-2", "amount": 50.0})
    assert second["error"]["code"] == "duplicate"  # one sealed bid per bidder
    stranger = await _push(other, aid, {**first, "msg_id": "s-1", "bidder": "other"})
    assert stranger["error"]["code"] == "rejected"
    junk = await _push(quiet, aid, {"auction_id": aid, "amount": "lots"})
    assert junk["error"]["code"] == "validation_error"
    result = await running
    assert (result["winner"], result["price"], result["num_bids"]) == ("quiet", 20.0, 2)
    late = await _push(quiet, aid, {**first, "msg_id": "q-3", "amount": 500.0})
    assert late["error"]["code"] == "closed", late
    replayed = await _push(quiet, aid, first)
    assert replayed["error"]["code"] in ("duplicate", "closed")
    reply = await nats_request(nc, S.coord("auction"), codec.encode(
        {"type": "vickrey", "participants": ["other"], "budgets": False}), timeout=10,
        signed=True)
    assert codec.decode(reply.data)["winner"] == "other"
    await quiet.close()
    await other.close()


async def _cli(cluster: LocalCluster, *args: str) -> tuple[int, str]:
    """The command as a user on the cluster's machine runs it: it finds the context of
    the role it needs by itself (client to run, observer to read, admin to deposit)."""
    import os
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from node.cli.auction import app; app()", *args,
        env={**os.environ, **discovery_env(cluster)}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode() + err.decode()


async def test_cli_runs_an_auction_by_capability_and_prints_json_or_a_table(
        cluster: LocalCluster) -> None:
    code, out = await _cli(cluster, "run", "--type", "vickrey", "--item", "gpu-hour",
                           "--capability", "bidder", "--reserve", "5", "--no-budgets",
                           "--json")
    assert code == 0, out
    result = json.loads(out)
    assert (result["invited"], result["winner"], result["price"]) == (3, "slow", 8.0)
    code, out = await _cli(cluster, "run", "--type", "first_price", "-p", "other",
                           "--no-budgets")
    assert code == 0 and "other" in out and "settled" in out, out


async def test_cli_deposit_and_accounts_and_errors(cluster: LocalCluster) -> None:
    code, out = await _cli(cluster, "deposit", "cli-agent", "42", "--max-per-task", "10",
                           "--json")
    assert code == 0 and json.loads(out)["balance"] == 42.0, out
    code, out = await _cli(cluster, "accounts", "--json")
    rows = {r["owner"]: r for r in json.loads(out)}
    assert rows["cli-agent"]["available"] == 42.0 and rows["cli-agent"]["max_per_task"] == 10
    code, out = await _cli(cluster, "run", "--type", "dutch", "-p", "other", "--json")
    assert code == 1 and json.loads(out)["error"]["details"]["field"] == "start_price"
