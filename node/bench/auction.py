"""``broker-agents bench auction``: a sealed-bid auction over 100 bidder agents on two node
processes beside a plain nats-py scatter-gather to 100 responders, in one run.

- ``sealed_100_ms_p50``: a whole Vickrey auction as a client sees it (request on
  ``ba.coord.auction`` -> reply): announce to 100 bidders, their answers, close, escrow,
  award and acknowledgement, settlement, all state written with KV CAS;
- ``sealed_100_nobudget_ms_p50``: the same with ``budgets=false`` (no escrow/settlement);
- ``sealed_100_bids_ms_p50``: the bid-collection round inside those auctions (call for bids
  to 100 bidder agents until all answered, as the auctioneer measured it): the part to set
  against the raw fan-out; the rest of ``sealed_100_ms_p50`` is the durable choreography
  (record create, close, escrow, award + ack, settlement: 7 KV writes and one request);
- ``raw_fanout_ms_p50``: one request published to 100 plain nats-py responders (split over
  two processes like the bidders) until all 100 replies arrived;
- ``sealed_300_ms_p99`` (and ``_p50``): the whole sealed auction among 300 bidders, its
  tail, beside ``raw_fanout300_ms_p99``;
- ``english_10_ms_p50``: a whole English auction among 10 bidders (``english_10_rounds``);
- ``sealed_floor_ms_p50``: the floor of any exactly-once sealed auction here, from parts
  measured in the same run: ``raw_relay_fanout_ms_p50`` (the fan-out to 100 behind a raw
  relay: client -> coordinator -> bidders -> coordinator -> client) plus ``SERIAL_WRITES``
  times ``raw_kv_put_ms_p50``; ``sealed_floor_to_raw_ratio`` sets it beside the raw fan-out.

Every figure carries its bootstrap ``<name>_ci95``. The sealed auctions and the raw
fan-outs alternate in ``blocks``, so both see the same machine state.

Every act is signed and verified as in production (issue 13): the request (its seller is
the requesting client), each bidder's answer (signed by its node for it, verified by the
auctioneer: one Ed25519 verification per answer) and the winner's award answer.
"""

from __future__ import annotations

import time
from typing import Any

from nats.aio.client import Client as NATS

from broker_agents.auction.client import run_auction
from broker_agents.auction.ledger import Ledger
from broker_agents.kv import open_bucket
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.bench.fanout import raw_fanouts
from node.bench.harness import running_cluster
from node.bench.stats import figure
from node.cluster import LocalCluster

AUCTIONEER = "broker_agents.auction.auctioneer:AuctioneerAgent"
BIDDER = "broker_agents.auction.bidder:BidderAgent"
BIDDERS = 100
LARGE = 300
ENGLISH = 10
SERIAL_WRITES = 7
"""Durable writes one after another in a sold, budgeted auction (``auction/settle.py``):
create, close, holds (concurrent: one step), acked, debit, credit, settled."""


def _agents() -> list[list[dict[str, Any]]]:
    nodes: list[list[dict[str, Any]]] = [[{"class": AUCTIONEER, "id": "bench-auctioneer"}], []]
    for i in range(LARGE):
        nodes[i % 2].append({"class": BIDDER, "id": f"bb-{i}",
                             "kwargs": {"value": 10.0 + (i * 37 % 101) / 10}})
    for i in range(ENGLISH):
        nodes[i % 2].append({"class": BIDDER, "id": f"be-{i}", "capabilities": ["english"],
                             "kwargs": {"value": 20.0 + 3 * i}})
    return nodes


async def _raw_fanout(cluster: LocalCluster, runs: int, responders: int,
                      relayed: int = 0) -> tuple[list[float], list[float]]:
    """The raw fan-out's samples, and ``relayed`` through a raw relay (two hops)."""
    assert cluster.auth is not None
    nc = await cluster.client(Role.NODE)  # a subject of our own, beside the protocol's
    try:
        return await raw_fanouts(nc, cluster.auth.contexts[Role.NODE],
                                 f"ba.bench.raw.fanout{responders}", responders, runs,
                                 b"\x81\xa4call\x01", relayed=relayed)
    finally:
        await nc.close()


async def _raw_puts(cluster: LocalCluster, runs: int) -> list[float]:
    """Sequential raw KV puts (200 bytes) into the baselines' bucket, replicated like the
    auction's buckets: one durable step of the settlement chain at its floor."""
    nc = await cluster.client(Role.NODE)
    try:
        kv = await open_bucket(nc.jetstream(), Subjects().bucket("raw"))
        samples = []
        for i in range(runs):
            started = time.perf_counter()
            await kv.put(f"floor.{i % 16}", b"x" * 200)
            samples.append(time.perf_counter() - started)
        return samples
    finally:
        await nc.close()


async def _timed(nc: NATS, request: dict[str, Any],
                 runs: int) -> tuple[list[float], dict[str, Any], list[float]]:
    """Whole-auction seconds per run, the last result, and the bid rounds' seconds."""
    samples: list[float] = []
    rounds: list[float] = []
    last: dict[str, Any] = {}
    for _ in range(runs):
        started = time.perf_counter()
        last = await run_auction(nc, request, timeout=30)
        samples.append(time.perf_counter() - started)
        assert last["status"] in ("settled", "unsold"), last
        if last.get("bids_ms") is not None:
            rounds.append(last["bids_ms"] / 1000)
    return samples, last, rounds


async def run_auction_bench(sealed_runs: int = 40, english_runs: int = 10,
                            raw_runs: int = 200, large_runs: int = 40,
                            blocks: int = 2) -> dict[str, Any]:
    blocks = max(1, blocks)
    full: list[float] = []
    bare: list[float] = []
    large: list[float] = []
    rounds: list[float] = []
    raw: list[float] = []
    raw300: list[float] = []
    relay: list[float] = []
    puts: list[float] = []
    async with running_cluster("auction", _agents()) as (cluster, nc):
        treasury = await cluster.client(Role.NODE)  # deposits still write the bucket
        ledger = Ledger(await open_bucket(treasury.jetstream(),
                                          Subjects().bucket("accounts")))
        everyone = [f"bb-{i}" for i in range(LARGE)] + [f"be-{i}" for i in range(ENGLISH)]
        for who in everyone:
            await ledger.deposit(who, 1e9, "bench-funding")
        await treasury.close()
        sealed = {"type": "vickrey", "participants": [f"bb-{i}" for i in range(BIDDERS)],
                  "reserve": 5.0, "duration_ms": 5000}
        sealed300 = {**sealed, "participants": [f"bb-{i}" for i in range(LARGE)]}
        english = {"type": "english", "participants": [f"be-{i}" for i in range(ENGLISH)],
                   "start_price": 10.0, "increment": 2.0, "round_ms": 2000}
        await _timed(nc, sealed, 3)  # warm-up: connections, JIT-free but caches
        await _timed(nc, sealed300, 2)
        last: dict[str, Any] = {}
        for _ in range(blocks):
            direct, relayed = await _raw_fanout(cluster, max(1, raw_runs // blocks), BIDDERS,
                                                max(1, raw_runs // blocks))
            raw += direct
            relay += relayed
            puts += await _raw_puts(cluster, max(1, raw_runs // blocks))
            block, last, block_rounds = await _timed(nc, sealed, max(1, sealed_runs // blocks))
            full += block
            rounds += block_rounds
            block, _, block_rounds = await _timed(nc, {**sealed, "budgets": False},
                                                  max(1, sealed_runs // blocks))
            bare += block
            rounds += block_rounds
            raw300 += (await _raw_fanout(cluster, max(1, raw_runs // blocks), LARGE))[0]
            large += (await _timed(nc, sealed300, max(1, large_runs // blocks)))[0]
        eng, eng_last, _ = await _timed(nc, english, english_runs)
    result: dict[str, Any] = {
        "suite": "auction", "bidders": BIDDERS, "sealed_runs": sealed_runs,
        **figure("sealed_100_ms_p50", full, 50, 1000, 2),
        **figure("sealed_100_ms_p99", full, 99, 1000, 2),
        **figure("sealed_100_nobudget_ms_p50", bare, 50, 1000, 2),
        **figure("raw_fanout_ms_p50", raw, 50, 1000, 2),
        **figure("raw_fanout_ms_p99", raw, 99, 1000, 2),
        **figure("sealed_300_ms_p50", large, 50, 1000, 2),
        **figure("sealed_300_ms_p99", large, 99, 1000, 2),
        **figure("raw_fanout300_ms_p50", raw300, 50, 1000, 2),
        **figure("raw_fanout300_ms_p99", raw300, 99, 1000, 2),
        **figure("english_10_ms_p50", eng, 50, 1000, 2),
        "english_10_rounds": eng_last["rounds"], "sealed_100_bids": last["num_bids"],
    }
    if rounds:
        result |= figure("sealed_100_bids_ms_p50", rounds, 50, 1000, 2)
    raw_p50 = result["raw_fanout_ms_p50"]
    result["sealed_to_raw_ratio"] = round(result["sealed_100_ms_p50"] / raw_p50, 2)
    result["sealed_nobudget_to_raw_ratio"] = round(result["sealed_100_nobudget_ms_p50"]
                                                   / raw_p50, 2)
    if rounds:
        result["sealed_bids_to_raw_ratio"] = round(result["sealed_100_bids_ms_p50"]
                                                   / raw_p50, 2)
    result["target_sealed_le_4x_raw"] = result["sealed_to_raw_ratio"] <= 4.0
    return result | _floor(relay, puts, raw_p50)


def _floor(relay: list[float], puts: list[float], raw_p50: float) -> dict[str, Any]:
    """What no implementation of exactly-once settlement can go under on this cluster: the
    bid round behind a coordinator (a raw relay's two hops) plus the settlement chain's
    ``SERIAL_WRITES`` durable steps one after another, each at a raw KV put (the award's
    round trip left out, so it is a lower bound)."""
    relay_fig = figure("raw_relay_fanout_ms_p50", relay, 50, 1000, 2)
    put_fig = figure("raw_kv_put_ms_p50", puts, 50, 1000, 3)
    (relay_p50, relay_ci), (put_p50, put_ci) = (
        (float(f[n]), list(f[f"{n}_ci95"]))  # type: ignore[arg-type]
        for f, n in ((relay_fig, "raw_relay_fanout_ms_p50"), (put_fig, "raw_kv_put_ms_p50")))
    floor = relay_p50 + SERIAL_WRITES * put_p50
    bounds = [round(relay_ci[k] + SERIAL_WRITES * put_ci[k], 2) for k in (0, 1)]
    return {**relay_fig, **put_fig, "sealed_floor_ms_p50": round(floor, 2),
            "sealed_floor_ms_p50_ci95": bounds,
            "sealed_floor_to_raw_ratio": round(floor / raw_p50, 2)}
