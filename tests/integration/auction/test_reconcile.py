"""The escrow reconcile against a real nats-server: a hold whose auction is terminal, or
unknown past the grace period, is released exactly once (one log line, one count) even
when two auctioneers reconcile at once; live auctions keep theirs; a mirror that does not
know a live auction frees nothing; corrupt and foreign records are skipped and counted.
``broker-agents auction audit`` reports the same and exits non-zero until it is clean."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY

from broker_agents import codec
from broker_agents.auction.driver import AuctionDriver
from broker_agents.auction.host import AuctionHost
from broker_agents.auction.ledger import Ledger
from broker_agents.auction.messages import build_config, parse_request
from broker_agents.auction.reconcile import Reconciler
from broker_agents.clock import wall_ms
from broker_agents.core import auction as core
from broker_agents.core.auction.settlement import Stage
from broker_agents.core.budget import Account
from broker_agents.kv import open_bucket
from broker_agents.kvmirror import KvMirror
from broker_agents.reputation import ReputationBook
from node.auth.roles import Role
from node.cluster import LocalCluster
from node.embedded import NatsServer
from tests.integration.auction.helpers import S, auctioneer
from tests.secured import cli_args

GRACE_MS = 60_000


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [f for e, f in self.lines if e == name]


class EmptyMirror:
    """A mirror that lost every key (as a listing during a leader change can)."""

    values: dict[str, tuple[bytes, int]] = {}

    def get(self, key: str) -> tuple[bytes, int] | None:
        return None


def released(reason: str) -> float:
    value = REGISTRY.get_sample_value("ba_auction_holds_released_total", {"reason": reason})
    return value or 0.0


async def _store_auction(nc: NATS, aid: str, stage: Stage, amount: float,
                         payer: str = "b") -> None:
    js = nc.jetstream()
    host = AuctionHost(nc=nc, subjects=S, owner="auc-x",
                       auctions=await open_bucket(js, S.bucket("auctions")),
                       ledger=Ledger(await open_bucket(js, S.bucket("accounts"))),
                       reputation=ReputationBook(await open_bucket(js, S.bucket("reputation"))))
    request = parse_request({"auction_id": aid, "type": "first_price", "participants": [payer]})
    now = wall_ms()
    record, _ = AuctionDriver.new_record(host, request, build_config(request, aid), [payer],
                                         now)
    bid = core.parse_bid({"auction_id": aid, "msg_id": f"{aid}-bid", "bidder": payer,
                          "amount": amount})
    state = core.step(record.state, core.BidReceived(bid, now)).state
    state = core.step(state, core.Close(now)).state  # payer owes its bid (first price)
    await host.auctions.put(aid, codec.encode(record.model_copy(
        update={"stage": stage, "state": state})))


async def _cli_audit(server: NatsServer, *args: str) -> tuple[int, dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from node.cli.auction import app; app()", "audit", "--json",
        *cli_args(server, Role.OBSERVER), *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert out, err.decode()
    return proc.returncode or 0, json.loads(out)


@pytest.mark.timeout(60)
async def test_orphaned_holds_are_released_exactly_once_and_live_ones_kept(
        nc: NATS, nats_server: NatsServer) -> None:
    js = nc.jetstream()
    accounts = await open_bucket(js, S.bucket("accounts"))
    auctions = await open_bucket(js, S.bucket("auctions"))
    book = Ledger(accounts)
    await book.deposit("b", 100.0, "funding")
    await _store_auction(nc, "dead-1", Stage.FAILED, 7.0)
    await _store_auction(nc, "live-1", Stage.CLOSED, 1.0)
    now = wall_ms()
    await book.reserve("b", "dead-1", 7.0, taken_ms=now, by="auc-2", lease=0)
    await book.reserve("b", "live-1", 1.0, taken_ms=now - 2 * GRACE_MS, by="auc-1", lease=1)
    await book.reserve("b", "ghost-old", 2.0, taken_ms=now - 2 * GRACE_MS)
    await book.reserve("b", "ghost-new", 3.0, taken_ms=now)
    await accounts.put("junk", b"\xc1 not msgpack")
    await accounts.put("alias", codec.encode(await book.account("b")))  # owner is b

    code, before = await _cli_audit(nats_server, "--grace-ms", str(GRACE_MS))
    assert code == 1
    verdicts = {h["auction_id"]: (h["verdict"], h["reason"]) for h in before["holds"]}
    assert verdicts == {"dead-1": ("orphaned", "terminal"), "live-1": ("in_flight", None),
                        "ghost-old": ("orphaned", "unknown_auction"),
                        "ghost-new": ("pending", None)}
    assert before["skipped"] == {"accounts:corrupt": 1, "accounts:foreign": 1}
    assert before["totals"]["held"] == 13.0 and before["totals"]["deposited"] == 100.0

    mirrors = [KvMirror(accounts, "accounts"), KvMirror(auctions, "auctions")]
    for mirror in mirrors:
        await mirror.start()
    try:
        # A mirror that lost its keys sees every hold as unknown: it frees nothing alive.
        blind_log = Log()
        blind = Reconciler(book, auctions, mirrors[0], EmptyMirror(), GRACE_MS, blind_log)
        assert await blind.run("sweep") == 1  # ghost-old only: live-1 exists in the bucket
        account = await book.account("b")
        assert account is not None and set(account.holds) == {"dead-1", "live-1", "ghost-new"}
        await mirrors[0].sync()

        logs = [Log(), Log()]
        terminal_before = released("terminal")
        both = [Reconciler(Ledger(accounts, mirrors[0]), auctions, mirrors[0], mirrors[1],
                           GRACE_MS, log) for log in logs]
        counts = await asyncio.gather(*(r.run("sweep") for r in both))
        assert sorted(counts) == [0, 1]  # two auctioneers at once: one release
        lines = [line for log in logs for line in log.events("auction.hold_released")]
        assert lines == [{"account": "b", "auction": "dead-1", "amount": 7.0,
                          "stage": "failed", "reason": "terminal", "trigger": "sweep",
                          "taken_by": "auc-2", "taken_ms": now, "lease": 0}]
        assert released("terminal") == terminal_before + 1
        assert both[0].skipped == {"accounts:corrupt": 1, "accounts:foreign": 1}
        account = await book.account("b")
        assert account is not None and set(account.holds) == {"live-1", "ghost-new"}
        assert account.fenced("dead-1") == "released"
    finally:
        for mirror in mirrors:
            await mirror.stop()

    await book.release("b", "live-1")  # pretend both finished cleanly
    await book.release("b", "ghost-new")
    await accounts.delete("alias")
    code, after = await _cli_audit(nats_server)
    assert code == 0, after["problems"]
    assert after["holds"] == [] and after["totals"]["balance"] == 100.0


@pytest.mark.timeout(60)
async def test_the_auctioneers_sweep_releases_an_orphan_it_finds(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, nodes=1, agents=[[auctioneer("auc-1", lease_ms=1000,
                                                                 sweep_ms=100)]])
    await cluster.start()
    try:
        nc = await cluster.client(Role.NODE)  # it plays an auctioneer: writes buckets
        accounts = await open_bucket(nc.jetstream(), S.bucket("accounts"))
        book = Ledger(accounts)
        await book.deposit("b", 10.0, "funding")
        watcher = await accounts.watch("b")
        await _store_auction(nc, "dead-2", Stage.FAILED, 4.0)
        await book.reserve("b", "dead-2", 4.0, taken_ms=wall_ms(), by="auc-9", lease=0)
        while True:  # until the sweep's release lands (a KV watch, no polling)
            entry = await watcher.updates(timeout=10)
            if entry is not None and entry.value:
                account = Account.model_validate(codec.decode(entry.value))
                if account.fenced("dead-2") == "released":
                    break
        assert account.holds == {} and account.available == 10.0
        await watcher.stop()
        await nc.close()
    finally:
        await asyncio.to_thread(cluster.stop)
